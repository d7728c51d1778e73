"""The other refusals a flood can repeat are told per spell too: forms that are not text (admin UI and kiosk), the
kiosk's forms without their token, and the kiosk's throttled tries, which said nothing at all.

Review F2: 50 POSTs with `charset=x-nonexistent` gave 50 WARNINGs, 200 forged kiosk POSTs 200, and the kiosk's
throttle refused without a line or a count.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.control.client import ControlClient
from gateway.web.kiosk import COOKIE, build_kiosk_app
from tests.web.conftest import Clock, WebEnv
from tests.web.spell_lines import warnings

FLOOD = 30
UNREADABLE = {"Content-Type": "application/x-www-form-urlencoded; charset=x-nonexistent"}
ENDED = "{source}: {count} {what} from 127.0.0.1 refused from {first} to {last} ({requests}; the first told then, the others counted)"
AT_START = "2026-12-01T00:00:00Z"


async def test_unreadable_forms_to_the_ui_are_told_per_spell(web_env: WebEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    for _ in range(FLOOD):
        response = await web_env.client.post("/login", data=b"name=a&password=x", headers=UNREADABLE)
        assert response.status == 400
    await web_env.client.close()  # the UI stops: the open spell is told
    assert warnings(caplog) == [
        "web: POST /login from 127.0.0.1 refused, form data unreadable (unknown encoding: x-nonexistent);"
        " more within a minute are counted",
        ENDED.format(
            source="web",
            count=FLOOD,
            what="forms whose data is not text",
            first=AT_START,
            last=AT_START,
            requests="POST /login",
        ),
    ]


def kiosk(tmp_path: Path, clock: Clock, attempts_per_minute: int = 10) -> TestClient[web.Request, web.Application]:
    control = ControlClient(tmp_path / "none.sock")
    app = build_kiosk_app(control, clock=clock, secure_cookie=False, attempts_per_minute=attempts_per_minute)
    return TestClient(TestServer(app))


async def test_forged_kiosk_forms_are_told_per_spell(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    clock = Clock()
    async with kiosk(tmp_path, clock) as client:
        for n in range(FLOOD):
            form = {"csrf_token": f"forged-{n}", "label": "A-01", "code": "1234"}
            assert (await client.post("/open", data=form)).status == 403
        for _ in range(3):
            assert (await client.post("/open", data=b"label=A", headers=UNREADABLE)).status == 400
    assert warnings(caplog) == [
        "kiosk: POST /open from 127.0.0.1 refused, missing or wrong CSRF token; more within a minute are counted",
        "kiosk: POST /open from 127.0.0.1 refused, form data unreadable (unknown encoding: x-nonexistent);"
        " more within a minute are counted",
        ENDED.format(
            source="kiosk",
            count=FLOOD,
            what="forms with a missing or wrong CSRF token",
            first=AT_START,
            last=AT_START,
            requests="POST /open",
        ),
        ENDED.format(
            source="kiosk",
            count=3,
            what="forms whose data is not text",
            first=AT_START,
            last=AT_START,
            requests="POST /open",
        ),
    ]


async def test_throttled_kiosk_tries_are_told_per_spell(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    clock = Clock()
    async with kiosk(tmp_path, clock, attempts_per_minute=2) as client:
        token = (await client.get("/")).cookies[COOKIE].value
        statuses = []
        for _ in range(12):
            response = await client.post("/open", data={"csrf_token": token, "label": "A-01", "code": "1234"})
            statuses.append(response.status)
            token = response.cookies[COOKIE].value  # each answer's form carries a token of its own
            clock.advance(1)
        # no gateway behind this kiosk: a try let through is "try again later"
        assert statuses == [503] * 2 + [429] * 10
        assert warnings(caplog)[-1] == (
            "kiosk: tries from 127.0.0.1 throttled; more within a minute are counted, told at the end"
        )
    assert warnings(caplog)[-1] == ENDED.format(
        source="kiosk",
        count=10,
        what="tries",
        first="2026-12-01T00:00:02Z",
        last="2026-12-01T00:00:11Z",
        requests="POST /open",
    )
