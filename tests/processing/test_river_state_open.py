"""Opening the rivers' state store at the gateway's start never stalls the event loop, and loses no state.

The store (river_state.db) used to be opened, checked and read on the event loop while the stage was built:
every adapter and uplink stood still until SQLite was done, which on a slow SD card, a big file or a file
another process holds takes seconds. Here another real process holds the file's lock for a second (what
a slow medium does to the open, made exact), and a probe task on the loop records the longest gap between
its 1 ms sleeps while the store opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.processing.api import ProcessorContext
from gateway.processing.registry import build_stage, parse_processing
from gateway.processing.river import STATE_FILE, RiverStateStore
from gateway.processing.stage import Stage
from gateway.records import Attribute, Reading, Source, TimeSource
from tests.support.orion_double import OrionDouble

T0 = datetime(2024, 7, 1, tzinfo=UTC)
GAUGES = 2_000  # a prefecture's gauges on one box is far fewer; the store keeps up to STATE_LIMIT
HOLD_S = 1.0
MAX_GAP_S = 0.25  # a loop that waits for the disk stalls for the whole hold

# Another process holds river_state.db (exclusive locking, as a sqlite3 shell in a transaction does) for HOLD_S:
# every open of the file waits for it on SQLite's busy timeout.
_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"
    store = RiverStateStore.shared(tmp_path / "data", create=False)
    if store is not None:
        store.close()


def river_stage(data_dir: Path) -> Stage:
    errors: list[str] = []
    entry = {"type": "river", "match": {"attribute": "waterLevel"}, "thresholds": [{"level": 2.5}, {"level": 3.5}]}
    configs = parse_processing([entry], errors)
    assert errors == []
    stage = build_stage(configs, ProcessorContext(gateway_id="gw", data_dir=str(data_dir)))
    assert stage is not None
    return stage


def gauge(n: int) -> str:
    return f"urn:ngsi-ld:WaterObserved:g{n:05d}"


def reading(entity_id: str, level: float, minute: int) -> Reading:
    return Reading(
        entity_id=entity_id,
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=level, type="Number", unit="MTR")},
        observed_at=T0 + timedelta(minutes=minute),
        time_source=TimeSource.DEVICE,
        source=Source(adapter="portal"),
    )


def alerts(out: list[Reading]) -> list[tuple[str, float]]:
    return [(a.attributes["direction"].value, a.attributes["thresholdLevel"].value) for a in out[1:]]


def previous_run(data_dir: Path) -> None:
    """GAUGES gauges' states kept by an earlier run of the gateway, which then ended (its exit hook closed the store)."""
    stage = river_stage(data_dir)
    for n in range(GAUGES):
        stage.process(reading(gauge(n), 2.0 if n % 2 else 3.0, 0), T0)  # normal, or past the first threshold
    store = RiverStateStore.shared(data_dir)
    assert store is not None and store.flush(10.0)
    store.close()
    with contextlib.closing(sqlite3.connect(data_dir / STATE_FILE)) as db:
        assert db.execute("SELECT count(*) FROM gauges").fetchone() == (GAUGES,)


@contextlib.contextmanager
def held(data_dir: Path, seconds: float) -> Iterator[None]:
    """The store's file held by another process for `seconds` from the start of the `with`."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(data_dir / STATE_FILE), str(seconds)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            yield
        finally:
            if holder.wait(30) != 0:
                raise AssertionError(f"the process holding {STATE_FILE} failed: exit {holder.returncode}")


class LoopProbe:
    """The longest gap between the 1 ms sleeps of a task on the loop: how long anything else there had to wait."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last)
            last = now

    async def __aenter__(self) -> LoopProbe:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.01)  # running before what it measures starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def test_building_the_stage_on_the_loop_never_stalls_it_while_the_store_opens(data_dir: Path) -> None:
    previous_run(data_dir)

    async def start() -> tuple[float, float, Stage]:
        async with LoopProbe() as probe:
            began = time.perf_counter()
            stage = river_stage(data_dir)  # as Gateway.start builds it
            store = await asyncio.to_thread(RiverStateStore.shared, data_dir, create=False)  # once open
            assert store is not None and store.get((gauge(0), "waterLevel")) == "水防団待機水位"
            opened = time.perf_counter() - began
        return opened, probe.worst, stage

    with held(data_dir, HOLD_S):
        opened, worst, stage = asyncio.run(start())
    assert opened >= HOLD_S * 0.8  # the open did wait for the disk: what the probe measures is real
    assert worst < MAX_GAP_S, f"the event loop stood still for {worst:.3f} s while the store opened ({opened:.3f} s)"
    # every gauge's kept state is there: g00000 was past the first threshold (3.0), so a fall to 2.0 crosses it
    assert alerts(stage.process(reading(gauge(0), 2.0, 10), T0)) == [("down", 2.5)]
    assert alerts(stage.process(reading(gauge(1), 2.0, 10), T0)) == []


