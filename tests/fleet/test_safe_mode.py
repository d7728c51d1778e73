"""A crash loop puts the gateway in safe mode: the failing adapter stopped, the uplinks still draining, said everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.app import Gateway
from gateway.fleet.cli import status_lines
from gateway.fleet.safemode import ProcessStarts, RestartWindow
from gateway.records import Emit
from tests.fleet.conftest import Clock, gateway_config, until
from tests.support.orion_double import OrionDouble


class Crashing:
    """An adapter whose device library raises at once, every time (what a bad firmware profile does)."""

    config_model: ClassVar[type[AdapterConfig]] = AdapterConfig
    runs = 0

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        self.config = config

    async def run(self, emit: Emit) -> None:
        Crashing.runs += 1
        raise RuntimeError("serial port vanished")


async def test_a_crash_looping_adapter_is_stopped_and_the_buffer_still_drains(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    orion_double.fail(503, count=3)  # rows pile up first, then the platform answers
    cfg = gateway_config(tmp_path, orion_double.url, {"safe_mode": {"restarts": 2, "within_s": 600}, "alarms": {}})
    gw = Gateway(cfg)
    await gw.start()
    try:
        fleet, supervisor = gw.fleet, gw.supervisor
        assert fleet is not None and supervisor is not None
        await fleet.tick(clock.now)
        # a second adapter, supervised like any other (its backoff is the gateway's: 1 s, then 2 s)
        rs485 = AdapterConfig(name="rs485", type="modbus")
        supervisor.start([(rs485, Crashing(rs485, gw.context))])
        await until(lambda: any(s.name == "rs485" and s.restarts >= 2 for s in supervisor.status()), timeout_s=10)
        doc: dict[str, Any] = await fleet.tick(clock.advance(10))
        assert doc["fleet"]["safe_mode"] == {
            "active": True,
            "reason": "adapter(s) rs485 restarted 2 times within 600 s: stopped",
            "stopped_adapters": ["rs485"],
        }
        runs = Crashing.runs
        assert [(a["name"], a["state"]) for a in doc["adapters"]] == [("gauges", "running"), ("rs485", "stopped")]
        assert [a["kind"] for a in doc["fleet"]["alarms"]] == ["crash_loop"]
        await until(lambda: orion_double.update_count > 0 and gw.loops[0].state.value == "idle", timeout_s=10)
        doc = await fleet.tick(clock.advance(10))
        assert Crashing.runs == runs  # stopped: not restarted again
    finally:
        await gw.stop()
    device = next(e for (_, _, eid), e in orion_double.entities.items() if eid == "urn:ngsi-ld:Device:gw-fleet")
    assert device["deviceState"]["value"] == "safeMode"
    assert device["safeMode"]["value"] is True
    assert sum(((doc["buffer"]["uplinks"]["orion"] or {}).get("pending") or {}).values()) <= 1


def test_restarts_in_a_window() -> None:
    w = RestartWindow(3, 600)
    assert not w.note("a", 1, 0)
    assert not w.note("a", 2, 100)
    assert not w.note("a", 2, 200)
    assert w.note("a", 3, 500)
    assert not w.note("a", 3, 1101)  # the oldest fell out of the window


def test_process_starts_after_crashes_make_a_loop_and_a_clean_stop_does_not(tmp_path: Path) -> None:
    starts = ProcessStarts(tmp_path, restarts=3, within_s=600)
    assert not starts.started(0, pid=10)  # crashed: no clean stop recorded
    assert not starts.started(60, pid=11)
    starts.stopped_cleanly(11)
    assert not starts.started(120, pid=12)  # 10 crashed, 11 stopped cleanly, 12 now: two of three
    assert starts.started(180, pid=13)  # 10, 12 crashed, 13 now: a loop
    assert not ProcessStarts(tmp_path, restarts=3, within_s=600).started(10_000, pid=14)  # long after


def crashed_before(data: Path, at: float) -> None:
    """A previous gateway process started at `at` and never stopped cleanly."""
    data.mkdir(parents=True)
    ProcessStarts(data, 2, 600).started(at, pid=1)


async def test_a_crash_looping_gateway_starts_no_adapter(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    cfg = gateway_config(tmp_path, orion_double.url, {"safe_mode": {"restarts": 2, "within_s": 600}})
    crashed_before(Path(cfg.gateway.data_dir), clock.now - 30)
    gw = Gateway(cfg)
    await gw.start()
    try:
        assert gw.fleet is not None
        doc = await gw.fleet.tick(clock.now)
        assert doc["adapters"] == []
        assert doc["fleet"]["safe_mode"]["active"] is True
        assert doc["fleet"]["safe_mode"]["stopped_adapters"] == ["gauges"]
        await until(lambda: gw.loops[0].delivered > 0)  # the uplink still drains: the Device entity went out
    finally:
        await gw.stop()


def test_edgegw_status_says_safe_mode_and_lists_alarms() -> None:
    fleet = {
        "safe_mode": {"active": True, "reason": "adapter(s) rs485 restarted 5 times within 600 s: stopped"},
        "alarms": [{"severity": "critical", "kind": "crash_loop", "detail": "safe mode: adapter(s) rs485 …"}],
        "availability": {"day": "2026-07-01", "uptimePercent": 99.9, "deliveringPercent": 99.5},
    }
    assert status_lines(fleet) == [
        "SAFE MODE: adapter(s) rs485 restarted 5 times within 600 s: stopped",
        "alarms: 1 active",
        "  critical crash_loop             safe mode: adapter(s) rs485 …",
        "availability 2026-07-01: up 99.9 %, delivering 99.5 %",
    ]
