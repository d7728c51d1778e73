"""Sessions end when the account changes under them, whichever process changed it (`edgegw user` on the box)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.accounts.store import Role
from tests.web.conftest import PASSWORD, WebEnv, login, post_form

ROOT = Path(__file__).resolve().parents[2]
NEW_PASSWORD = "another long passphrase 77"
THIRD_PASSWORD = "yet another passphrase 1234"

Browser = TestClient[web.Request, web.Application]


def write_config(tmp_path: Path) -> Path:
    # data_dir is the web_env's tmp_path: the CLI's accounts file is the very one the web UI reads
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n',
        encoding="utf-8",
    )
    return path


async def edgegw_user(config: Path, *args: str, password: str | None = None) -> str:
    """`edgegw user …` as the admin on the box runs it: its own process, the production code and clock."""
    argv = [sys.executable, "-m", "gateway", "user", *args, "--config", str(config)]
    if password is not None:
        argv.append("--password-stdin")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = await asyncio.wait_for(proc.communicate(f"{password}\n".encode() if password else None), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def logged_out(browser: Browser, path: str = "/users") -> bool:
    """Whether the browser's session is gone: a page sends it to the login page, as for an expired session."""
    response = await browser.get(path, allow_redirects=False)
    if response.status == 200:
        return False
    assert (response.status, response.headers["Location"]) == (302, f"/login?next={path}")
    return True


async def test_cli_passwd_ends_every_session_opened_with_the_old_password(web_env: WebEnv, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    web_env.add_user("alice", Role.ADMIN)
    laptop, phone = web_env.client, await web_env.browser()
    for browser in (laptop, phone):
        assert (await login(browser, "alice")).status == 302
        assert not await logged_out(browser)

    # the password leaked: the admin on the box sets a new one
    assert await edgegw_user(config, "passwd", "alice", password=NEW_PASSWORD) == "password of alice changed\n"

    assert await logged_out(laptop)
    api = await phone.get("/api/status", allow_redirects=False)  # the dashboard's poll, as for an expired session
    assert (api.status, await api.json()) == (401, {"error": "login required"})
    assert await logged_out(phone)  # and its page after that
    # the new password opens a session that lasts
    assert (await login(laptop, "alice", NEW_PASSWORD)).status == 302
    assert not await logged_out(laptop) and not await logged_out(laptop)
    assert (await login(phone, "alice", PASSWORD)).status == 401


async def test_web_password_change_keeps_the_changers_session_until_the_cli_changes_it(
    web_env: WebEnv, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    web_env.add_user("alice", Role.ADMIN)
    laptop, phone = web_env.client, await web_env.browser()
    for browser in (laptop, phone):
        assert (await login(browser, "alice")).status == 302
    web_env.clock.advance(60)

    changed = await post_form(
        laptop,
        "/password",
        {"current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        token_from="/password",
    )
    assert (changed.status, changed.headers["Location"]) == (302, "/")
    assert not await logged_out(laptop) and not await logged_out(laptop)  # the one who changed it stays in
    assert await logged_out(phone)

    await edgegw_user(config, "passwd", "alice", password=THIRD_PASSWORD)
    assert await logged_out(laptop)


async def test_cli_remove_and_add_again_does_not_revive_the_old_session(web_env: WebEnv, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    web_env.add_user("alice", Role.ADMIN)
    web_env.add_user("bob", Role.TECHNICIAN)
    assert (await login(web_env.client, "bob")).status == 302
    assert not await logged_out(web_env.client, "/password")

    # a new bob (another person, another password) while the old one's browser made no request in between
    await edgegw_user(config, "remove", "bob")
    await edgegw_user(config, "add", "bob", "--role", "admin", password=NEW_PASSWORD)

    assert await logged_out(web_env.client, "/users")
