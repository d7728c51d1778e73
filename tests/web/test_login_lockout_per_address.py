"""Lockout per (name, client address): a stranger guessing from one address cannot keep the admin out from
another, and an unknown name is locked after as many failures, with the same words, as an account."""

from __future__ import annotations

import re

import pytest
from aiohttp import CookieJar, TCPConnector, web
from aiohttp.test_utils import TestClient

from gateway.accounts.store import Role
from gateway.web.config import WebConfig
from tests.web.conftest import PASSWORD, WebEnv, login

ERROR_RE = re.compile(r'<p id="login-error" class="error" role="alert">([^<]*)</p>')
# Linux answers on the whole of 127/8: a browser on another host is a real socket from another source address
STRANGER = "127.0.0.2"


async def stranger(web_env: WebEnv) -> TestClient[web.Request, web.Application]:
    server = web_env.server
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client: TestClient[web.Request, web.Application] = TestClient(
        server, cookie_jar=jar, connector=TCPConnector(local_addr=(STRANGER, 0))
    )
    await client.start_server()
    web_env.extra_clients.append(client)
    return client


async def error_of(response: object) -> str:
    match = ERROR_RE.search(await response.text())  # type: ignore[attr-defined]
    assert match, "no login error on the page"
    return match.group(1)


@pytest.mark.parametrize("web_config", [WebConfig(lockout_failures=2, lockout_minutes=2)])
async def test_a_stranger_at_another_address_cannot_keep_the_admin_out(web_env: WebEnv) -> None:
    web_env.add_user("admin", Role.ADMIN)
    guesser = await stranger(web_env)
    admin_in = []
    for minute in range(6):  # two wrong guesses a minute re-lock the name for the guesser as each lock ends
        for _ in range(2):
            await login(guesser, "admin", "wrong guess 123456")
        if minute % 3 == 1:
            admin_in.append((await login(await web_env.browser(), "admin")).status)
        web_env.clock.advance(60)
    assert admin_in == [302, 302]
    # the guesser's address is locked again, even for the right password
    for _ in range(2):
        await login(guesser, "admin", "wrong guess 123456")
    locked = await login(guesser, "admin", PASSWORD)
    assert locked.status == 401
    assert (await error_of(locked)).startswith("ログインの失敗が続いたため、このアカウントはロックされています。")
    lockouts = web_env.entries("lockout")
    assert {(e.target, e.address) for e in lockouts} == {("admin", STRANGER)}


async def test_an_unknown_name_is_locked_like_an_account(web_env: WebEnv) -> None:
    web_env.add_user("admin", Role.ADMIN)
    guesser = await stranger(web_env)
    answers: dict[str, list[tuple[int, str]]] = {}
    for name in ("admin", "nosuchuser"):
        answers[name] = [
            (r.status, await error_of(r)) for r in [await login(guesser, name, "wrong guess 123456") for _ in range(6)]
        ]
    assert answers["admin"] == answers["nosuchuser"]
    assert answers["admin"][3] == (401, "ユーザー名またはパスワードが正しくありません。")
    locked = "ログインの失敗が続いたため、このアカウントはロックされています。2026-12-01 09:15:00 JST 以降にもう一度お試しください。"
    assert answers["admin"][4:] == [(401, locked)] * 2
    # after the lock both are tried afresh; the audit says which was an account
    web_env.clock.advance(15 * 60)
    assert (await login(guesser, "nosuchuser", "wrong guess 123456")).status == 401
    assert (await login(guesser, "admin", PASSWORD)).status == 302
    assert [e.target for e in web_env.entries("lockout")] == ["admin"]
