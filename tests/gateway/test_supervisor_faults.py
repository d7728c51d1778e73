"""The supervisor under an adapter's own faults: odd diagnostics, a stray CancelledError, a stop that hangs.

Found by review s20 (r1, r3, r6, r9): each one either stopped the whole gateway, stopped an adapter for good
without a line, held the fleet's tick, or told a technician the wrong number of restarts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import types
from typing import Any, ClassVar

import pytest

from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.records import Emit
from gateway.supervisor import AdapterState, Supervisor

CTX = AdapterContext(gateway_id="gw", data_dir="/nonexistent")


class _Config(AdapterConfig):
    pass


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [
        (r.levelname, getattr(r, "component", ""), r.getMessage())
        for r in caplog.records
        if r.levelno >= logging.WARNING
    ]


class OddDiagnostics:
    """diagnostics() returns whatever it was given: a family's bug (a list of lines) or a read-only mapping."""

    config_model: ClassVar[type[AdapterConfig]] = _Config

    def __init__(self, returns: object) -> None:
        self.returns = returns

    async def run(self, emit: Emit) -> None:
        await asyncio.Event().wait()

    def diagnostics(self) -> Any:
        return self.returns


async def test_diagnostics_that_are_not_a_dict_become_an_error_entry_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """r1: a list from one adapter's diagnostics() made Supervisor.status() raise AttributeError, which
    ended `_serve` (and the gateway, after every restart)."""
    sup = Supervisor(lambda r: asyncio.sleep(0))
    lines, proxy = _Config(name="cabinet", type="test"), _Config(name="meters", type="test")
    sup.start(
        [
            (lines, OddDiagnostics(["devices online 3/4"])),
            (proxy, OddDiagnostics(types.MappingProxyType({"malformed": 2, "online": 3}))),
        ]
    )
    try:
        for _ in range(3):  # logged once, not at every status write
            cabinet, meters = sup.status()
    finally:
        await sup.stop()
    assert (cabinet.malformed, cabinet.diagnostics) == (0, {"error": "diagnostics() returned list, not a dict"})
    assert type(meters.diagnostics) is dict  # the status document is a plain dict, whatever mapping it came as
    assert (meters.malformed, meters.diagnostics) == (2, {"malformed": 2, "online": 3})
    assert _warnings(caplog) == [
        ("WARNING", "cabinet", "adapter diagnostics() returned list, not a dict; its status shows that error instead")
    ]


class StrayCancel:
    """A library lets a CancelledError of its own inner future escape; the adapter's task was never cancelled."""

    config_model: ClassVar[type[AdapterConfig]] = _Config

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, emit: Emit) -> None:
        self.runs += 1
        if self.runs > 2:
            await asyncio.Event().wait()
        inner = asyncio.get_running_loop().create_future()
        inner.cancel()  # a connection's waiter cancelled when the connection closed
        await inner


async def test_a_stray_cancelled_error_from_an_adapter_is_a_failure_and_it_is_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """r6: the supervisor took the adapter's own CancelledError for a stop: state stopped, no line, no restart."""
    sup = Supervisor(lambda r: asyncio.sleep(0), backoff_initial_s=0.01, backoff_max_s=0.02)
    cfg, adapter = _Config(name="mqtt-in", type="test"), StrayCancel()
    sup.start([(cfg, adapter)])
    try:
        await _wait_for(lambda: adapter.runs == 3)
        [status] = sup.status()
        assert (status.state, status.restarts, status.last_error) == (
            AdapterState.RUNNING,
            2,
            "CancelledError: raised inside the adapter, not a stop",
        )
    finally:
        await sup.stop(timeout_s=1.0)
    assert [s.state for s in sup.status()] == [AdapterState.STOPPED]  # a real stop still stops it
    assert _warnings(caplog) == [
        (
            "WARNING",
            "mqtt-in",
            "adapter failed: CancelledError: raised inside the adapter, not a stop; restarting in 0.0 s",
        )
    ]


class Forever:
    config_model: ClassVar[type[AdapterConfig]] = _Config

    async def run(self, emit: Emit) -> None:
        await asyncio.Event().wait()


async def test_a_real_cancellation_still_stops_the_adapter_for_good() -> None:
    sup = Supervisor(lambda r: asyncio.sleep(0), backoff_initial_s=0.01)
    cfg = _Config(name="steady", type="test")
    sup.start([(cfg, Forever())])
    await asyncio.sleep(0.02)
    assert await sup.stop_one("steady") is True
    await asyncio.sleep(0.05)  # a restart would have happened by now
    [status] = sup.status()
    assert (status.state, status.restarts, status.last_error) == (AdapterState.STOPPED, 0, "")


