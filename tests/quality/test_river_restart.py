"""A gauge's threshold state outlives the gateway: a crossing during a restart is alerted at the first sample
after it, crossings of one threshold alternate up/down across restarts, and keeping the state costs no write
per reading and never holds up the event loop."""

from __future__ import annotations

import logging
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.processing.api import ProcessorContext
from gateway.processing.registry import build_stage, parse_processing
from gateway.processing.river import STATE_FILE, RiverStateStore
from gateway.processing.stage import Stage
from gateway.records import Attribute, Reading, Source, TimeSource

T0 = datetime(2024, 7, 1, tzinfo=UTC)
GAUGE = "urn:ngsi-ld:WaterObserved:kuma"
THRESHOLDS = [2.5, 3.5, 4.3, 4.8]


def river_stage(data_dir: Path | str, thresholds: list[float] = THRESHOLDS, **extra: Any) -> Stage:
    errors: list[str] = []
    entry = {"type": "river", "match": {"attribute": "waterLevel"}, "thresholds": [{"level": t} for t in thresholds]}
    configs = parse_processing([{**entry, **extra}], errors)
    assert errors == []
    stage = build_stage(configs, ProcessorContext(gateway_id="gw", data_dir=str(data_dir)))
    assert stage is not None
    return stage


def restart(data_dir: Path) -> None:
    """What the end of the gateway's process does to the store (its exit hook), so the next stage reads the file."""
    store = RiverStateStore.shared(data_dir)
    assert store is not None
    store.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"
    store = RiverStateStore.shared(tmp_path / "data", create=False)
    if store is not None:
        store.close()


def reading(level: float, minute: int, entity_id: str = GAUGE) -> Reading:
    return Reading(
        entity_id=entity_id,
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=level, type="Number", unit="MTR")},
        observed_at=T0 + timedelta(minutes=minute),
        time_source=TimeSource.DEVICE,
        source=Source(adapter="portal"),
    )


def feed(stage: Stage, levels: list[float], start: int = 0) -> list[list[tuple[str, float]]]:
    """Per sample, its Alerts as (direction, threshold level)."""
    out = []
    for i, level in enumerate(levels, start=start):
        got = stage.process(reading(level, i), T0)
        out.append([(a.attributes["direction"].value, a.attributes["thresholdLevel"].value) for a in got[1:]])
    return out


def rows(data_dir: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / STATE_FILE) as db:
        return db.execute("SELECT entity_id, attribute, state, state_index FROM gauges").fetchall()


def test_a_crossing_during_a_restart_is_alerted_at_the_first_sample_after_it(data_dir: Path) -> None:
    assert feed(river_stage(data_dir), [2.0, 2.3]) == [[], []]  # normal when the gateway stops
    restart(data_dir)
    after = river_stage(data_dir)
    assert feed(after, [3.6, 3.7, 3.2], start=10) == [[("up", 2.5), ("up", 3.5)], [], [("down", 3.5)]]


def test_a_fall_during_a_restart_gives_the_down_alerts_the_rise_needs(data_dir: Path) -> None:
    assert feed(river_stage(data_dir), [2.0, 3.6]) == [[], [("up", 2.5), ("up", 3.5)]]
    restart(data_dir)
    assert feed(river_stage(data_dir), [2.0, 2.6], start=10) == [[("down", 3.5), ("down", 2.5)], [("up", 2.5)]]
    restart(data_dir)
    # within the hysteresis of the state kept: no crossing either way
    assert feed(river_stage(data_dir), [2.49], start=20) == [[]]


def test_a_gauge_never_seen_starts_silently_and_its_state_is_kept(data_dir: Path) -> None:
    stage = river_stage(data_dir)
    [gauge] = stage.process(reading(3.6, 0), T0)
    assert gauge.attributes["levelState"].value == "氾濫注意水位"
    store = RiverStateStore.shared(data_dir)
    assert store is not None and store.flush(5.0)
    assert rows(data_dir) == [(GAUGE, "waterLevel", "氾濫注意水位", 2)]
    assert stat.S_IMODE((data_dir / STATE_FILE).stat().st_mode) == 0o600


def test_a_reload_in_the_same_process_sees_the_state_the_old_stage_left(data_dir: Path) -> None:
    feed(river_stage(data_dir), [2.0, 2.3])
    # a reload builds a new stage while the old one's last write may still be on its way
    assert feed(river_stage(data_dir), [3.6], start=10) == [[("up", 2.5), ("up", 3.5)]]


