"""A flood of throttled logins is a few audit entries and journal lines, not one each: the first refused try of
an address's spell is audited and logged, the others counted and told once, with their number, when it ends."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.audit.log import AuditEntry
from gateway.web.config import WebConfig
from gateway.web.refusals import MAX_SPELLS, RefusalSpells
from tests.web.conftest import START, WebEnv, csrf_token, login
from tests.web.spell_lines import warnings
from tests.web.test_login_lockout_per_address import STRANGER, stranger

FLOOD = 50
ALLOWED = 3
THROTTLE = pytest.mark.parametrize("web_config", [WebConfig(address_attempts_per_minute=ALLOWED)])


def throttled(web_env: WebEnv) -> list[AuditEntry]:
    entries = reversed(web_env.entries("login.failed"))
    return [e for e in entries if e.detail["reason"] == "throttled"]


async def flood(client: TestClient[web.Request, web.Application], count: int) -> list[int]:
    token = await csrf_token(client)
    statuses = []
    for _ in range(count):
        form = {"csrf_token": token, "name": "admin", "password": "wrong guess 123456"}
        statuses.append((await client.post("/login", data=form, allow_redirects=False)).status)
    return statuses


@THROTTLE
async def test_a_flood_is_audited_once_and_its_count_when_it_ends(
    web_env: WebEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    guesser = await stranger(web_env)
    assert await flood(web_env.client, ALLOWED) == [401] * ALLOWED
    caplog.clear()
    assert await flood(web_env.client, FLOOD) == [429] * FLOOD
    web_env.clock.advance(1)
    assert await flood(guesser, ALLOWED + 5) == [401] * ALLOWED + [429] * 5
    # during the spells: one entry and one line for each address
    assert [(e.address, e.actor, e.detail) for e in throttled(web_env)] == [
        ("127.0.0.1", "-", {"reason": "throttled"}),
        (STRANGER, "-", {"reason": "throttled"}),
    ]
    assert warnings(caplog) == [
        "web: login attempts from 127.0.0.1 throttled; more within a minute are counted, told at the end",
        f"web: login attempts from {STRANGER} throttled; more within a minute are counted, told at the end",
    ]
    caplog.clear()
    # the window moves on: the first address is let through again, which ends its spell
    web_env.clock.advance(60)
    assert (await login(web_env.client, "admin", "wrong guess 123456")).status == 401
    # the other address's spell, a window old, is told with it: each with its own count
    ended = throttled(web_env)[2:]
    assert [(e.address, e.actor, e.detail) for e in ended] == [
        (
            "127.0.0.1",
            "-",
            {
                "reason": "throttled",
                "refused": FLOOD,
                "first": "2026-12-01T00:00:00Z",
                "last": "2026-12-01T00:00:00Z",
                "requests": "POST /login",
            },
        ),
        (
            STRANGER,
            "-",
            {
                "reason": "throttled",
                "refused": 5,
                "first": "2026-12-01T00:00:01Z",
                "last": "2026-12-01T00:00:01Z",
                "requests": "POST /login",
            },
        ),
    ]
    assert [e.at for e in ended] == [START + 61] * 2  # told when they ended; their first and last try in the detail
    assert warnings(caplog) == [
        f"web: {FLOOD} login attempts from 127.0.0.1 refused from 2026-12-01T00:00:00Z to 2026-12-01T00:00:00Z"
        " (POST /login; the first told then, the others counted)",
        f"web: 5 login attempts from {STRANGER} refused from 2026-12-01T00:00:01Z to 2026-12-01T00:00:01Z"
        " (POST /login; the first told then, the others counted)",
    ]


@THROTTLE
async def test_a_steady_flood_is_two_entries_a_minute(web_env: WebEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    for _ in range(4):  # ten tries every 20 s: three let through a minute, when the oldest three age out
        await flood(web_env.client, 10)
        web_env.clock.advance(20)
    # the tries let through at 60 s end the first spell; the next opens with the refusal after them
    assert [(e.at, e.detail.get("refused")) for e in throttled(web_env)] == [
        (START, None),
        (START + 60, 27),
        (START + 60, None),
    ]
    await web_env.client.close()  # the UI stops: the open spell is told
    assert [(e.at, e.detail.get("refused")) for e in throttled(web_env)] == [
        (START, None),
        (START + 60, 27),
        (START + 60, None),
        (START + 80, 7),
    ]
    assert len([m for m in warnings(caplog) if "throttled;" in m]) == 2


@THROTTLE
async def test_a_spell_open_when_the_ui_stops_is_told(web_env: WebEnv) -> None:
    await flood(web_env.client, ALLOWED + 7)
    await web_env.client.close()  # the server's cleanup
    assert [e.detail.get("refused") for e in throttled(web_env)] == [None, 7]


@THROTTLE
async def test_an_address_that_stops_is_told_when_another_posts(web_env: WebEnv) -> None:
    guesser = await stranger(web_env)
    await flood(guesser, ALLOWED + 4)
    web_env.clock.advance(60)
    assert await flood(web_env.client, 1) == [401]
    told = throttled(web_env)
    assert [(e.address, e.detail.get("refused")) for e in told] == [(STRANGER, None), (STRANGER, 4)]


def test_the_open_spells_are_bounded_and_an_evicted_one_is_told() -> None:
    spells = RefusalSpells("login attempts")
    spells.refused("2001:db8::1", 0.0)
    spells.refused("2001:db8::1", 1.0)
    for n in range(2, MAX_SPELLS + 1):  # a scan rotating IPv6 addresses, within one window
        opened, ended = spells.refused(f"2001:db8::{n:x}", 2.0)
        assert opened is not None
        assert ended == []
    opened, ended = spells.refused("2001:db8:1::", 3.0)
    assert len(spells) == MAX_SPELLS
    assert [(s.address, s.refused, s.first_at, s.last_at) for s in ended] == [("2001:db8::1", 2, 0.0, 1.0)]
