"""The idle timeout counts what a person does, not the polls a page makes by itself: a dashboard left open
(static/live.js polls /api/status every 3 s) is logged out after `idle_timeout_minutes` like any other page."""

from __future__ import annotations

from gateway.accounts.store import Role
from gateway.web.auth import SessionTable
from tests.web.conftest import WebEnv, login, post_form

EXPIRED = "一定時間操作がなかったか、ログインの有効期間が過ぎたため、ログアウトしました。もう一度ログインしてください。"


async def poll_for(web_env: WebEnv, minutes: int) -> list[int]:
    statuses = []
    for _ in range(minutes):
        web_env.clock.advance(60)
        response = await web_env.client.get("/api/status", headers={"Accept": "application/json"})
        statuses.append(response.status)
    return statuses


async def test_a_dashboard_left_open_is_logged_out_after_the_idle_timeout(web_env: WebEnv) -> None:
    web_env.add_user("admin", Role.ADMIN)
    assert (await login(web_env.client, "admin")).status == 302
    statuses = await poll_for(web_env, 16)  # the default idle timeout is 15 minutes
    assert 401 not in statuses[:15]
    # the poll after the timeout gets what live.js turns into a visit of the login page, which says why
    last = await web_env.client.get("/api/status", headers={"Accept": "application/json"})
    assert (last.status, await last.json()) == (401, {"error": "login required"})
    page = await web_env.client.get("/login")
    assert EXPIRED in await page.text()
    # whoever sits down at the unattended PC is not the admin
    added = await post_form(
        web_env.client, "/users/add", {"name": "intruder", "role": "admin", "password": "another long passphrase 77"}
    )
    assert added.status == 302 and web_env.accounts.get_user("intruder") is None


async def test_a_click_keeps_the_session_the_polls_do_not(web_env: WebEnv) -> None:
    web_env.add_user("admin", Role.ADMIN)
    assert (await login(web_env.client, "admin")).status == 302
    await poll_for(web_env, 10)
    assert (await web_env.client.get("/users", allow_redirects=False)).status == 200  # a person clicked
    assert 401 not in await poll_for(web_env, 14)  # 24 minutes after login, 14 after the click
    web_env.clock.advance(61)
    gone = await web_env.client.get("/users", allow_redirects=False)
    assert (gone.status, gone.headers["Location"]) == (302, "/login?next=/users")


def test_a_poll_reads_a_session_without_putting_off_its_idle_timeout() -> None:
    table = SessionTable(idle_s=900.0, lifetime_s=8 * 3600.0)
    token, session = table.login(None, "alice", 0.0)
    assert table.get(token, 600.0, activity=False) == (session, False)
    assert table.get(token, 901.0, activity=False) == (None, True)
