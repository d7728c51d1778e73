"""A shared PC: a form one user left open is never offered to the next user of the same browser.

The forms' tokens were signed for the browser only. On a library PC admin1 left /users open with mika about to
become an admin; admin1's session ran out; kana logged in. Sending admin1's tab showed kana the "send it again"
page with admin1's values, and one press did it in kana's name (the audit said kana changed mika's role). The
same through the login page: admin1's refused form rode along with kana's login, and the page told kana that
"you logged in again". The tokens are now signed for the user too (gateway.web.formtoken): a form is offered
again only to the user it was given to, checked after the password for a form carried through the login.
"""

from __future__ import annotations

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, csrf_token, login
from tests.web.test_csrf_stale_form import ENTER_AGAIN, EXPIRED, form_in

OTHER_USER = (
    "このフォームは、このブラウザーで別のユーザーがログインしていたとき、またはログインする前に開かれたものです。"
)
NOT_SHOWN = "送信された内容は処理しておらず、ここにも表示しません。"
RELOGGED = "ログインし直した"
CARRIED = "このフォームを開いたときと同じユーザーでログインすると、/users/role へ送信し直せます。"
DISCARDED = (
    "ログインの前に送信されたフォームは、このユーザーに渡したものと確認できなかったため、送信せずに破棄しました。"
)
MIKA_TO_ADMIN = {"name": "mika", "role": "admin"}


async def admin1s_open_form(env: WebEnv) -> str:
    """admin1 opens /users, leaves the tab open and walks away: the token of that form."""
    env.add_user("admin1", Role.ADMIN)
    env.add_user("kana", Role.ADMIN)
    env.add_user("mika", Role.VIEWER)
    await login(env.client, "admin1")
    token = await csrf_token(env.client, "/users")
    env.clock.advance(16 * 60)  # past the idle timeout: admin1's session runs out
    return token


def role_of(env: WebEnv, name: str) -> Role:
    user = env.accounts.get_user(name)
    assert user is not None
    return user.role


async def test_a_form_of_one_user_is_not_offered_to_the_next(web_env: WebEnv) -> None:
    token = await admin1s_open_form(web_env)
    assert (await login(web_env.client, "kana")).status == 302  # the next librarian, same PC
    response = await web_env.client.post(
        "/users/role", data={"csrf_token": token, **MIKA_TO_ADMIN}, allow_redirects=False
    )
    page = await response.text()
    assert response.status == 403
    assert EXPIRED in page and OTHER_USER in page and NOT_SHOWN in page and ENTER_AGAIN in page
    assert 'id="resend-form"' not in page and 'value="mika"' not in page
    assert RELOGGED not in page  # kana did not log in again
    assert role_of(web_env, "mika") is Role.VIEWER
    assert web_env.actions() == ["login", "login"]


async def test_a_form_of_one_user_does_not_ride_along_with_the_next_users_login(web_env: WebEnv) -> None:
    token = await admin1s_open_form(web_env)
    response = await web_env.client.post(
        "/users/role", data={"csrf_token": token, **MIKA_TO_ADMIN}, allow_redirects=False
    )
    page = await response.text()
    assert response.status == 403
    # who opened it is not said (and not known before a password): the page says whose login sends it
    assert CARRIED in page and RELOGGED not in page and "もう一度ログインすると" not in page
    action, fields = form_in(page, "login-form")
    assert dict(fields)["resend_token"] == token  # checked against the user whose password is proved
    answer = await web_env.client.post(
        action, data=[*fields, ("name", "kana"), ("password", "correct horse battery staple 42")], allow_redirects=False
    )
    assert (answer.status, answer.headers["Location"]) == (302, "/users")
    assert DISCARDED in await (await web_env.client.get("/users")).text()
    assert (await web_env.client.get("/form/resend", allow_redirects=False)).headers["Location"] == "/"
    assert role_of(web_env, "mika") is Role.VIEWER
    assert "user.role" not in web_env.actions()


async def test_a_user_name_or_token_the_browser_sends_through_the_login_is_not_trusted(web_env: WebEnv) -> None:
    """kana edits the login page's hidden fields: another user's token, or none, is offered to nobody but its
    user; only a token this UI gave kana herself would do, and with it she could send the form anyway."""
    token = await admin1s_open_form(web_env)
    response = await web_env.client.post("/users/role", data={"csrf_token": token, **MIKA_TO_ADMIN})
    _, fields = form_in(await response.text(), "login-form")
    carried = [(n, v) for n, v in fields if n != "resend_token"]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for extra in ([("resend_token", token), ("user", "admin1")], [], [("resend_token", tampered)]):
        answer = await web_env.client.post(
            "/login",
            data=[
                *[(n, v) for n, v in carried if n != "csrf_token"],
                ("csrf_token", await csrf_token(web_env.client, "/login")),
                *extra,
                ("name", "kana"),
                ("password", "correct horse battery staple 42"),
            ],
            allow_redirects=False,
        )
        assert answer.status == 302 and answer.headers["Location"] != "/form/resend", extra
        logout = await web_env.client.post("/logout", data={"csrf_token": await csrf_token(web_env.client, "/")})
        assert logout.status == 200
    assert role_of(web_env, "mika") is Role.VIEWER


async def test_the_same_user_still_gets_the_form_back(web_env: WebEnv) -> None:
    """admin1 comes back to the same tab after kana: logged in again as admin1, the form is offered."""
    token = await admin1s_open_form(web_env)
    assert (await login(web_env.client, "kana")).status == 302
    assert (await web_env.client.post("/logout", data={"csrf_token": await csrf_token(web_env.client, "/")})).ok
    assert (await login(web_env.client, "admin1")).status == 302
    response = await web_env.client.post("/users/role", data={"csrf_token": token, **MIKA_TO_ADMIN})
    page = await response.text()
    assert response.status == 403 and OTHER_USER not in page
    action, fields = form_in(page, "resend-form")
    assert (await web_env.client.post(action, data=fields, allow_redirects=False)).status == 302
    assert role_of(web_env, "mika") is Role.ADMIN
    assert [e.actor for e in web_env.entries("user.role")] == ["admin1"]


async def test_a_form_opened_before_the_login_is_not_offered_to_the_user_who_logged_in(web_env: WebEnv) -> None:
    """The language buttons of a login page left open in one tab, pressed after a login in another."""
    web_env.add_user("kana", Role.ADMIN)
    before = await csrf_token(web_env.client, "/login")
    assert (await login(web_env.client, "kana")).status == 302
    response = await web_env.client.post("/lang", data={"csrf_token": before, "lang": "en", "next": "/"})
    page = await response.text()
    assert response.status == 403
    assert OTHER_USER in page and 'id="resend-form"' not in page and RELOGGED not in page


async def test_a_form_opened_before_any_login_is_offered_back_while_still_logged_out(web_env: WebEnv) -> None:
    """Not logged in then nor now (the session changed under the page): no login is asked for."""
    web_env.add_user("kana", Role.ADMIN)
    before = await csrf_token(web_env.client, "/login")
    assert (await login(web_env.client, "kana")).status == 302
    assert (await web_env.client.post("/logout", data={"csrf_token": await csrf_token(web_env.client, "/")})).ok
    response = await web_env.client.post("/lang", data={"csrf_token": before, "lang": "en", "next": "/"})
    page = await response.text()
    assert response.status == 403
    assert 'id="login-form"' not in page and RELOGGED not in page
    action, fields = form_in(page, "resend-form")
    assert (action, fields[1:]) == ("/lang", [("lang", "en"), ("next", "/")])
