"""A processor that refuses an entity's readings (`ReadingError`) is said once per episode at WARNING, naming the
processor, the entity, what is wrong and the fix, and once at INFO when they are processed again; a Modbus river
that refuses its unpublished distance still removes it, so the internal `edgegwRiverInput` never leaves the stage."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ReadingError
from gateway.processing.api import ProcessorContext, ProcessorMatch
from gateway.processing.registry import build_stage, parse_processing
from gateway.processing.stage import EPISODE_QUIET, REASONS_PER_EPISODE, Entry, Stage
from gateway.profiles import load_profile
from gateway.records import Attribute, Reading, Source, utc_now
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.adapters.modbus.running import make_adapter, modbus_config, until

T0 = datetime(2026, 7, 4, tzinfo=UTC)
G1 = "urn:ngsi-ld:WaterObserved:g1"
G2 = "urn:ngsi-ld:WaterObserved:g2"
STAGE_LOG = "gateway.processing.stage"
CONTEXT = ProcessorContext(gateway_id="gw1", data_dir="")  # no data dir: the river keeps no state on disk here
RIVER = [
    {
        "type": "river",
        "match": {"adapter": "portal", "entity_type": "WaterObserved", "attribute": "waterLevel"},
        "thresholds": [{"level": 1.5}, {"level": 2.0}],
    }
]
UNIT_FIX = (
    "river waterLevel: waterLevel must be in MTR, CMT or MMT, got unit 'FOT'; convert it first with a `unit` processor"
)


def cm_to_m_stage() -> Stage:
    """A `unit` processor on `level`, CMT to MTR: it refuses anything but a number."""
    errors: list[str] = []
    configs = parse_processing(
        [{"type": "unit", "match": {"attribute": "level"}, "from_unit": "CMT", "to_unit": "MTR"}], errors
    )
    stage = build_stage(configs, CONTEXT)
    assert stage is not None and errors == []
    return stage


def river_stage() -> Stage:
    errors: list[str] = []
    configs = parse_processing(RIVER, errors)
    assert errors == []
    stage = build_stage(configs, CONTEXT)
    assert stage is not None
    return stage


def gauge(entity_id: str, value: float, unit: str, at: int) -> Reading:
    return Reading(
        entity_id=entity_id,
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=value, type="Number", unit=unit)},
        observed_at=T0 + timedelta(minutes=at),
        source=Source(adapter="portal"),
    )


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == STAGE_LOG and r.levelno == level]


def test_a_river_refusing_every_reading_warns_once_and_says_when_it_processes_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = river_stage()
    caplog.set_level(logging.DEBUG, logger=STAGE_LOG)
    # a gauge reporting in feet: the thresholds are metres, so no state and no flood alert can come of it
    for minute in range(5):
        [out] = stage.process(gauge(G1, 9.0, "FOT", minute), T0)
        assert "levelState" not in out.attributes
    assert lines(caplog, logging.WARNING) == [
        f"processing[0] (river): readings of {G1} left unprocessed, {UNIT_FIX}; they go on without this step"
        " (counted under errors) until that is fixed"
    ]
    assert stage.diagnostics()[0]["counters"]["errors"] == 5
    caplog.clear()

    [out] = stage.process(gauge(G1, 1.0, "MTR", 5), T0)  # fixed at the gauge: processed again
    assert out.attributes["levelState"].value == "normal"
    assert lines(caplog, logging.INFO) == []  # the episode ends after an hour of processed readings
    [out, alert] = stage.process(gauge(G1, 1.6, "MTR", 6), T0 + EPISODE_QUIET)  # and the flood alerts are back
    assert out.attributes["levelState"].value == "水防団待機水位" and alert.entity_type == "Alert"
    assert lines(caplog, logging.INFO) == [
        f"processing[0] (river): readings of {G1} processed again (none left unprocessed for 1 h), after 5 left"
        " unprocessed"
    ]
    assert lines(caplog, logging.WARNING) == []
    caplog.clear()

    stage.process(gauge(G1, 9.0, "FOT", 7), T0 + EPISODE_QUIET)  # a new episode is said again
    assert len(lines(caplog, logging.WARNING)) == 1
    assert stage.diagnostics()[0]["counters"]["errors"] == 6


def test_each_entity_and_each_reason_is_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    stage = river_stage()
    caplog.set_level(logging.DEBUG, logger=STAGE_LOG)
    for minute in range(3):
        stage.process(gauge(G1, 9.0, "FOT", minute), T0)
        stage.process(gauge(G2, 9.0, "INH", minute), T0)
        stage.process(gauge(G1, 9.0, "FOT", minute), T0)
    warned = lines(caplog, logging.WARNING)
    assert [(G1 in w, "'FOT'" in w, G2 in w, "'INH'" in w) for w in warned] == [
        (True, True, False, False),
        (False, False, True, True),
    ]
    # another unit is the same reason, another value of it: no news within the episode
    stage.process(gauge(G1, 9.0, "FTK", 4), T0)
    assert len(lines(caplog, logging.WARNING)) == 2
    # not a number the river uses: skipped, not refused
    stage.process(gauge(G1, float("inf"), "MTR", 5), T0 + EPISODE_QUIET)
    assert lines(caplog, logging.INFO) == [
        f"processing[0] (river): readings of {G1} processed again (none left unprocessed for 1 h), after 7 left"
        " unprocessed"
    ]


def test_the_warning_masks_personal_data_in_what_was_refused(caplog: pytest.LogCaptureFixture) -> None:
    stage = cm_to_m_stage()
    caplog.set_level(logging.DEBUG, logger=STAGE_LOG)
    mac = "3C:22:FB:12:34:56"
    reading = Reading(
        entity_id=f"urn:ngsi-ld:Device:{mac}",
        entity_type="Device",
        attributes={"level": Attribute(value="taro@example.jp", type="Text")},
        observed_at=T0,
        source=Source(adapter="portal"),
    )
    for _ in range(2):
        [out] = stage.process(reading, T0)
        assert out is reading
    [warned] = lines(caplog, logging.WARNING)
    [repeated] = lines(caplog, logging.DEBUG)
    for line in (warned, repeated):
        assert "3C:22:FB:***" in line and "***@example.jp" in line
        assert mac not in line and "taro" not in line


# --- a Modbus gauge computing its level from an unpublished distance ---------------------------------------

# A radar gauge whose distance is a float64 the profile does not publish: the river computes the level from
# it and removes it. A distance that overflows the stage (-1e308 m under a gauge mounted at 1e308 m) is
# refused by the river; what the reading then carries must still not include the internal distance.
PROFILE = """\
vendor = "Test"
model = "radar"
description = "a radar gauge with an unpublished float64 distance"
firmware_versions = []
source = "test profile"
entity_type = "WaterObserved"
controlled_property = ["waterLevel"]
poll_interval = 60

