"""A form left open while the user logged in again elsewhere: not processed, and back on its page saying why.

Tab A renders a form (token T1); the idle timeout passes; tab B logs in (a new session, token T2); tab A's
submit carries T1. That once ended on the role 403 page ("ask the admin"). A token this process never
issued, or one sent as a header (a script), still gets the 403.
"""

from __future__ import annotations

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, csrf_token, login

STALE = "このフォームは有効期限が切れていたため、送信した内容は処理されませんでした。もう一度入力して送信してください。"
FORBIDDEN = "このページを表示または操作する権限がありません。"
NEW_USER = {"name": "mallory", "role": "admin", "password": "a long enough passphrase 9"}


async def stale_token(env: WebEnv) -> str:
    """Tab A's token, after tab B logged in again past the idle timeout."""
    env.add_user("admin1", Role.ADMIN)
    await login(env.client, "admin1")
    token = await csrf_token(env.client, "/users")
    env.clock.advance(16 * 60)
    response = await login(env.client, "admin1")
    assert response.status == 302
    return token


async def test_a_stale_form_goes_back_to_its_page_with_a_notice(web_env: WebEnv) -> None:
    token = await stale_token(web_env)
    response = await web_env.client.post("/users/add", data={**NEW_USER, "csrf_token": token}, allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/users")
    assert web_env.accounts.get_user("mallory") is None
    assert "user.add" not in web_env.actions()
    page = await (await web_env.client.get("/users")).text()
    assert STALE in page and FORBIDDEN not in page


async def test_the_page_is_the_referer_when_it_is_this_site(web_env: WebEnv) -> None:
    token = await stale_token(web_env)
    here = web_env.server.make_url("/devices?tab=tools")
    elsewhere = "https://example.org/devices"
    for referer, page in ((str(here), "/devices?tab=tools"), (elsewhere, "/devices"), ("//x/y", "/devices")):
        response = await web_env.client.post(
            "/devices/tools/start",
            data={"csrf_token": token, "family": "modbus", "tool": "probe"},
            headers={"Referer": referer},
            allow_redirects=False,
        )
        assert (response.status, response.headers["Location"]) == (303, page), referer


async def test_a_token_never_issued_or_sent_by_a_script_is_still_refused(web_env: WebEnv) -> None:
    token = await stale_token(web_env)
    as_header = await web_env.client.post(
        "/users/add", data=NEW_USER, headers={"X-CSRF-Token": token}, allow_redirects=False
    )
    forged = await web_env.client.post("/users/add", data={**NEW_USER, "csrf_token": "x" * 43}, allow_redirects=False)
    for response in (as_header, forged):
        assert response.status == 403
        assert FORBIDDEN in await response.text()
    assert web_env.accounts.get_user("mallory") is None