def test_a_sample_that_comes_while_the_store_opens_still_gets_the_kept_state(data_dir: Path) -> None:
    """Never silently: a gauge's first sample after the restart is judged from its kept state, however slow the open."""
    previous_run(data_dir)

    async def start() -> list[tuple[str, float]]:
        stage = river_stage(data_dir)
        return alerts(stage.process(reading(gauge(0), 2.0, 10), T0))

    with held(data_dir, 0.3):
        assert asyncio.run(start()) == [("down", 2.5)]


def test_a_store_that_cannot_be_opened_at_the_start_is_said_as_before_and_the_rivers_run_on(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir.mkdir(mode=0o700)
    with sqlite3.connect(data_dir / STATE_FILE) as db:
        db.execute("CREATE TABLE gauges (x)")
        db.execute("PRAGMA user_version = 99")

    async def start() -> list[list[tuple[str, float]]]:
        stage = river_stage(data_dir)
        out = [alerts(stage.process(reading(gauge(0), level, i), T0)) for i, level in enumerate((2.0, 3.6))]
        assert stage.diagnostics()[0]["counters"] == {"alerts": 2, "skipped": 0, "state_errors": 1}
        return out

    with caplog.at_level(logging.ERROR, logger="gateway.processing.river"):
        assert asyncio.run(start()) == [[], [("up", 2.5), ("up", 3.5)]]
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.processing.river"] == [
        f"{data_dir / STATE_FILE}: schema version newer than this edgegw knows (1), got version 99; upgrade edgegw; "
        "flood alerts go on without it: after a restart, the first sample of each gauge sets its state silently"
    ]
    assert RiverStateStore.shared(data_dir, create=False) is None


async def test_the_gateways_start_waits_for_the_store_in_a_thread_and_its_first_reading_waits_for_nothing(
    data_dir: Path, orion_double: OrionDouble
) -> None:
    # Gateway.start builds the stage in a worker thread: the store is open (its file read) when the adapters
    # start, so a gauge's first sample right after the start is judged at once, on a loop that never stood still
    previous_run(data_dir)
    river = {"type": "river", "match": {"attribute": "waterLevel"}, "thresholds": [{"level": 2.5}, {"level": 3.5}]}
    config = parse_config(
        {
            "gateway": {"id": "gw", "data_dir": str(data_dir)},
            "processing": [river],
            "uplinks": [{"name": "orion", "type": "orion", "url": orion_double.url}],
        }
    )
    with held(data_dir, HOLD_S):
        async with LoopProbe() as probe:
            began = time.perf_counter()
            gw = Gateway(config)
            await gw.start()
            try:
                started = time.perf_counter() - began
                assert gw.stage is not None
                first = time.perf_counter()
                out = gw.stage.process(reading(gauge(0), 2.0, 10), T0)
                judged = time.perf_counter() - first
            finally:
                await gw.stop()
    assert started >= HOLD_S * 0.8  # the start did wait for the store
    assert alerts(out) == [("down", 2.5)]  # from the kept state
    assert judged < MAX_GAP_S, f"the first reading waited {judged:.3f} s for the store, on the event loop"
    assert probe.worst < MAX_GAP_S, f"the event loop stood still for {probe.worst:.3f} s during the start"
