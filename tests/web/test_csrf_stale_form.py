"""A form left open while the user logged in again elsewhere: not processed, and offered to be sent again.

Tab A renders a form (token T1); the idle timeout passes; tab B logs in (a new session, token T2); tab A's
submit carries T1. That once ended on the role 403 page ("ask the admin"), then on the form's page with
everything typed lost. T1 is signed for this browser (gateway.web.formtoken): the answer is a page saying the
form expired, with what it carried as a form to press. A form with a password is not kept; a token this
browser was never given (forged, another browser's) gets the page without the form; a script's header the
bare 403.
"""

from __future__ import annotations

import html
import re

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, csrf_token, login

Client = TestClient[web.Request, web.Application]
EXPIRED = "フォームの有効期限が切れていました"
RESEND = "入力した内容は残っています。このまま /users/role へもう一度送信する場合は「もう一度送信」を押してください。"
ENTER_AGAIN = "元のページを開き直して、もう一度入力してから送信してください。"
FORBIDDEN = "このページを表示または操作する権限がありません。"
NEW_USER = {"name": "mallory", "role": "admin", "password": "a long enough passphrase 9"}
FORM_RE = re.compile(r'<form id="(?P<id>[a-z-]+)" method="post" action="(?P<action>[^"]*)">(?P<body>.*?)</form>', re.S)
HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


def form_in(page: str, form_id: str) -> tuple[str, list[tuple[str, str]]]:
    """The action and hidden fields of the page's form `form_id`, as a browser would send them."""
    for found in FORM_RE.finditer(page):
        if found["id"] == form_id:
            fields = [(html.unescape(n), html.unescape(v)) for n, v in HIDDEN_RE.findall(found["body"])]
            return html.unescape(found["action"]), fields
    raise AssertionError(f"no form {form_id} in the page: {page}")


async def stale_token(env: WebEnv, path: str = "/users") -> str:
    """Tab A's token, after tab B logged in again past the idle timeout."""
    env.add_user("admin1", Role.ADMIN)
    env.add_user("mika", Role.VIEWER)
    await login(env.client, "admin1")
    token = await csrf_token(env.client, path)
    env.clock.advance(16 * 60)
    response = await login(env.client, "admin1")
    assert response.status == 302
    return token


async def test_a_stale_form_is_offered_again_and_done_only_when_pressed(web_env: WebEnv) -> None:
    token = await stale_token(web_env)
    response = await web_env.client.post(
        "/users/role", data={"csrf_token": token, "name": "mika", "role": "technician"}, allow_redirects=False
    )
    page = await response.text()
    assert response.status == 403
    assert EXPIRED in page and RESEND in page and FORBIDDEN not in page
    user = web_env.accounts.get_user("mika")
    assert user is not None and user.role is Role.VIEWER
    assert "user.role" not in web_env.actions()
    action, fields = form_in(page, "resend-form")
    assert action == "/users/role"
    assert fields[1:] == [("name", "mika"), ("role", "technician")]
    assert fields[0][0] == "csrf_token" and fields[0][1] != token  # the live session's own
    again = await web_env.client.post(action, data=fields, allow_redirects=False)
    assert (again.status, again.headers["Location"]) == (302, "/users")
    user = web_env.accounts.get_user("mika")
    assert user is not None and user.role is Role.TECHNICIAN
    assert web_env.actions().count("user.role") == 1


async def test_a_form_with_a_password_is_not_kept(web_env: WebEnv) -> None:
    token = await stale_token(web_env)
    response = await web_env.client.post("/users/add", data={**NEW_USER, "csrf_token": token}, allow_redirects=False)
    page = await response.text()
    assert response.status == 403
    assert EXPIRED in page and ENTER_AGAIN in page and 'id="resend-form"' not in page
    assert NEW_USER["password"] not in page and "mallory" not in page
    assert web_env.accounts.get_user("mallory") is None


