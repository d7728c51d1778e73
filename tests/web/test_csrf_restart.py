"""A form open while `edgegw web` restarts (an upgrade, a crash) is neither lost nor a bare 403.

The web process kept the record of the CSRF tokens it had given in memory: after a restart, a librarian who
had logged in again in another tab and then sent the form still open in the first got the "ask the admin" 403,
and one who just sent it was sent to the login page with everything typed lost. The tokens are now signed for
the browser with a key at rest (`<state_dir>/csrf.key`), so the restarted process knows the form as this
browser's and offers it back. Real restarts: `python -m gateway web` stopped with SIGTERM and started again.
"""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from gateway.accounts.store import AccountStore, Role
from gateway.web.certs import CERT_FILE
from gateway.web.config import WebConfig
from tests.web.conftest import PASSWORD, cheap_hasher
from tests.web.test_cli import edgegw, free_port, write_config
from tests.web.test_csrf_stale_form import form_in

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
EXPIRED = "フォームの有効期限が切れていました"
FORBIDDEN = "このページを表示または操作する権限がありません。"
OTHER_USER = (
    "このフォームは、このブラウザーで別のユーザーがログインしていたとき、またはログインする前に開かれたものです。"
)
DISCARDED = (
    "ログインの前に送信されたフォームは、このユーザーに渡したものと確認できなかったため、送信せずに破棄しました。"
)


@asynccontextmanager
async def edgegw_web(config: Path, port: int) -> AsyncIterator[None]:
    """`edgegw web` running until the block ends, then stopped as systemd stops it."""
    proc = await edgegw("web", "--config", str(config))
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line == f"edgegw web: listening on https://127.0.0.1:{port}/\n", line
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)


class Browser:
    """One browser: a cookie jar kept across the web's restarts, trusting the web's certificate."""

    def __init__(self, base: str, cert: Path) -> None:
        # unsafe: the jar keeps the cookies of an IP-address host, as a browser does
        self.session = aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.cert = cert

    @property
    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))  # made at the web's first start

    async def page(self, path: str) -> str:
        async with self.session.get(path, ssl=self.trust) as answer:
            return await answer.text()

    async def post(self, path: str, data: list[tuple[str, str]]) -> tuple[int, str, str]:
        """(status, Location, page) of a form sent, not following a redirect."""
        async with self.session.post(path, data=data, ssl=self.trust, allow_redirects=False) as answer:
            return answer.status, answer.headers.get("Location", ""), await answer.text()

    async def login(self, name: str) -> None:
        status, location, _ = await self.post(
            "/login", [("csrf_token", await self.token("/login")), ("name", name), ("password", PASSWORD)]
        )
        assert (status, location) == (302, "/")

    async def token(self, path: str) -> str:
        found = CSRF_RE.search(await self.page(path))
        assert found is not None, path
        return found.group(1)


@asynccontextmanager
async def set_up(tmp_path: Path) -> AsyncIterator[tuple[Path, int, AccountStore, Browser]]:
    """The config, the port, the web's accounts (an admin and the viewer mika) and a browser."""
    port = free_port()
    config = write_config(tmp_path, port)
    accounts = AccountStore(tmp_path / "data" / "web", WebConfig(), hasher=cheap_hasher())
    accounts.add_user("admin1", Role.ADMIN, PASSWORD, now=time.time())
    accounts.add_user("mika", Role.VIEWER, PASSWORD, now=time.time())
    browser = Browser(f"https://127.0.0.1:{port}", tmp_path / "data" / "web" / CERT_FILE)
    try:
        yield config, port, accounts, browser
    finally:
        await browser.session.close()


def role_of(accounts: AccountStore, name: str) -> Role:
    user = accounts.get_user(name)
    assert user is not None
    return user.role


MIKA_TO_TECHNICIAN = [("name", "mika"), ("role", "technician")]


