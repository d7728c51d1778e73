"""The supervisor restarts a failing adapter with backoff and keeps the others running."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.records import Attribute, Emit, Reading, Source, emit_many
from gateway.supervisor import AdapterState, Supervisor

CTX = AdapterContext(gateway_id="gw", data_dir="/nonexistent")


class _Config(AdapterConfig):
    fail_times: int = 0
    readings: int = 0


class FlakyAdapter:
    """Fails `fail_times` times at start, then emits `readings` readings and waits forever."""

    config_model: ClassVar[type[AdapterConfig]] = _Config
    starts: ClassVar[dict[str, int]] = {}

    def __init__(self, config: _Config, context: AdapterContext) -> None:
        self.config = config

    async def run(self, emit: Emit) -> None:
        n = self.starts[self.config.name] = self.starts.get(self.config.name, 0) + 1
        if n <= self.config.fail_times:
            raise ConnectionError(f"port /dev/ttyUSB0 busy (attempt {n})")
        for i in range(self.config.readings):
            await emit(
                Reading(
                    entity_id=f"{self.config.name}-e",
                    entity_type="T",
                    attributes={"n": Attribute(value=i)},
                    observed_at=datetime.now(UTC),
                    source=Source(adapter=self.config.name),
                )
            )
        await asyncio.Event().wait()


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_failing_adapter_is_restarted_with_backoff_and_others_keep_running() -> None:
    got: list[Reading] = []

    def emit(r: Reading) -> asyncio.Future[None]:
        got.append(r)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    sup = Supervisor(emit, backoff_initial_s=0.01, backoff_max_s=0.05)
    flaky = _Config(name="flaky", type="test", fail_times=3, readings=2)
    steady = _Config(name="steady", type="test", readings=5)
    sup.start([(flaky, FlakyAdapter(flaky, CTX)), (steady, FlakyAdapter(steady, CTX))])
    await _wait_for(lambda: len(got) == 7)
    by_name = {s.name: s for s in sup.status()}
    assert by_name["flaky"].restarts == 3
    assert by_name["flaky"].last_error == "ConnectionError: port /dev/ttyUSB0 busy (attempt 3)"
    assert by_name["flaky"].state is AdapterState.RUNNING
    assert by_name["flaky"].emitted == 2
    assert by_name["steady"].restarts == 0 and by_name["steady"].emitted == 5
    await sup.stop()
    assert {s.state for s in sup.status()} == {AdapterState.STOPPED}


async def test_adapter_waits_out_its_backoff_before_the_next_start() -> None:
    sup = Supervisor(lambda r: asyncio.sleep(0), backoff_initial_s=10.0, backoff_max_s=10.0)
    cfg = _Config(name="slow-retry", type="test", fail_times=100)
    sup.start([(cfg, FlakyAdapter(cfg, CTX))])
    await _wait_for(lambda: sup.status()[0].state is AdapterState.BACKING_OFF)
    await asyncio.sleep(0.2)
    assert FlakyAdapter.starts["slow-retry"] == 1  # a 1..10 s backoff: no second start yet
    await sup.stop()


class BurstAdapter:
    """Hands its readings over as one burst (emit_many), then waits forever."""

    config_model: ClassVar[type[AdapterConfig]] = _Config

    def __init__(self, config: _Config, context: AdapterContext) -> None:
        self.config = config

    async def run(self, emit: Emit) -> None:
        await emit_many(emit, [_reading(self.config.name, i) for i in range(self.config.readings)])
        await asyncio.Event().wait()


def _reading(adapter: str, n: int) -> Reading:
    return Reading(
        entity_id=f"{adapter}-e",
        entity_type="T",
        attributes={"n": Attribute(value=n)},
        observed_at=datetime.now(UTC),
        source=Source(adapter=adapter),
    )


def _done() -> asyncio.Future[None]:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


def _collector(into: list[Reading]) -> Emit:
    def emit(reading: Reading) -> asyncio.Future[None]:
        into.append(reading)
        return _done()

    return emit


async def test_a_burst_reaches_the_gateway_in_one_call_and_is_counted() -> None:
    singles: list[Reading] = []
    bursts: list[list[Reading]] = []

    def many(readings: Sequence[Reading]) -> asyncio.Future[None]:
        bursts.append(list(readings))
        return _done()

    sup = Supervisor(_collector(singles), emit_many=many)
    cfg = _Config(name="burst", type="test", readings=300)
    sup.start([(cfg, BurstAdapter(cfg, CTX))])
    await _wait_for(lambda: bursts)
    assert [len(b) for b in bursts] == [300] and not singles
    assert [r.attributes["n"].value for r in bursts[0]] == list(range(300))
    assert sup.status()[0].emitted == 300
    await sup.stop()


async def test_without_a_burst_path_a_burst_is_emitted_one_reading_at_a_time() -> None:
    singles: list[Reading] = []
    sup = Supervisor(_collector(singles))
    cfg = _Config(name="burst", type="test", readings=5)
    sup.start([(cfg, BurstAdapter(cfg, CTX))])
    await _wait_for(lambda: len(singles) == 5)
    assert [r.attributes["n"].value for r in singles] == list(range(5))
    assert sup.status()[0].emitted == 5
    await sup.stop()


class SealingAdapter(BurstAdapter):
    """Emits a burst, then says it will emit nothing more until that burst is committed."""

    async def run(self, emit: Emit) -> None:
        pending = emit_many(emit, [_reading(self.config.name, i) for i in range(self.config.readings)])
        flush = getattr(emit, "flush", None)
        assert flush is not None  # the supervisor's emit always has it (gateway.records.EmitFlush)
        flush()
        await pending
        await asyncio.Event().wait()


async def test_an_adapters_flush_reaches_the_gateway_and_is_harmless_without_one() -> None:
    flushes: list[str] = []
    sup = Supervisor(_collector([]), flush=lambda: flushes.append("sealed"))
    cfg = _Config(name="sealing", type="test", readings=3)
    sup.start([(cfg, SealingAdapter(cfg, CTX))])
    await _wait_for(lambda: flushes)
    assert flushes == ["sealed"] and sup.status()[0].emitted == 3
    await sup.stop()
    singles: list[Reading] = []
    bare = Supervisor(_collector(singles))  # a gateway without a buffer to seal: flush does nothing
    bare.start([(cfg, SealingAdapter(cfg, CTX))])
    await _wait_for(lambda: len(singles) == 3)
    assert bare.status()[0].state is AdapterState.RUNNING
    await bare.stop()


class DiagnosedAdapter(FlakyAdapter):
    """Reports diagnostics, or fails to: a broken diagnostics() must not cost the status of the others."""

    broken: ClassVar[set[str]] = set()

    def diagnostics(self) -> dict[str, Any]:
        if self.config.name in self.broken:
            raise KeyError("bus0")
        return {"malformed": {"not_json": 3, "bad_id": 2}, "topics": {"a/b": 5}}


async def test_diagnostics_are_reported_and_their_malformed_total_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervisor(lambda r: asyncio.get_running_loop().create_future())
    DiagnosedAdapter.broken = {"broken"}
    configs = [_Config(name=n, type="test") for n in ("good", "broken", "plain")]
    sup.start(
        [
            (configs[0], DiagnosedAdapter(configs[0], CTX)),
            (configs[1], DiagnosedAdapter(configs[1], CTX)),
            (configs[2], FlakyAdapter(configs[2], CTX)),
        ]
    )
    try:
        for _ in range(2):  # the failure is logged once, not every time the status is written
            good, broken, plain = sup.status()
    finally:
        await sup.stop()
    assert (good.malformed, good.diagnostics) == (5, {"malformed": {"not_json": 3, "bad_id": 2}, "topics": {"a/b": 5}})
    assert (broken.malformed, broken.diagnostics) == (0, {"error": "diagnostics() failed: KeyError: 'bus0'"})
    assert (plain.malformed, plain.diagnostics) == (0, {})
    assert [
        (r.levelname, r.getMessage(), getattr(r, "component", ""))
        for r in caplog.records
        if r.levelno >= logging.WARNING
    ] == [("WARNING", "adapter diagnostics failed: KeyError: 'bus0'", "broken")]


async def test_a_failing_spell_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    class SameError(FlakyAdapter):
        async def run(self, emit: Emit) -> None:
            n = self.starts[self.config.name] = self.starts.get(self.config.name, 0) + 1
            if n <= self.config.fail_times:
                raise ConnectionError("port /dev/ttyUSB0 busy")
            await asyncio.Event().wait()

    caplog.set_level(logging.DEBUG, logger="gateway.supervisor")
    sup = Supervisor(lambda r: asyncio.sleep(0), backoff_initial_s=0.01, backoff_max_s=0.02, stable_after_s=0.1)
    cfg = _Config(name="rs485", type="test", fail_times=4)
    sup.start([(cfg, SameError(cfg, CTX))])
    await _wait_for(lambda: any("running again" in r.getMessage() for r in caplog.records))
    await sup.stop()
    lines = [(r.levelname, r.getMessage().split(";")[0]) for r in caplog.records if r.name == "gateway.supervisor"]
    assert [line for line in lines if line[0] != "DEBUG"] == [
        ("WARNING", "adapter failed: ConnectionError: port /dev/ttyUSB0 busy"),
        ("INFO", "adapter running again after 4 restarts"),
    ]
    assert [line for line in lines if line[0] == "DEBUG"] == [
        ("DEBUG", f"adapter failed again (restart {n}): ConnectionError: port /dev/ttyUSB0 busy") for n in (2, 3, 4)
    ]


class StuckOnCloseAdapter:
    """Its close, in a thread, hangs (a USB-serial adapter gone deaf): cancellation cannot reach it."""

    config_model: ClassVar[type[AdapterConfig]] = _Config

    def __init__(self, config: _Config, context: AdapterContext, released: threading.Event) -> None:
        self.released = released

    async def run(self, emit: Emit) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.to_thread(self.released.wait, 30)


async def test_an_adapter_stuck_on_its_way_out_does_not_hold_the_stop(caplog: pytest.LogCaptureFixture) -> None:
    """Supervisor.stop waited for every adapter with no bound: one close hung in a thread held a SIGTERM or a
    reload forever, and the buffer was never closed after it."""
    released = threading.Event()
    sup = Supervisor(lambda r: asyncio.sleep(0))
    stuck, steady = _Config(name="pad", type="test"), _Config(name="steady", type="test")
    sup.start([(stuck, StuckOnCloseAdapter(stuck, CTX, released)), (steady, FlakyAdapter(steady, CTX))])
    await asyncio.sleep(0.05)
    began = asyncio.get_running_loop().time()
    try:
        await sup.stop(timeout_s=0.3)
        took = asyncio.get_running_loop().time() - began
    finally:
        released.set()
    assert 0.3 <= took < 1.0
    assert {s.state for s in sup.status()} == {AdapterState.STOPPED}
    warned = [(getattr(r, "component", None), r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == [
        (
            "pad",
            "adapter did not stop within 0.3 s of being told to; left behind, and what it emits once the buffer "
            "is closed is refused",
        )
    ]