async def test_the_way_back_is_the_referer_when_it_is_this_site(web_env: WebEnv) -> None:
    token = await stale_token(web_env, "/devices")
    here = web_env.server.make_url("/devices?tab=tools")
    elsewhere = "https://example.org/devices"
    for referer, back in ((str(here), "/devices?tab=tools"), (elsewhere, "/devices"), ("//x/y", "/devices")):
        response = await web_env.client.post(
            "/devices/tools/start",
            data={"csrf_token": token, "family": "modbus", "tool": "probe"},
            headers={"Referer": referer},
            allow_redirects=False,
        )
        assert response.status == 403
        page = await response.text()
        assert f'<a id="form-back" href="{html.escape(back)}">' in page, referer
        assert form_in(page, "resend-form")[1][1:] == [("family", "modbus"), ("tool", "probe")]


async def test_a_token_this_browser_was_never_given_keeps_nothing(web_env: WebEnv) -> None:
    token = await stale_token(web_env)
    other: Client = await web_env.browser()
    others = await csrf_token(other, "/login")  # a real token of this UI, given to another browser
    change = {"name": "mika", "role": "admin"}
    forged = await web_env.client.post("/users/role", data={**change, "csrf_token": "x" * 43}, allow_redirects=False)
    foreign = await web_env.client.post("/users/role", data={**change, "csrf_token": others}, allow_redirects=False)
    for response in (forged, foreign):
        page = await response.text()
        assert response.status == 403
        assert EXPIRED in page and ENTER_AGAIN in page and 'id="resend-form"' not in page
    # a script's header: the bare refusal, no page
    as_header = await web_env.client.post(
        "/users/role", data=change, headers={"X-CSRF-Token": token}, allow_redirects=False
    )
    assert as_header.status == 403
    assert EXPIRED not in await as_header.text()
    user = web_env.accounts.get_user("mika")
    assert user is not None and user.role is Role.VIEWER


async def test_a_form_left_open_past_a_logout_goes_through_the_login(web_env: WebEnv) -> None:
    """Logged out meanwhile (in another tab): the login page carries the form; after the login it is offered."""
    web_env.add_user("admin1", Role.ADMIN)
    web_env.add_user("mika", Role.VIEWER)
    await login(web_env.client, "admin1")
    token = await csrf_token(web_env.client, "/users")
    logout = await web_env.client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert logout.status == 302
    response = await web_env.client.post(
        "/users/role", data={"csrf_token": token, "name": "mika", "role": "technician"}, allow_redirects=False
    )
    page = await response.text()
    assert response.status == 403
    assert "このフォームを開いたときと同じユーザーでログインすると、/users/role へ送信し直せます。" in page
    action, fields = form_in(page, "login-form")
    assert action == "/login"
    assert dict(fields)["resend_to"] == "/users/role" and dict(fields)["resend_token"] == token
    # what it holds stays on the box (gateway.web.keptform): the page names it by a reference only
    assert [n for n, _ in fields] == ["csrf_token", "next", "resend_to", "resend_token", "resend_ref"]
    assert "technician" not in page
    # a wrong password keeps the form on the login page
    wrong = await web_env.client.post(action, data=[*fields, ("name", "admin1"), ("password", "nope")])
    assert wrong.status == 401
    action, fields = form_in(await wrong.text(), "login-form")
    assert dict(fields)["resend_to"] == "/users/role"
    answer = await web_env.client.post(
        action,
        data=[*fields, ("name", "admin1"), ("password", "correct horse battery staple 42")],
        allow_redirects=False,
    )
    assert (answer.status, answer.headers["Location"]) == (302, "/form/resend")
    user = web_env.accounts.get_user("mika")
    assert user is not None and user.role is Role.VIEWER
    offered = await web_env.client.get("/form/resend")
    action, fields = form_in(await offered.text(), "resend-form")
    assert (await web_env.client.post(action, data=fields, allow_redirects=False)).status == 302
    user = web_env.accounts.get_user("mika")
    assert user is not None and user.role is Role.TECHNICIAN
    # offered once: the page does not keep it
    assert (await web_env.client.get("/form/resend", allow_redirects=False)).headers["Location"] == "/"
