"""Login, logout, lockout, the address throttle and the previous login shown after login."""

from __future__ import annotations

import pytest

from gateway.accounts.store import Role
from gateway.web.config import WebConfig
from tests.web.conftest import PASSWORD, WebEnv, csrf_token, login, post_form


async def test_login_ok_shows_previous_login_and_failures(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    first = await login(web_env.client, "alice")
    assert first.status == 302
    page = await (await web_env.client.get("/password")).text()
    assert 'id="last-login"' in page
    assert "このアカウントでの初めてのログインです。" in page

    await post_form(web_env.client, "/logout", {}, token_from="/password")
    web_env.clock.advance(3600)
    assert (await login(web_env.client, "alice", "wrong password!!")).status == 401
    assert (await login(web_env.client, "alice", "wrong password!!")).status == 401
    web_env.clock.advance(60)
    assert (await login(web_env.client, "alice")).status == 302
    page = await (await web_env.client.get("/password")).text()
    assert "前回のログイン: 2026-12-01 09:00:00 JST（接続元 127.0.0.1）" in page
    assert "前回のログイン以降に失敗したログイン: 2 回" in page
    # shown once, not on every page
    assert 'id="last-login"' not in await (await web_env.client.get("/password")).text()
    assert web_env.actions() == ["login", "logout", "login.failed", "login.failed", "login"]


async def test_wrong_password_and_unknown_user_get_the_same_answer(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    wrong = await login(web_env.client, "alice", "not the password")
    unknown = await login(web_env.client, "nobody", "not the password")
    assert wrong.status == unknown.status == 401
    for response in (wrong, unknown):
        text = await response.text()
        assert (
            '<p id="login-error" class="error" role="alert">ユーザー名またはパスワードが正しくありません。</p>' in text
        )
    failed = web_env.entries("login.failed")
    assert [(e.actor, e.detail["reason"], e.address) for e in failed] == [
        ("-", "bad_credentials", "127.0.0.1"),  # a name that is no account is not kept: it may be a password
        ("alice", "bad_credentials", "127.0.0.1"),
    ]


@pytest.fixture
def web_config() -> WebConfig:
    return WebConfig(lockout_failures=3, lockout_minutes=10, address_attempts_per_minute=50)


async def test_lockout_after_n_failures_and_release_after_m_minutes(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    for _ in range(2):
        assert (await login(web_env.client, "alice", "wrong password!!")).status == 401
    third = await login(web_env.client, "alice", "wrong password!!")
    text = await third.text()
    # locked at 09:00:00 JST for 10 minutes
    assert (
        "ログインの失敗が続いたため、このアカウントはロックされています。2026-12-01 09:10:00 JST 以降にもう一度お試しください。"
        in text
    )
    # the right password does not open a locked account
    assert (await login(web_env.client, "alice")).status == 401
    web_env.clock.advance(9 * 60)
    assert (await login(web_env.client, "alice")).status == 401
    web_env.clock.advance(61)
    assert (await login(web_env.client, "alice")).status == 302
    lockouts = web_env.entries("lockout")
    assert len(lockouts) == 1 and lockouts[0].target == "alice"


async def test_english_lockout_message(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    web_env.client.session.headers["Accept-Language"] = "en-US,en;q=0.9,ja;q=0.5"
    for _ in range(3):
        response = await login(web_env.client, "alice", "wrong password!!")
    assert (
        "This account is locked after repeated failed logins. Please try again after 2026-12-01 09:10:00 JST."
        in await response.text()
    )


async def test_address_throttle(tmp_path: object, web_env: WebEnv) -> None:
    web_env.app  # noqa: B018 - the fixture's server is what we hammer
    web_env.add_user("alice", Role.VIEWER)
    token = await csrf_token(web_env.client)
    statuses = []
    for i in range(51):
        response = await web_env.client.post(
            "/login", data={"csrf_token": token, "name": f"user{i}", "password": "x" * 12}, allow_redirects=False
        )
        statuses.append(response.status)
    assert statuses[:50] == [401] * 50
    assert statuses[50] == 429
    refused = await web_env.client.post(
        "/login", data={"csrf_token": token, "name": "alice", "password": PASSWORD}, allow_redirects=False
    )
    assert refused.status == 429
    assert "この端末からのログイン試行が多すぎます。" in await refused.text()
    web_env.clock.advance(61)
    assert (await login(web_env.client, "alice")).status == 302


async def test_logout_is_a_post_and_ends_the_session(web_env: WebEnv) -> None:
    web_env.add_user("alice", Role.VIEWER)
    await login(web_env.client, "alice")
    assert (await web_env.client.get("/logout", allow_redirects=False)).status == 405
    response = await post_form(web_env.client, "/logout", {}, token_from="/password")
    assert response.status == 302 and response.headers["Location"] == "/login"
    after = await web_env.client.get("/password", allow_redirects=False)
    assert after.status == 302 and after.headers["Location"].startswith("/login")
    assert web_env.actions() == ["login", "logout"]