def test_a_state_kept_by_name_and_a_threshold_gone_starts_silently(data_dir: Path) -> None:
    feed(river_stage(data_dir), [2.0, 3.6])  # 氾濫注意水位
    restart(data_dir)
    # the levels moved: the state is the named threshold's, whatever its level now
    assert feed(river_stage(data_dir, [2.0, 3.0, 4.3, 4.8]), [2.9], start=10) == [[("down", 3.0)]]
    restart(data_dir)
    renamed = [{"name": "注意", "level": 2.0}, {"name": "危険", "level": 3.0}]
    errors: list[str] = []
    configs = parse_processing([{"type": "river", "match": {"attribute": "waterLevel"}, "thresholds": renamed}], errors)
    stage = build_stage(configs, ProcessorContext(gateway_id="gw", data_dir=str(data_dir)))
    assert stage is not None
    assert feed(stage, [3.5], start=20) == [[]]  # no threshold of that name any more: as a gauge never seen


def test_the_state_is_written_on_change_only_and_never_by_the_caller(data_dir: Path) -> None:
    stage = river_stage(data_dir)
    feed(stage, [2.0])
    store = RiverStateStore.shared(data_dir)
    assert store is not None and store.flush(5.0)
    written = store.written
    feed(stage, [2.0 + i / 1000 for i in range(40)], start=1)  # 40 readings in one state
    assert store.flush(5.0) and store.written == written
    # another process holds the file's write lock: a crossing is alerted at once all the same
    with sqlite3.connect(data_dir / STATE_FILE, isolation_level=None) as locker:
        locker.execute("BEGIN IMMEDIATE")
        assert feed(stage, [3.6], start=50) == [[("up", 2.5), ("up", 3.5)]]
        assert rows(data_dir) == [(GAUGE, "waterLevel", "normal", 0)]  # not written yet: the lock is held
        locker.execute("COMMIT")
    assert store.flush(15.0)
    assert rows(data_dir) == [(GAUGE, "waterLevel", "氾濫注意水位", 2)] and store.written == written + 1


def test_a_store_from_a_newer_edgegw_is_left_alone_and_the_river_runs_on(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir.mkdir(mode=0o700)
    with sqlite3.connect(data_dir / STATE_FILE) as db:
        db.execute("CREATE TABLE gauges (x)")
        db.execute("PRAGMA user_version = 99")
    with caplog.at_level(logging.ERROR, logger="gateway.processing.river"):
        stage = river_stage(data_dir)
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.processing.river"] == [
        f"{data_dir / STATE_FILE}: schema version newer than this edgegw knows (1), got version 99; upgrade edgegw; "
        "flood alerts go on without it: after a restart, the first sample of each gauge sets its state silently"
    ]
    assert feed(stage, [2.0, 3.6]) == [[], [("up", 2.5), ("up", 3.5)]]
    assert stage.diagnostics()[0]["counters"] == {"alerts": 2, "skipped": 0, "state_errors": 1}
    with sqlite3.connect(data_dir / STATE_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (99,)
    assert RiverStateStore.shared(data_dir, create=False) is None


levels = st.integers(min_value=0, max_value=600).map(lambda cm: cm / 100)


@settings(max_examples=40, deadline=None)
@given(st.lists(levels, min_size=1, max_size=20), st.lists(levels, min_size=1, max_size=20))
def test_a_restart_changes_no_alert(before: list[float], after: list[float]) -> None:
    """The Alerts of a gauge fed `before`, restarted, then fed `after` are those of one never restarted."""
    continuous = river_stage("")  # no data dir: state in memory only, one process throughout
    want = feed(continuous, before) + feed(continuous, after, start=len(before))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        try:
            got = feed(river_stage(data_dir), before)
            restart(data_dir)
            got += feed(river_stage(data_dir), after, start=len(before))
        finally:
            store = RiverStateStore.shared(data_dir, create=False)
            if store is not None:
                store.close()
    assert got[len(before) :] == want[len(before) :]
    assert got[: len(before)] == want[: len(before)]
    # crossings of one threshold alternate, starting with the side the first sample was on
    last: dict[float, str] = {}
    first = before[0]
    for crossings in got:
        for direction, level in crossings:
            assert direction != last.get(level, "down" if first < level else "up")
            last[level] = direction
