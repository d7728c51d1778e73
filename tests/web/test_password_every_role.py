"""Every role changes its own password: the librarian and the Wi-Fi auditor stand beside the viewer's ladder,
and a must-change or expired password sends them to /password like anyone else."""

from __future__ import annotations

import pytest

from gateway.accounts.store import Role
from gateway.web.render import home_page
from tests.web.conftest import PASSWORD, WebEnv, login, post_form

NEW = "a-new-passphrase-for-2027"


@pytest.mark.parametrize("role", list(Role))
async def test_every_role_reaches_and_uses_its_own_password_page(web_env: WebEnv, role: Role) -> None:
    web_env.add_user("someone", role, must_change=True)
    r = await login(web_env.client, "someone")
    assert r.status == 302 and r.headers["Location"] == "/password"
    page = await web_env.client.get("/password", allow_redirects=False)
    assert page.status == 200, f"{role.value}: /password answered {page.status}"
    form = {"current": PASSWORD, "new": NEW, "confirm": NEW}
    r = await post_form(web_env.client, "/password", form, token_from="/password")
    assert r.status == 302, f"{role.value}: changing the password answered {r.status}"
    assert web_env.accounts.authenticate("someone", NEW, address="127.0.0.1", now=web_env.clock()).ok


@pytest.mark.parametrize("role", list(Role))
async def test_every_roles_login_lands_on_a_page_it_may_see(web_env: WebEnv, role: Role) -> None:
    web_env.add_user("someone", role)
    r = await login(web_env.client, "someone")
    assert r.status == 302 and r.headers["Location"] == "/"
    page = await web_env.client.get("/")
    assert page.status != 403, f"{role.value}: its login landed on {page.url.path}, answered 403"
    if role.allows(Role.VIEWER):
        assert page.status == 200 and page.url.path == "/"
    else:
        # its own first page (/wifi answers 503 here: this box keeps no Wi-Fi log)
        assert page.url.path == home_page(role) != "/"
        # the dashboard's data stays the viewer ladder's
        assert (await web_env.client.get("/api/status")).status == 403


@pytest.mark.parametrize("role", [Role.LIBRARIAN, Role.WIFI_AUDITOR])
async def test_a_form_left_open_is_offered_again_to_every_role(web_env: WebEnv, role: Role) -> None:
    """The form page after a login that carried a refused form: /form/resend answered 403 outside the ladder."""
    web_env.add_user("someone", role)
    await login(web_env.client, "someone")
    # nothing carried: the page sends the user on, never a 403
    r = await web_env.client.get("/form/resend", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/"