async def test_a_form_sent_after_a_restart_and_a_login_in_another_tab_is_offered_again(tmp_path: Path) -> None:
    async with set_up(tmp_path) as (config, port, accounts, browser):
        async with edgegw_web(config, port):
            await browser.login("admin1")
            old = await browser.token("/users")  # tab A: /users open, mika to become a technician
        async with edgegw_web(config, port):
            await browser.login("admin1")  # tab B, after the restart
            status, _, page = await browser.post("/users/role", [("csrf_token", old), *MIKA_TO_TECHNICIAN])
            assert status == 403
            assert EXPIRED in page and FORBIDDEN not in page
            assert role_of(accounts, "mika") is Role.VIEWER  # nothing done without the user's say
            action, fields = form_in(page, "resend-form")
            status, location, _ = await browser.post(action, fields)
            assert (status, location) == (302, "/users")
            assert role_of(accounts, "mika") is Role.TECHNICIAN
    key = tmp_path / "data" / "web" / "csrf.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32


async def test_a_form_sent_after_a_restart_goes_through_the_login_with_what_it_carried(tmp_path: Path) -> None:
    async with set_up(tmp_path) as (config, port, accounts, browser):
        async with edgegw_web(config, port):
            await browser.login("admin1")
            old = await browser.token("/users")
        async with edgegw_web(config, port):
            # the restart ended the session: the form comes without one
            status, _, page = await browser.post("/users/role", [("csrf_token", old), *MIKA_TO_TECHNICIAN])
            assert status == 403
            assert "このフォームを開いたときと同じユーザーでログインすると、/users/role へ送信し直せます。" in page
            action, fields = form_in(page, "login-form")
            status, location, _ = await browser.post(action, [*fields, ("name", "admin1"), ("password", PASSWORD)])
            assert (status, location) == (302, "/form/resend")
            assert role_of(accounts, "mika") is Role.VIEWER
            action, fields = form_in(await browser.page("/form/resend"), "resend-form")
            assert (action, fields[1:]) == ("/users/role", MIKA_TO_TECHNICIAN)
            status, location, _ = await browser.post(action, fields)
            assert (status, location) == (302, "/users")
            assert role_of(accounts, "mika") is Role.TECHNICIAN


async def test_after_a_restart_one_users_form_is_offered_to_no_other_user(tmp_path: Path) -> None:
    """A library PC: admin1's form left open over the restart; kana comes next, through the login page it
    carries and then logged in. Neither way is it offered to her, and mika stays a viewer."""
    async with set_up(tmp_path) as (config, port, accounts, browser):
        accounts.add_user("kana", Role.ADMIN, PASSWORD, now=time.time())
        async with edgegw_web(config, port):
            await browser.login("admin1")
            old = await browser.token("/users")
        async with edgegw_web(config, port):
            status, _, page = await browser.post("/users/role", [("csrf_token", old), *MIKA_TO_TECHNICIAN])
            assert status == 403
            action, fields = form_in(page, "login-form")
            status, location, _ = await browser.post(action, [*fields, ("name", "kana"), ("password", PASSWORD)])
            assert (status, location) == (302, "/users")
            assert DISCARDED in await browser.page("/users")
            status, _, page = await browser.post("/users/role", [("csrf_token", old), *MIKA_TO_TECHNICIAN])
            assert status == 403
            assert OTHER_USER in page and 'id="resend-form"' not in page and "ログインし直した" not in page
            assert role_of(accounts, "mika") is Role.VIEWER


async def test_without_the_key_of_before_the_form_is_refused_with_the_page_and_nothing_kept(tmp_path: Path) -> None:
    """The key lost between the two runs (the state directory restored from elsewhere): the old form cannot be
    told from a forged one, so nothing it carried comes back; the user is told to fill it in again."""
    async with set_up(tmp_path) as (config, port, accounts, browser):
        async with edgegw_web(config, port):
            await browser.login("admin1")
            old = await browser.token("/users")
        (tmp_path / "data" / "web" / "csrf.key").unlink()
        async with edgegw_web(config, port):
            await browser.login("admin1")
            status, _, page = await browser.post("/users/role", [("csrf_token", old), *MIKA_TO_TECHNICIAN])
            assert status == 403
            assert EXPIRED in page and "元のページを開き直して、もう一度入力してから送信してください。" in page
            assert 'id="resend-form"' not in page and FORBIDDEN not in page
            assert role_of(accounts, "mika") is Role.VIEWER
