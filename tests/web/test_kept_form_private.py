"""A refused form kept for sending again: nothing of it in a page left on a shared PC, shown before it is sent
again, and only to the very account that filled it in.

A library desk PC: a librarian assigns a locker to a patron (the patron's e-mail address), her session runs
out, the form is refused and the login page offers to carry it. That login page once held the e-mail address
in hidden fields, for the next person at the desk to read in the page source or get back from the browser's
form restore. The /form/resend page named only the path the form goes to. And a librarian removed and added
again under the same name (maybe another person) was offered the old account's forms.
"""

from __future__ import annotations

from gateway.accounts.store import Role
from gateway.web.i18n import Catalogs
from tests.web.conftest import PASSWORD, WebEnv, csrf_token, login
from tests.web.test_csrf_shared_browser import DISCARDED, OTHER_USER
from tests.web.test_csrf_stale_form import form_in

EMAIL = "hanako.patron@example.jp"
ASSIGN = {"entity_id": "urn:ngsi-ld:LockerCompartment:desk-3", "label": "A-3", "email": EMAIL, "reference": "R-0042"}
RESEND_HEADING = "予約資料の受取ロッカー"  # lockers.title: the page the form came from
TOO_OLD = "ログインの前に送信されたフォームは、保管できる時間（10分）を過ぎたため、送信せずに破棄しました。"


async def librarians_refused_assignment(env: WebEnv) -> str:
    """mika fills in the assignment, her session runs out, she presses send: the login page's HTML. (mika is an
    admin: /form/resend is for the roles on the viewer ladder, not yet for a librarian's.)"""
    env.add_user("mika", Role.ADMIN)
    await login(env.client, "mika")
    token = await csrf_token(env.client, "/password")
    env.clock.advance(16 * 60)  # past the idle timeout
    response = await env.client.post("/lockers/assign", data={"csrf_token": token, **ASSIGN}, allow_redirects=False)
    assert response.status == 403
    page = await response.text()
    assert 'id="login-form"' in page
    return page


async def log_in_with(env: WebEnv, page: str, name: str) -> str:
    """The login page's form sent with `name`'s password: where the answer sends the browser."""
    action, fields = form_in(page, "login-form")
    answer = await env.client.post(
        action, data=[*fields, ("name", name), ("password", PASSWORD)], allow_redirects=False
    )
    assert answer.status == 302
    return answer.headers["Location"]


async def test_the_login_page_holds_none_of_the_refused_forms_values(web_env: WebEnv) -> None:
    page = await librarians_refused_assignment(web_env)
    assert EMAIL not in page and "R-0042" not in page and "desk-3" not in page
    assert "kept." not in page
    # the values are still there for mika once she has logged in
    assert await log_in_with(web_env, page, "mika") == "/form/resend"
    action, fields = form_in(await (await web_env.client.get("/form/resend")).text(), "resend-form")
    assert action == "/lockers/assign"
    assert fields[1:] == list(ASSIGN.items())


async def test_a_wrong_password_keeps_the_values_off_the_page_too(web_env: WebEnv) -> None:
    page = await librarians_refused_assignment(web_env)
    action, fields = form_in(page, "login-form")
    wrong = await web_env.client.post(action, data=[*fields, ("name", "mika"), ("password", "nope")])
    again = await wrong.text()
    assert wrong.status == 401 and 'id="login-form"' in again
    assert EMAIL not in again and "R-0042" not in again
    assert await log_in_with(web_env, again, "mika") == "/form/resend"


async def test_the_values_are_kept_a_few_minutes_only(web_env: WebEnv) -> None:
    page = await librarians_refused_assignment(web_env)
    web_env.clock.advance(11 * 60)
    assert await log_in_with(web_env, page, "mika") == "/form/resend"
    shown = await web_env.client.get("/form/resend")
    assert shown.url.path == "/" and TOO_OLD in await shown.text()