class ClosesWithItsOwnError:
    """Its client library turns the task's cancellation into its own error (a "connection closed")."""

    config_model: ClassVar[type[AdapterConfig]] = _Config
    runs = 0

    async def run(self, emit: Emit) -> None:
        type(self).runs += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if type(self).runs > 1:
                raise  # a restart after a stop (the defect) still ends at the test's teardown
            raise ConnectionError("client closed") from None


async def test_a_stop_an_adapter_turns_into_its_own_error_is_still_a_stop() -> None:
    """A stop is the task's cancellation, whatever the adapter raises for it: restarted, it ran on after stop_one
    had called it stopped (a reviewer's case)."""
    sup = Supervisor(lambda r: asyncio.sleep(0), backoff_initial_s=0.01, backoff_max_s=0.01)
    sup.start([(_Config(name="client", type="test"), ClosesWithItsOwnError())])
    await asyncio.sleep(0.02)
    assert await sup.stop_one("client", timeout_s=0.5) is True
    await asyncio.sleep(0.1)  # a restart would have happened by now
    [status] = sup.status()
    assert (status.state, status.restarts, ClosesWithItsOwnError.runs) == (AdapterState.STOPPED, 0, 1)


class HungClose:
    """Its close, in a thread, hangs (a USB-serial adapter gone deaf): cancellation cannot reach it."""

    config_model: ClassVar[type[AdapterConfig]] = _Config

    def __init__(self, released: threading.Event) -> None:
        self.released = released

    async def run(self, emit: Emit) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(self.released.wait, 30)


async def test_stop_one_is_bounded_like_stop(caplog: pytest.LogCaptureFixture) -> None:
    """r3: safe mode's stop_one waited with no bound for an adapter whose close hung, and the fleet's tick with it."""
    released = threading.Event()
    sup = Supervisor(lambda r: asyncio.sleep(0))
    pad, steady = _Config(name="pad", type="test"), _Config(name="steady", type="test")
    sup.start([(pad, HungClose(released)), (steady, Forever())])
    await asyncio.sleep(0.05)
    began = asyncio.get_running_loop().time()
    try:
        assert await sup.stop_one("pad", timeout_s=0.3) is True
        took = asyncio.get_running_loop().time() - began
        states = {s.name: s.state for s in sup.status()}
    finally:
        released.set()
        await sup.stop(timeout_s=1.0)
    assert 0.3 <= took < 1.0
    assert states == {"pad": AdapterState.STOPPED, "steady": AdapterState.RUNNING}
    assert _warnings(caplog) == [
        (
            "WARNING",
            "pad",
            "adapter did not stop within 0.3 s of being told to; left behind, and what it emits once "
            "the buffer is closed is refused",
        )
    ]


async def test_stop_one_has_a_default_bound() -> None:
    """The fleet's safe mode calls stop_one(name) without a limit of its own."""
    released = threading.Event()
    sup = Supervisor(lambda r: asyncio.sleep(0))
    sup.start([(_Config(name="pad", type="test"), HungClose(released))])
    await asyncio.sleep(0.05)
    try:
        # within a fleet tick and systemd's stop, not the 30 s of the hung close
        async with asyncio.timeout(5.0):
            assert await sup.stop_one("pad") is True
    finally:
        released.set()
        await sup.stop(timeout_s=1.0)
    assert [s.state for s in sup.status()] == [AdapterState.STOPPED]


class TwoSpells:
    """Fails 3 times, runs stable, fails 4 times, runs stable: two failing spells."""

    config_model: ClassVar[type[AdapterConfig]] = _Config

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, emit: Emit) -> None:
        self.runs += 1
        if self.runs in (1, 2, 3, 5, 6, 7):
            raise ConnectionError("port /dev/ttyUSB0 busy")
        await asyncio.sleep(0.3)  # past stable_after_s: the spell is over
        if self.runs == 4:
            raise ConnectionError("port /dev/ttyUSB0 busy")
        await asyncio.Event().wait()


async def test_the_recovery_line_counts_the_restarts_of_its_own_spell(caplog: pytest.LogCaptureFixture) -> None:
    """r9: the second spell's end said "after 7 restarts" (the total since the start), not its own 4."""
    caplog.set_level(logging.INFO, logger="gateway.supervisor")
    sup = Supervisor(lambda r: asyncio.sleep(0), backoff_initial_s=0.01, backoff_max_s=0.02, stable_after_s=0.2)
    adapter = TwoSpells()
    sup.start([(_Config(name="cabinet", type="test"), adapter)])
    try:
        await _wait_for(lambda: sum("running again" in r.getMessage() for r in caplog.records) == 2)
        [status] = sup.status()
    finally:
        await sup.stop()
    assert status.restarts == 7  # the status keeps the total since the start
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name == "gateway.supervisor"] == [
        "adapter running again after 3 restarts",
        "adapter running again after 4 restarts",
    ]
