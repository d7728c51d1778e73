"""A spell's closing line names what was refused: the first few kinds of request (method and path, a setup token
never), the rest counted; the audited login spell says it in its detail too.

Review F4: a logged-in browser's forged posts to /lang, /users/add and /config/apply were told as one WARNING
naming /lang only: the counted refusals said nothing of where they went.
"""

from __future__ import annotations

import logging

import pytest

from gateway.accounts.store import Role
from gateway.web.config import WebConfig
from tests.web.conftest import WebEnv, csrf_token, login
from tests.web.spell_lines import warnings

ENDED = (
    "web: {count} forms with a missing or wrong CSRF token from 127.0.0.1 refused from 2026-12-01T00:00:00Z to"
    " 2026-12-01T00:00:00Z ({requests}; the first told then, the others counted)"
)


async def test_the_closing_line_names_the_forms_refused(web_env: WebEnv, caplog: pytest.LogCaptureFixture) -> None:
    web_env.add_user("tanaka", Role.ADMIN)
    assert (await login(web_env.client, "tanaka")).status == 302
    caplog.set_level(logging.INFO, logger="gateway")
    for path in ("/lang", "/users/add", "/config/apply", "/lang"):
        response = await web_env.client.post(path, data={"csrf_token": "forged"}, allow_redirects=False)
        assert response.status == 403
    await web_env.client.close()
    assert warnings(caplog)[-1] == ENDED.format(count=4, requests="POST /lang, POST /users/add, POST /config/apply")


async def test_the_first_five_kinds_are_named_and_the_rest_counted(
    web_env: WebEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    await web_env.client.get("/login")
    paths = ["/setup/0123456789abcdef-one-time", "/a", "/b", "/c", "/d", "/e", "/f", "/" + "x" * 200, "/a"]
    for path in paths:
        response = await web_env.client.post(path, data={"csrf_token": "forged"}, allow_redirects=False)
        assert response.status in (302, 403)
    await web_env.client.close()
    told = warnings(caplog)[-1]
    assert told == ENDED.format(
        count=len(paths), requests="POST /setup/…, POST /a, POST /b, POST /c, POST /d and 3 more"
    )
    assert "0123456789abcdef" not in "\n".join(r.getMessage() for r in caplog.records)


async def test_a_path_that_decodes_to_a_line_break_stays_one_line(
    web_env: WebEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    await web_env.client.get("/login")
    for _ in range(2):
        response = await web_env.client.post("/x%0Aforged%20entry", data={"csrf_token": "forged"})
        assert response.status == 403
    await web_env.client.close()
    assert warnings(caplog)[-1] == ENDED.format(count=2, requests="POST /x%0Aforged%20entry")


@pytest.mark.parametrize("web_config", [WebConfig(address_attempts_per_minute=1)])
async def test_the_login_spell_says_its_requests_in_the_audit_detail(web_env: WebEnv) -> None:
    token = await csrf_token(web_env.client)
    form = {"csrf_token": token, "name": "admin", "password": "wrong guess 123456"}
    assert [(await web_env.client.post("/login", data=form)).status for _ in range(3)] == [401, 429, 429]
    await web_env.client.close()
    ended = web_env.entries("login.failed")[0]
    assert ended.detail == {
        "reason": "throttled",
        "refused": 2,
        "first": "2026-12-01T00:00:00Z",
        "last": "2026-12-01T00:00:00Z",
        "requests": "POST /login",
    }
