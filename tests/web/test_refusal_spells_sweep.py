"""A spell is told when it ends even when nothing else comes: the app sweeps its spells once a window, in a task
of its own, so a kill -9 loses at most a window's count.

Review F3: the sweep ran only inside a refusal or a let-through of the same store, and a form is never "let
through" for CSRF: 10 forged posts, then an hour of normal use, and the spell was still open and untold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.control.client import ControlClient
from gateway.web.config import WebConfig
from gateway.web.kiosk import build_kiosk_app
from gateway.web.refusals import WATCHED
from tests.web.conftest import START, Clock, csrf_token
from tests.web.spell_lines import warnings
from tests.web.test_refusal_spells_access_log import start, stop

SWEEP_EVERY_S = 0.02  # real seconds: the test's fake clock says how much of a window has passed
ENDED = (
    "{source}: {count} {what} from 127.0.0.1 refused from 2026-12-01T00:00:00Z to 2026-12-01T00:00:00Z"
    " (POST {path}; the first told then, the others counted)"
)


async def within_seconds(check: Callable[[], bool]) -> bool:
    """Whether `check` holds within a few seconds: the sweep is a task of its own."""
    for _ in range(500):
        if check():
            return True
        await asyncio.sleep(0.01)
    return False


async def told(caplog: pytest.LogCaptureFixture, line: str) -> bool:
    return await within_seconds(lambda: line in warnings(caplog))


async def test_a_csrf_spell_is_told_by_the_sweep_during_normal_use(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    env = await start(tmp_path, sweep_every_s=SWEEP_EVERY_S)
    try:
        await env.client.get("/login")
        for n in range(10):
            form = {"csrf_token": f"forged-{n}", "name": "admin", "password": "wrong guess 123456"}
            assert (await env.client.post("/login", data=form, allow_redirects=False)).status == 403
        ended = ENDED.format(source="web", count=10, what="forms with a missing or wrong CSRF token", path="/login")
        env.clock.advance(59)
        await asyncio.sleep(SWEEP_EVERY_S * 10)  # several sweeps: the spell is not a window old yet
        assert ended not in warnings(caplog)
        for _ in range(60):  # an hour of normal use: pages, no refusal, no form
            env.clock.advance(60)
            assert (await env.client.get("/login")).status == 200
            if ended in warnings(caplog):
                break
        assert await told(caplog, ended)
        assert env.clock() < START + 3600  # told within the hour's first minutes, not at its end
    finally:
        await stop(env)
    assert warnings(caplog).count(ended) == 1  # and not again when the UI stops


@pytest.mark.parametrize("config", [WebConfig(address_attempts_per_minute=1)])
async def test_a_throttled_spell_is_audited_by_the_sweep(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, config: WebConfig
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    env = await start(tmp_path, config, sweep_every_s=SWEEP_EVERY_S)
    try:
        token = await csrf_token(env.client)
        form = {"csrf_token": token, "name": "admin", "password": "wrong guess 123456"}
        assert [(await env.client.post("/login", data=form)).status for _ in range(6)] == [401] + [429] * 5
        env.clock.advance(60)
        assert await told(caplog, ENDED.format(source="web", count=5, what="login attempts", path="/login"))

        def throttled() -> list[tuple[float | None, object]]:
            entries = env.audit.entries(limit=100, action="login.failed")
            return [(e.at, e.detail.get("refused")) for e in entries if e.detail["reason"] == "throttled"]

        assert await within_seconds(lambda: len(throttled()) == 2)  # the entry follows the line
        assert throttled() == [(START + 60, 5), (START, None)]
    finally:
        await stop(env)


async def test_the_kiosk_sweeps_its_spells_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    clock = Clock()
    app = build_kiosk_app(ControlClient(tmp_path / "none.sock"), clock=clock, secure_cookie=False)
    app[WATCHED].every_s = SWEEP_EVERY_S
    async with TestClient(TestServer(app)) as client:
        for n in range(4):
            form = {"csrf_token": f"forged-{n}", "label": "A-01", "code": "1234"}
            assert (await client.post("/open", data=form)).status == 403
        clock.advance(60)
        ended = ENDED.format(source="kiosk", count=4, what="forms with a missing or wrong CSRF token", path="/open")
        assert await told(caplog, ended)
