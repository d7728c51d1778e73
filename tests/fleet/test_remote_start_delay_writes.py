"""While an uplink waits its start delay, the bundle's moved deadline is written once, and judged in memory.

The finding (a reviewer's reading, reproduced): the window counted from the delay's end was
`now + window`, which grows at every 10 s tick, and every tick wrote remote_config.json again
(fsync and rename): about 360 writes per hour of `start_delay_max_s`, on an SD card. The file now
gets the bound (the apply + the longest delay + the window, the time the log line names) once; the
window from the delay's end as the ticks saw it is kept in memory, so a broken bundle is still
rolled back one window after the delay ended, not at the bound.
"""

from __future__ import annotations

import asyncio
import random
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import delivery
from gateway.app import Runtime
from gateway.fleet import remote
from gateway.fleet.service import FleetService
from tests.fleet.conftest import Clock, until
from tests.fleet.test_remote_config import bundle, config_text, runtime_on, settled, steps_of
from tests.fleet.test_remote_start_delay import paced, uplink_states
from tests.support.orion_double import OrionDouble
from tests.support.ports import free_port

WINDOW = 60.0  # health_window_s of paced()
DELAY_MAX = 3600.0  # start_delay_max_s of paced()


def seeded(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """Every delivery loop's randomness seeded: its first draw is the backlog's start delay."""
    monkeypatch.setattr(delivery, "random", types.SimpleNamespace(Random=lambda: random.Random(seed)))


def count_saves(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The pending bundle as each write of remote_config.json left it (the real write still happens)."""
    saved: list[dict[str, Any]] = []
    save = remote.RemoteState.save

    def counted(self: remote.RemoteState) -> None:
        saved.append(dict(self.doc.get("pending") or {}))
        save(self)

    monkeypatch.setattr(remote.RemoteState, "save", counted)
    return saved


def fleet_of(runtime: Runtime) -> FleetService:
    fleet = runtime.gateway.fleet
    assert fleet is not None
    return fleet


async def reloaded_and_waiting(runtime: Runtime, clock: Clock, sent: str) -> tuple[FleetService, float]:
    """Bundle 1 (`sent`) applied and reloaded, its uplink waiting its backlog's start delay; the new fleet
    service and the apply's time."""
    fleet = fleet_of(runtime)
    await fleet.tick(clock())  # the Device entity waits: the uplink is down
    assert (await fleet.offer(bundle(sent, 1), via="push"))["applied"] is True
    data_dir = fleet.data_dir
    await until(lambda: (remote.RemoteState(data_dir).pending or {}).get("reloaded") is True)
    fleet = fleet_of(runtime)  # the bundle's generation
    await fleet.tick(clock())  # another Device entity: two rows waiting, a catch-up batch
    await until_states(fleet.status, lambda states: states == ["waiting"])
    pending = remote.RemoteState(fleet.data_dir).pending
    assert pending is not None
    return fleet, float(pending["applied_at"])


async def until_states(status: Callable[[], Awaitable[dict[str, Any]]], check: Callable[[list[str]], bool]) -> None:
    for _ in range(500):
        if check(uplink_states(await status())):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"uplink states {uplink_states(await status())} not reached")


async def test_ticks_while_an_uplink_waits_its_start_delay_write_the_state_file_once(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded(monkeypatch, 0)  # a start delay of 3039 s: the uplink waits through every tick below
    path = tmp_path / "gateway.toml"
    broken = paced(config_text(tmp_path, f"http://127.0.0.1:{free_port()}"))
    fixed = paced(config_text(tmp_path, orion_double.url))
    saved = count_saves(monkeypatch)
    async with runtime_on(path, broken) as runtime:
        fleet, applied_at = await reloaded_and_waiting(runtime, clock, fixed)
        clock.now = applied_at + WINDOW + 1  # past the window: the uplink still waits
        for _ in range(12):  # two minutes of ticks
            await fleet.tick(clock())
            clock.advance(10)
        # the window moved for the start delay ("window" noted) in one write: the bound
        moves = [p["deadline"] for p in saved if "window" in p]
        assert moves == [pytest.approx(applied_at + DELAY_MAX + WINDOW, abs=1e-6)]
        pending = remote.RemoteState(fleet.data_dir).pending
        assert pending is not None and pending.get("rolling_back") is None
        assert pending["deadline"] == pytest.approx(applied_at + DELAY_MAX + WINDOW, abs=1e-6)
        assert uplink_states(await fleet.status()) == ["waiting"]
        assert [s for s, _, _ in steps_of(tmp_path)] == ["verified", "applied"]


async def test_once_the_delay_is_over_the_window_counts_from_its_end_not_from_the_written_bound(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded(monkeypatch, 2485)  # a start delay of 2.7 s (of up to 3600), then the bundle's uplink fails
    path = tmp_path / "gateway.toml"
    broken = paced(config_text(tmp_path, f"http://127.0.0.1:{free_port()}"))
    also_broken = paced(config_text(tmp_path, f"http://127.0.0.1:{free_port()}"))
    async with runtime_on(path, broken) as runtime:
        fleet, applied_at = await reloaded_and_waiting(runtime, clock, also_broken)
        for at in (applied_at + WINDOW + 1, applied_at + WINDOW + 11):  # held: the window from now on
            await fleet.tick(at)
        pending = remote.RemoteState(fleet.data_dir).pending
        assert pending is not None and pending["deadline"] == pytest.approx(applied_at + DELAY_MAX + WINDOW, abs=1e-6)
        # the delay ends (real time): the uplink tries, fails, and delivers nothing
        await until_states(fleet.status, lambda states: states != ["waiting"])
        moved = applied_at + WINDOW + 11 + WINDOW  # the last tick that saw it waiting, and one window
        await fleet.tick(moved - 1)
        assert [s for s, _, _ in steps_of(tmp_path)] == ["verified", "applied"]
        await fleet.tick(moved)
        await until(lambda: settled(1))
        assert [s for s, _, _ in steps_of(tmp_path)][-2:] == ["rolling_back", "rolled_back"]
