"""A failed login is audited with the account it named, never with whatever was typed: a password typed into
the name field (`river-gauge-cabinet-7` fits the user-name pattern) would be kept for years and shown on /audit."""

from __future__ import annotations

import re

import pytest

from gateway.accounts.store import Role
from gateway.web.config import WebConfig
from tests.web.conftest import WebEnv, csrf_token, login

SECRET = "river-gauge-cabinet-7"
ERROR_RE = re.compile(r'<p id="login-error"[^>]*>[^<]*</p>')


async def test_a_password_typed_as_the_name_is_not_audited(web_env: WebEnv) -> None:
    web_env.add_user("tanaka", Role.ADMIN, password=SECRET)
    other = await web_env.browser()
    typo = await login(other, SECRET, SECRET)  # the password in both fields
    wrong = await login(other, "TANAKA", "not the password")
    # the reply does not tell which was an account
    assert typo.status == wrong.status == 401
    assert ERROR_RE.findall(await typo.text()) == ERROR_RE.findall(await wrong.text()) != []
    failed = web_env.entries("login.failed")
    assert [(e.actor, e.target) for e in reversed(failed)] == [("-", ""), ("tanaka", "")]
    assert all(SECRET not in repr(e) for e in web_env.audit.entries(limit=1000))
    assert (await login(web_env.client, "tanaka", SECRET)).status == 302
    assert SECRET not in await (await web_env.client.get("/audit")).text()


@pytest.mark.parametrize("web_config", [WebConfig(address_attempts_per_minute=1)])
async def test_a_throttled_attempt_names_only_an_account(web_env: WebEnv) -> None:
    web_env.add_user("tanaka", Role.ADMIN)
    token = await csrf_token(web_env.client)
    # a throttled spell is audited at its first try: each spell here is one try, a minute apart
    for name in ("tanaka", SECRET):
        await web_env.client.post("/login", data={"csrf_token": token, "name": name, "password": "x" * 12})
    web_env.clock.advance(60)
    for name in ("tanaka", "Tanaka"):
        await web_env.client.post("/login", data={"csrf_token": token, "name": name, "password": "x" * 12})
    throttled = [e for e in reversed(web_env.entries("login.failed")) if e.detail["reason"] == "throttled"]
    assert [e.actor for e in throttled] == ["-", "tanaka"]
