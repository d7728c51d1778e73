"""uplink_not_delivering across reloads and restarts: cleared only by a delivery, timed from the outage's start.

A new generation's uplink has delivered nothing yet and its `started_at` is new: read as "fresh", a
reload cleared an alarm nothing had fixed (a "cleared" mail and Alert, then raised again `for_s`
later), and a gateway restarting more often than `for_s` never alarmed. A real Runtime reloads
and restarts here; the uplink's platform answers 503 until told otherwise, over real HTTP; the
fleet service ticks at the real time (its `last_delivery` is real), by hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway, Runtime
from gateway.config import load_config
from gateway.delivery import UplinkState
from tests.fleet.conftest import until
from tests.support.orion_double import OrionDouble

CONFIG = """
[gateway]
id = "gw-fleet"
data_dir = "{data_dir}"

[[adapters]]
name = "gauges"
type = "simulated"
rate = 5

[[uplinks]]
name = "platform"
type = "orion"
url = "{url}"
retry_initial_s = 0.05
retry_max_s = 0.2

[fleet.alarms]
rules = [{{ kind = "uplink_not_delivering", severity = "critical", for_s = {for_s} }}]
"""
KEY = "uplink_not_delivering:platform"


class Platform:
    """An Orion double that answers 503 while `down`."""

    def __init__(self) -> None:
        self.down = True
        self.orion = OrionDouble(clock=lambda: 0.0 if self.down else 2.0)
        self.orion.fail(503, until=1.0)


@pytest.fixture
async def platform(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    monkeypatch.setattr(Gateway, "fleet_autotick", False)
    p = Platform()
    async with p.orion:
        yield p


def runtime(tmp_path: Path, platform: Platform, for_s: float) -> Runtime:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(data_dir=tmp_path / "data", url=platform.orion.url, for_s=for_s))
    return Runtime(path, load_config(path))


async def failing(rt: Runtime) -> dict[str, Any]:
    """One tick once the new generation's uplink has met the 503 (rows wait, it backs off)."""
    await until(lambda: rt.gateway.loops[0].state is UplinkState.BACKING_OFF)
    fleet = rt.gateway.fleet
    assert fleet is not None
    return await fleet.tick(time.time())


def active(doc: dict[str, Any]) -> list[tuple[str, float]]:
    return [(a["key"], a["raised_at"]) for a in doc["fleet"]["alarms"]]


def alerts(platform: Platform) -> list[tuple[str, str]]:
    """The platform's Alert entities: one per alarm raised, `cleared` once it is."""
    held = [e for e in platform.orion.entities.values() if e["type"] == "Alert"]
    return [(e["alarmKind"]["value"], e["alarmState"]["value"]) for e in held]


async def test_a_reload_does_not_clear_the_alarm_only_a_delivery_does(platform: Platform, tmp_path: Path) -> None:
    rt = runtime(tmp_path, platform, for_s=1)
    await rt.start()
    try:
        await failing(rt)
        await asyncio.sleep(1.2)
        raised = active(await failing(rt))
        assert [key for key, _ in raised] == [KEY]
        for _ in range(2):  # each config apply reloads; the uplink is as down as before
            assert await rt.reload() == []
            assert active(await failing(rt)) == raised
        await asyncio.sleep(1.2)  # a whole for_s of the new generation: not raised a second time
        assert active(await failing(rt)) == raised
        platform.down = False
        await until(lambda: rt.gateway.loops[0].delivered > 0, timeout_s=15)
        fleet = rt.gateway.fleet
        assert fleet is not None
        assert active(await fleet.tick(time.time())) == []
        # one alarm, raised once and cleared once, as the platform sees it
        await until(lambda: alerts(platform) == [("uplink_not_delivering", "cleared")], timeout_s=15)
    finally:
        await rt.stop()
    assert alerts(platform) == [("uplink_not_delivering", "cleared")]


async def test_a_gateway_restarting_more_often_than_for_s_still_alarms(
    platform: Platform, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.fleet.service")
    began = time.time()
    young: float | None = None
    for _ in range(6):  # generations of about a second: a service restarting, or a box rebooting
        rt = runtime(tmp_path, platform, for_s=3)
        await rt.start()
        try:
            doc = await failing(rt)
            if active(doc):
                young = time.time() - rt.gateway.started_at
                break
            await asyncio.sleep(1.0)
        finally:
            await rt.stop()
    # raised by a generation that alone has not been down for_s: the first one's start counts
    assert young is not None and young < 3
    assert time.time() - began >= 3
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.getMessage().startswith("alarm ")] == [
        "alarm raised"
    ]
    state = json.loads((tmp_path / "data" / "alarms.json").read_text())
    assert state["outages"]["platform"] <= began + 1  # dated from the first generation, on disk