async def test_the_resend_page_names_the_form_and_shows_what_goes_again(web_env: WebEnv) -> None:
    page = await librarians_refused_assignment(web_env)
    assert await log_in_with(web_env, page, "mika") == "/form/resend"
    offered = await (await web_env.client.get("/form/resend")).text()
    assert f"「{RESEND_HEADING}」のフォーム" in offered
    shown = offered[offered.index('<dl id="resend-fields">') :]
    shown = shown[: shown.index("</dl>")]
    # the e-mail address as the box masks it everywhere (its domain only); the rest as typed
    assert "<dt>email</dt><dd>***@example.jp</dd>" in shown and "hanako" not in shown
    assert "<dt>reference</dt><dd>R-0042</dd>" in shown and "<dt>label</dt><dd>A-3</dd>" in shown


async def test_the_resend_page_names_the_form_in_english_too(web_env: WebEnv) -> None:
    page = await librarians_refused_assignment(web_env)
    assert await log_in_with(web_env, page, "mika") == "/form/resend"
    web_env.accounts.set_language("mika", "en")
    offered = await (await web_env.client.get("/form/resend")).text()
    assert "the form of “Reserved-book pickup lockers”" in offered


async def test_a_re_created_account_is_not_offered_the_old_ones_form_through_the_login(web_env: WebEnv) -> None:
    page = await librarians_refused_assignment(web_env)
    web_env.add_user("admin1", Role.ADMIN)  # who removes mika and adds her again
    web_env.accounts.remove_user("mika")
    web_env.clock.advance(60)
    web_env.add_user("mika", Role.ADMIN)  # another person, the same name
    await log_in_with(web_env, page, "mika")
    shown = await web_env.client.get("/form/resend")
    assert shown.url.path == "/" and DISCARDED in await shown.text()
    assert (await web_env.client.get("/form/resend", allow_redirects=False)).headers["Location"] == "/"


async def test_a_re_created_account_logged_in_is_not_offered_the_old_ones_form(web_env: WebEnv) -> None:
    web_env.add_user("mika", Role.ADMIN)
    await login(web_env.client, "mika")
    token = await csrf_token(web_env.client, "/password")
    web_env.add_user("admin1", Role.ADMIN)
    web_env.accounts.remove_user("mika")
    web_env.clock.advance(60)
    web_env.add_user("mika", Role.ADMIN)
    assert (await login(web_env.client, "mika")).status == 302
    response = await web_env.client.post("/lockers/assign", data={"csrf_token": token, **ASSIGN})
    page = await response.text()
    assert response.status == 403
    assert OTHER_USER in page and 'id="resend-form"' not in page and EMAIL not in page


async def test_a_password_change_keeps_the_accounts_forms(web_env: WebEnv) -> None:
    """Not a new account: the same person's form left open in another tab is still offered."""
    web_env.add_user("mika", Role.ADMIN)
    await login(web_env.client, "mika")
    token = await csrf_token(web_env.client, "/password")
    web_env.clock.advance(60)
    web_env.accounts.set_password("mika", "a brand new passphrase 77", now=web_env.clock())
    assert (await login(web_env.client, "mika", "a brand new passphrase 77")).status == 302
    response = await web_env.client.post("/lockers/assign", data={"csrf_token": token, **ASSIGN})
    assert response.status == 403
    _, fields = form_in(await response.text(), "resend-form")
    assert fields[1:] == list(ASSIGN.items())


def test_every_part_of_the_ui_with_forms_names_them(web_env: WebEnv) -> None:
    """A form of a new page gets a title on the resend page, or is one of the pages' own (the language buttons)
    or never kept (a password's)."""
    from gateway.web.keptform import FORM_TITLES  # imported here: the other tests here run on older code too

    untitled = {"/lang", "/login", "/logout", "/password", "/setup"}
    sections = {
        "/" + route.resource.canonical.lstrip("/").split("/", 1)[0]
        for route in web_env.app.router.routes()
        if route.method == "POST" and route.resource is not None
    }
    assert sections - untitled == set(FORM_TITLES)
    for key in FORM_TITLES.values():
        for lang in ("ja", "en"):
            assert Catalogs(strict=True).translate(lang, key)