[interface]
transport = "tcp"
unit_id = 1
timeout = 0.5

[[points]]
name = "gap"
function_code = 3
address = 0
data_type = "float64"
unit = "MTR"

[[points]]
name = "temperature"
function_code = 3
address = 4
data_type = "int16"
unit = "CEL"
attribute = "temperature"
"""


async def test_a_refused_modbus_distance_never_leaves_the_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    profiles = tmp_path / "profiles"
    (profiles / "test").mkdir(parents=True)
    (profiles / "test" / "radar.toml").write_text(PROFILE)
    profile = load_profile("test/radar", [profiles])
    peer, port = await start_tcp_peer([image_from_values(1, profile, {"gap": -1e308, "temperature": 21})])
    device: dict[str, Any] = {
        "name": "radar",
        "bus": "gw",
        "profile": "test/radar",
        "unit_id": 1,
        "poll_interval": 0.1,
        "timeout": 0.2,
        "river": {"point": "gap", "thresholds": [{"level": 2.0}], "stage": {"mounting_height_m": 1e308}},
    }
    config = modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], [device], profiles_dir=[str(profiles)])
    adapter = make_adapter(config, tmp_path)
    stage = build_stage([], CONTEXT, [("cabinet", adapter)])
    assert stage is not None
    caplog.set_level(logging.INFO, logger=STAGE_LOG)
    readings: list[Reading] = []

    async def emit(reading: Reading) -> None:
        readings.extend(stage.process(reading, utc_now()))

    def station() -> list[Reading]:
        return [r for r in readings if r.entity_type == "WaterObserved" and "temperature" in r.attributes]

    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: len(station()) >= 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await peer.stop()
    assert [sorted(r.attributes) for r in station()][:3] == [["dateObserved", "temperature"]] * 3
    assert not [r.entity_id for r in readings if any(n.startswith("edgegw") for n in r.attributes)]
    [warned] = lines(caplog, logging.WARNING)
    assert warned.startswith("cabinet: radar gap (river): readings of urn:ngsi-ld:WaterObserved:")
    assert "river level: must be a finite number, got inf; check its quality first" in warned


class _Drifting:
    """Refuses every reading with a message whose number is not in a `got` part: a different text every time."""

    def process(self, reading: Reading, now: datetime) -> list[Reading]:
        raise ReadingError(f"drift: the level moved {reading.attributes['waterLevel'].value} m in one step")


def test_a_reason_that_changes_with_every_reading_is_not_a_warning_per_reading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=STAGE_LOG)
    stage = Stage([Entry(name="drift", match=ProcessorMatch(attribute="waterLevel"), processor=_Drifting())])  # type: ignore[arg-type]
    for i in range(20):
        stage.process(gauge(G1, 1.0 + i, "MTR", i), T0 + timedelta(minutes=i))
    assert len(lines(caplog, logging.WARNING)) == REASONS_PER_EPISODE
    assert len(lines(caplog, logging.DEBUG)) == 20 - REASONS_PER_EPISODE
    assert stage.errors == [20]


def test_a_refusal_every_other_reading_is_one_warning_not_one_per_reading(caplog: pytest.LogCaptureFixture) -> None:
    """Regression of review 3: an episode ended at the first reading processed, so a source writing '欠測' every
    other reading, refused by a unit processor, gave a WARNING and an INFO per pair: 8,640 a day at 10 s."""
    stage = cm_to_m_stage()
    caplog.set_level(logging.INFO, logger=STAGE_LOG)
    for i in range(360):  # an hour at 10 s
        value: float | str = "欠測" if i % 2 else 123.0
        reading = Reading(
            entity_id=G1,
            entity_type="WaterObserved",
            attributes={"level": Attribute(value=value, type="Number" if i % 2 == 0 else "Text", unit="CMT")},
            observed_at=T0 + timedelta(seconds=10 * i),
            source=Source(adapter="portal"),
        )
        stage.process(reading, T0 + timedelta(seconds=10 * i))
    assert len(lines(caplog, logging.WARNING)) == 1
    assert lines(caplog, logging.INFO) == []
    assert stage.diagnostics()[0]["counters"]["errors"] == 180
