"""A flood of posts without their CSRF token is a few journal lines, not one each: the first refusal of an
address's spell is logged, the others counted and told once, with their number, when it ends."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.web.conftest import WebEnv
from tests.web.spell_lines import warnings
from tests.web.test_login_lockout_per_address import STRANGER, stranger

FLOOD = 50
FIRST = (
    "web: POST /login from {address} refused, missing or wrong CSRF token (not one this browser was given);"
    " more within a minute are counted"
)
ENDED = (
    "web: {count} forms with a missing or wrong CSRF token from {address} refused from {first} to {last}"
    " ({requests}; the first told then, the others counted)"
)


async def forged(client: TestClient[web.Request, web.Application], count: int) -> list[int]:
    await client.get("/login")  # a session: refused forms get the page, not a redirect
    statuses = []
    for n in range(count):
        form = {"csrf_token": f"forged-{n}", "name": "admin", "password": "wrong guess 123456"}
        statuses.append((await client.post("/login", data=form, allow_redirects=False)).status)
    return statuses


async def test_a_flood_of_forged_forms_is_logged_once_and_its_count_when_it_ends(
    web_env: WebEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    guesser = await stranger(web_env)
    assert await forged(web_env.client, FLOOD) == [403] * FLOOD
    web_env.clock.advance(30)
    assert await forged(guesser, 3) == [403] * 3
    assert await forged(web_env.client, 2) == [403] * 2  # within the window of its spell's first
    assert warnings(caplog) == [FIRST.format(address="127.0.0.1"), FIRST.format(address=STRANGER)]
    caplog.clear()
    # a window after its first: this refusal ends the spell and opens the next
    web_env.clock.advance(30)
    assert await forged(web_env.client, 1) == [403]
    assert warnings(caplog) == [
        ENDED.format(
            requests="POST /login",
            count=FLOOD + 2,
            address="127.0.0.1",
            first="2026-12-01T00:00:00Z",
            last="2026-12-01T00:00:30Z",
        ),
        FIRST.format(address="127.0.0.1"),
    ]
    caplog.clear()
    # the other address stopped: its spell is told by a refusal from anywhere, within two windows of its first
    web_env.clock.advance(30)
    assert await forged(web_env.client, 1) == [403]
    assert warnings(caplog) == []
    web_env.clock.advance(30)
    assert await forged(web_env.client, 1) == [403]
    assert warnings(caplog) == [
        ENDED.format(
            requests="POST /login", count=3, address=STRANGER, first="2026-12-01T00:00:30Z", last="2026-12-01T00:00:30Z"
        ),
        ENDED.format(
            requests="POST /login",
            count=2,
            address="127.0.0.1",
            first="2026-12-01T00:01:00Z",
            last="2026-12-01T00:01:30Z",
        ),
        FIRST.format(address="127.0.0.1"),
    ]


async def test_a_script_flooding_with_a_wrong_header_is_logged_once(
    web_env: WebEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    for _ in range(FLOOD):
        response = await web_env.client.post("/logout", headers={"X-CSRF-Token": "forged"})
        assert response.status == 403
    await web_env.client.close()  # the UI stops: the open spell is told
    assert warnings(caplog) == [
        "web: POST /logout from 127.0.0.1 refused, missing or wrong CSRF token (a script's header or an /api"
        " request); more within a minute are counted",
        ENDED.format(
            requests="POST /logout",
            count=FLOOD,
            address="127.0.0.1",
            first="2026-12-01T00:00:00Z",
            last="2026-12-01T00:00:00Z",
        ),
    ]


async def test_a_single_refusal_is_one_line(web_env: WebEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    assert await forged(web_env.client, 1) == [403]
    web_env.clock.advance(60)
    await web_env.client.close()
    assert warnings(caplog) == [FIRST.format(address="127.0.0.1")]
