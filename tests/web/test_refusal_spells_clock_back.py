"""A wall clock stepped back ends the spells it would leave open, and never stops the sweep.

Review F5: with the clock set back an hour, `now < _swept_at + window` held for that hour, so no address's
spell was swept; an address's own spell stayed open, and its closing line read "from 00:00 to 23:50" (its last
refusal before its first).
"""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.web.conftest import WebEnv
from tests.web.spell_lines import warnings
from tests.web.test_login_lockout_per_address import STRANGER, stranger

FIRST = (
    "web: POST /login from {address} refused, missing or wrong CSRF token (not one this browser was given);"
    " more within a minute are counted"
)
ENDED = (
    "web: {count} forms with a missing or wrong CSRF token from {address} refused from {first} to {last}"
    " (POST /login; the first told then, the others counted)"
)


async def forged(client: TestClient[web.Request, web.Application], count: int) -> None:
    await client.get("/login")
    for n in range(count):
        form = {"csrf_token": f"forged-{n}", "name": "admin", "password": "wrong guess 123456"}
        assert (await client.post("/login", data=form, allow_redirects=False)).status == 403


async def test_a_clock_set_back_ends_the_spell_and_opens_the_next(
    web_env: WebEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    web_env.clock.advance(30)
    await forged(web_env.client, 3)
    web_env.clock.advance(-600)  # NTP steps the clock back ten minutes
    await forged(web_env.client, 2)
    assert warnings(caplog) == [
        FIRST.format(address="127.0.0.1"),
        ENDED.format(count=3, address="127.0.0.1", first="2026-12-01T00:00:30Z", last="2026-12-01T00:00:30Z"),
        FIRST.format(address="127.0.0.1"),
    ]
    await web_env.client.close()
    assert warnings(caplog)[-1] == ENDED.format(
        count=2, address="127.0.0.1", first="2026-11-30T23:50:30Z", last="2026-11-30T23:50:30Z"
    )


async def test_a_clock_set_back_does_not_stop_the_sweep(web_env: WebEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    guesser = await stranger(web_env)
    await forged(guesser, 3)
    web_env.clock.advance(-3600)  # an hour back: the other address's spell must not wait an hour to be told
    await forged(web_env.client, 1)
    assert ENDED.format(
        count=3, address=STRANGER, first="2026-12-01T00:00:00Z", last="2026-12-01T00:00:00Z"
    ) in warnings(caplog)
