"""The gateway's Device entity at the Orion double through a simulated day: state changes and availability."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import FormatChecker

from gateway.app import Gateway
from gateway.delivery import UplinkState
from gateway.fleet.availability import Availability
from gateway.fleet.service import FleetService
from gateway.records import iso_utc
from tests.fleet.conftest import T0, Clock, gateway_config, until
from tests.smart_models import test_schemas
from tests.support.entity_state import key_values
from tests.support.orion_double import OrionDouble

DEVICE = "urn:ngsi-ld:Device:gw-fleet"


def held(orion: OrionDouble, entity_id: str) -> dict[str, Any] | None:
    for (_, _, eid), entity in orion.entities.items():
        if eid == entity_id:
            return entity
    return None


def observed(orion: OrionDouble) -> Any:
    """dateObserved of the Device entity Orion holds (None before the first)."""
    return ((held(orion, DEVICE) or {}).get("dateObserved") or {}).get("value")


def states(orion: OrionDouble) -> list[str]:
    """deviceState of every Device update Orion applied, in arrival order, repeats folded."""
    out: list[str] = []
    for e in orion.written:
        if e.get("id") == DEVICE and "deviceState" in e:
            value = e["deviceState"]["value"]
            if not out or out[-1] != value:
                out.append(value)
    return out


def schemas_with_ip_formats(monkeypatch: pytest.MonkeyPatch) -> test_schemas.Schemas:
    """The vendored schemas, checking the ipv4/ipv6 formats too: Device's ipAddress is `oneOf` the two, which
    only a checker that knows both can decide (the shared checker knows date-time only)."""
    checker = FormatChecker(formats=())
    checker.checks("date-time", raises=ValueError)(test_schemas._date_time)
    checker.checks("ipv4")(lambda v: not isinstance(v, str) or isinstance(_ip(v), ipaddress.IPv4Address))
    checker.checks("ipv6")(lambda v: not isinstance(v, str) or isinstance(_ip(v), ipaddress.IPv6Address))
    monkeypatch.setattr(test_schemas, "FORMATS", checker)
    return test_schemas.Schemas(test_schemas.vendor_models())


async def drained(fleet: FleetService, timeout_s: float = 10.0) -> None:
    """Wait until the status shows the Orion uplink idle with no row left to deliver (its cursor past them all)."""

    async def busy() -> tuple[Any, int]:
        doc = await fleet.status()
        [state] = [u["state"] for u in doc["uplinks"] if u["name"] == "orion"]
        return state, int(sum(doc["buffer"]["uplinks"]["orion"]["pending"].values()))

    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while (seen := await busy()) != ("idle", 0):
        if loop.time() > end:
            raise AssertionError(f"orion uplink not drained after {timeout_s} s, got (state, pending) {seen}")
        await asyncio.sleep(0.02)


def _ip(value: str) -> object:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


async def test_a_day_of_device_reports_state_changes_and_the_availability_figure(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = gateway_config(tmp_path, orion_double.url, {"report_interval_s": 300, "alarms": {"rules": []}})
    gw = Gateway(config)
    await gw.start()
    try:
        assert gw.fleet is not None
        fleet = gw.fleet
        fleet.addresses = lambda: ["192.0.2.10"]
        fleet.availability.max_gap_s = 900  # the test ticks every 10 minutes, the service every 10 s
        await fleet.tick(clock.now)
        await until(lambda: held(orion_double, DEVICE) is not None)
        # the morning: every 10 minutes until 06:00, reported every 300 s
        for _ in range(36):
            await fleet.tick(clock.advance(600))
        # 06:05: Orion goes down; the uplink backs off and the state changes at once (no interval wait).
        # The report due now is what the uplink fails on: the one of 06:00 may already be in Orion.
        orion_double.fail(503, until=time.monotonic() + 0.5)
        await fleet.tick(clock.advance(300))
        await until(lambda: gw.loops[0].state is UplinkState.BACKING_OFF)
        await fleet.tick(clock.advance(60))
        await until(lambda: gw.loops[0].state is UplinkState.IDLE, timeout_s=15)
        await fleet.tick(clock.advance(60))
        # 12:00-14:00 the box is off (a power cut): no ticks, counted down
        for _ in range(30):
            await fleet.tick(clock.advance(600))
        clock.advance(2 * 3600)
        for _ in range(99):
            await fleet.tick(clock.advance(600))
        # the last report is built once every earlier row is delivered, so the backlog it carries is known
        await drained(fleet)
        last = clock.advance(600)
        await fleet.tick(last)
        await until(lambda: observed(orion_double) == iso_utc(datetime.fromtimestamp(last, UTC)))
        await until(lambda: gw.loops[0].state is UplinkState.IDLE)
    finally:
        await gw.stop()

    assert states(orion_double) == ["ok", "degraded", "ok"]
    device = key_values(held(orion_double, DEVICE))  # type: ignore[arg-type]
    assert schemas_with_ip_formats(monkeypatch).problems(device) == []
    assert device["softwareVersion"]
    assert device["ipAddress"] == ["192.0.2.10"]
    assert device["uplinks"]["orion"] == {"state": "idle", "backlog": 0, "oldestPendingAge": 0}
    assert device["safeMode"] is False
    # 2026-07-01 (Tokyo) as sent the next day: 24 h minus the cut (2 h and the 10 minutes to the first tick after)
    figure = device["availability"]
    assert figure["day"] == "2026-07-01"
    assert figure["uptimePercent"] == round(100 * (86_400 - 7_800) / 86_400, 3)
    assert figure["deliveringPercent"] < figure["uptimePercent"]  # the minutes Orion refused
    stored = Availability(Path(config.gateway.data_dir) / "availability.json", max_gap_s=900)
    assert stored.figure(date(2026, 7, 1)).uptime_percent == figure["uptimePercent"]
    assert clock.now > T0 + 86_400
