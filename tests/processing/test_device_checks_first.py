"""A device's own checks (Modbus `[quality]`, `[river]`) run on its raw points, before the configured renames
and conversions: renaming or converting a gauge's level keeps its quality flags, its state and its Alerts, and
what the decoder hands the checks (`edgegwRawValue` …) never leaves the stage, whatever the order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.modbus.adapter import ModbusAdapter
from gateway.adapter_api import AdapterContext
from gateway.errors import ReadingError
from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.v2 import to_v2_entity
from gateway.processing.api import ProcessorContext, ProcessorMatch
from gateway.processing.attributes import RenameProcessor, UnitProcessor
from gateway.processing.quality import LOOP_METADATA, RAW_METADATA, VALUE_METADATA, QualityConfig, QualityProcessor
from gateway.processing.registry import build_stage, parse_processing
from gateway.processing.stage import Entry, Stage
from gateway.profiles import load_profile
from gateway.records import Attribute, Reading, Source, TimeSource, utc_now
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.adapters.modbus.running import modbus_config, until

STATION = "urn:ngsi-ld:WaterObserved:gw1-gauge"
INTERNAL = (RAW_METADATA, LOOP_METADATA, VALUE_METADATA)
T0 = datetime(2026, 7, 4, tzinfo=UTC)
CONTEXT = ProcessorContext(gateway_id="gw1", data_dir="")  # no data dir: the river keeps no state on disk here

# the platform wants the level as `currentLevel` in centimetres; the Alerts keep theirs (entity_type)
RENAME_AND_CONVERT = [
    {
        "type": "rename",
        "match": {"adapter": "cabinet", "entity_type": "WaterObserved", "attribute": "waterLevel"},
        "to": "currentLevel",
    },
    {
        "type": "unit",
        "match": {"adapter": "cabinet", "entity_type": "WaterObserved", "attribute": "currentLevel"},
        "from_unit": "MTR",
        "to_unit": "CMT",
    },
]


def gauge_adapter(thresholds: list[float], port: int = 1) -> ModbusAdapter:
    devices = [
        {
            "name": "gauge",
            "bus": "gw",
            "profile": "generic/pressure-level-transmitter",
            "unit_id": 1,
            "poll_interval": 0.1,
            "timeout": 0.2,
            "river": {"point": "level", "thresholds": [{"level": t} for t in thresholds]},
        }
    ]
    config = modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices)
    return ModbusAdapter(config, AdapterContext(gateway_id="gw1", data_dir=""))


def configured(entries: list[dict[str, Any]]) -> list[Any]:
    errors: list[str] = []
    configs = parse_processing(entries, errors)
    assert errors == []
    return configs


def internal_metadata(readings: list[Reading]) -> list[tuple[str, str, str]]:
    return [
        (r.entity_id, name, m)
        for r in readings
        for name, a in r.attributes.items()
        for m in a.metadata
        if m in INTERNAL or m.startswith("edgegw")
    ]


async def test_a_renamed_and_converted_modbus_level_keeps_its_checks_alerts_and_internals(tmp_path: Path) -> None:
    profile = load_profile("generic/pressure-level-transmitter")
    values = {"unit_code": 1, "decimals": 2, "level": 1.20, "range_zero": 0.0, "range_full": 5.0}
    peer, port = await start_tcp_peer([image_from_values(1, profile, values)])
    adapter = gauge_adapter([1.5, 2.0, 2.5, 3.0], port)
    stage = build_stage(configured(RENAME_AND_CONVERT), CONTEXT, [("cabinet", adapter)])
    assert stage is not None
    readings: list[Reading] = []

    async def emit(reading: Reading) -> None:
        for r in stage.process(reading, utc_now()):
            check_reading(r, encoding=ValueEncoding.PERCENT)  # what the gateway does next, before the buffer
            readings.append(r)

    def station() -> list[Reading]:
        return [r for r in readings if r.entity_id == STATION]

    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: len(station()) >= 2)
        await peer.server.async_setValues(1, 3, 4, [213])  # type: ignore[union-attr]  # 2.13 m: 1.5 and 2.0 crossed
        await until(lambda: station()[-1].attributes["levelState"].value == "氾濫注意水位")
        await peer.server.async_setValues(1, 3, 4, [32767])  # type: ignore[union-attr]  # the probe's no-data sentinel
        await until(lambda: station()[-1].attributes["currentLevel"].metadata["quality"]["value"] == ["sentinel"])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await peer.stop()
    alerts = [r for r in readings if r.entity_type == "Alert"]
    # the thresholds compare metres, as the device's [river] says, though the platform gets centimetres
    assert [(a.attributes["thresholdName"].value, a.attributes["direction"].value) for a in alerts] == [
        ("水防団待機水位", "up"),
        ("氾濫注意水位", "up"),
    ]
    assert [a.attributes["thresholdLevel"].value for a in alerts] == [1.5, 2.0]
    assert {a.attributes["waterLevel"].value for a in alerts} == {2.13}
    crossed = next(r for r in station() if "levelState" in r.attributes and r.attributes["levelStateIndex"].value == 2)
    assert "waterLevel" not in crossed.attributes
    assert crossed.attributes["currentLevel"] == Attribute(
        value=213.0, type="Number", unit="CMT", metadata={"quality": {"type": "StructuredValue", "value": []}}
    )
    assert crossed.attributes["levelStateIndex"].value == 2
    # a flagged sentinel moves no state (the gauge's reading goes without one) and raises nothing
    assert "levelState" not in station()[-1].attributes and len(alerts) == 2
    assert internal_metadata(readings) == []
    sent = to_v2_entity(crossed, encoding=ValueEncoding.PERCENT)
    assert sorted(sent["currentLevel"]["metadata"]) == ["TimeInstant", "quality", "unitCode"]
    counters = stage.diagnostics()
    # the device's entries first: they are matched on its own attribute names
    assert [c["name"] for c in counters][:3] == [
        "cabinet: gauge unit_code (quality)",
        "cabinet: gauge level (quality)",
        "cabinet: gauge level (river)",
    ]
    assert counters[2]["counters"]["alerts"] == 2
    assert counters[1]["counters"]["flagged"] >= 1


def test_internal_metadata_never_leaves_the_stage_whatever_the_order() -> None:
    raw = {RAW_METADATA: {"type": "Number", "value": 150}, LOOP_METADATA: {"type": "Number", "value": 12.0}}
    reading = Reading(
        entity_id="urn:ngsi-ld:WaterObserved:g1",
        entity_type="WaterObserved",
        attributes={"level": Attribute(value=1.5, type="Number", unit="MTR", metadata=raw)},
        observed_at=T0,
        source=Source(adapter="cabinet"),
    )
    checks = QualityProcessor(QualityConfig(sentinels=(32767,)), attribute="level")
    rename = RenameProcessor(source="level", target="waterLevel")
    # a rename ahead of the check: the check finds nothing to check
    stage = Stage(
        [
            Entry(name="rename", match=ProcessorMatch(attribute="level"), processor=rename),
            Entry(name="checks", match=ProcessorMatch(attribute="level"), processor=checks),
        ]
    )
    [out] = stage.process(reading, T0)
    assert internal_metadata([out]) == []
    assert out.attributes["waterLevel"].value == 1.5
    # a processor that cannot use the value leaves the reading as it was: without the internals all the same
    refusing = UnitProcessor(attribute="level", factor=100.0, offset=0.0, to_unit="CMT", from_unit="MMT")
    with_error = Stage([Entry(name="unit", match=ProcessorMatch(attribute="level"), processor=refusing)])
    with pytest.raises(ReadingError):
        refusing.process(reading, T0)  # a level in MTR where MMT was expected
    [out] = with_error.process(reading, T0)
    assert internal_metadata([out]) == [] and out.attributes["level"].value == 1.5
    assert with_error.diagnostics()[0]["counters"]["errors"] == 1


def poll(level_cm: int, i: int) -> Reading:
    """A reading as the adapter makes it from one poll of the gauge (decimals = 2: the register is centimetres)."""
    metadata = {RAW_METADATA: {"type": "Number", "value": level_cm}}
    return Reading(
        entity_id=STATION,
        entity_type="WaterObserved",
        attributes={
            "waterLevel": Attribute(value=level_cm / 100, type="Number", unit="MTR", metadata=metadata),
            "dateObserved": Attribute(value=(T0 + timedelta(minutes=i)).isoformat(), type="DateTime"),
        },
        observed_at=T0 + timedelta(minutes=i),
        time_source=TimeSource.GATEWAY,
        source=Source(adapter="cabinet", device="gauge"),
    )


@st.composite
def gauges(draw: st.DrawFn) -> tuple[list[float], list[int]]:
    start = draw(st.integers(min_value=50, max_value=300))
    gaps = draw(st.lists(st.integers(min_value=5, max_value=120), min_size=1, max_size=4))
    levels_cm = [start]
    for gap in gaps[1:]:
        levels_cm.append(levels_cm[-1] + gap)
    series = draw(st.lists(st.integers(min_value=0, max_value=900), min_size=1, max_size=25))
    return [cm / 100 for cm in levels_cm], series


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gauges(), st.sampled_from(["CMT", "MMT"]))
def test_renaming_and_converting_a_device_level_changes_no_state_and_no_alert(
    gauge: tuple[list[float], list[int]], unit: str
) -> None:
    thresholds, series = gauge
    entries = [dict(e) for e in RENAME_AND_CONVERT]
    entries[1] = {**entries[1], "to_unit": unit}
    plain = build_stage([], CONTEXT, [("cabinet", gauge_adapter(thresholds))])
    mapped = build_stage(configured(entries), CONTEXT, [("cabinet", gauge_adapter(thresholds))])
    assert plain is not None and mapped is not None
    factor = {"CMT": 100, "MMT": 1000}[unit]
    for i, cm in enumerate(series):
        want = plain.process(poll(cm, i), T0)
        got = mapped.process(poll(cm, i), T0)
        assert internal_metadata(got) == []
        # the same Alerts, thresholds in metres; the gauge's state as without the mapping
        assert [(r.entity_id, dict(r.attributes)) for r in got[1:]] == [
            (r.entity_id, dict(r.attributes)) for r in want[1:]
        ]
        for name in ("levelState", "levelStateIndex", "rateOfRise"):
            assert got[0].attributes.get(name) == want[0].attributes.get(name)  # none on a flagged level
        level = got[0].attributes["currentLevel"]
        assert (level.unit, level.value) == (unit, cm * factor // 100)
        assert level.metadata == want[0].attributes["waterLevel"].metadata


def test_a_configured_quality_check_after_the_device_s_keeps_the_device_s_flags() -> None:
    checked_too: list[dict[str, Any]] = [
        RENAME_AND_CONVERT[0],
        {
            "type": "quality",
            "match": {"adapter": "cabinet", "entity_type": "WaterObserved", "attribute": "currentLevel"},
            "valid_min": -1.0,
            "valid_max": 15.0,
        },
    ]
    stage = build_stage(configured(checked_too), CONTEXT, [("cabinet", gauge_adapter([1.5, 2.0]))])
    assert stage is not None
    [first] = stage.process(poll(120, 0), T0)
    assert first.attributes["currentLevel"].metadata["quality"]["value"] == []
    # 1.30 m in a minute: more than the profile's spike_threshold (1.0 m); the laxer check finds nothing wrong
    [jump] = stage.process(poll(250, 1), T0)
    assert jump.attributes["currentLevel"].metadata["quality"]["value"] == ["spike"]
    assert "levelState" not in jump.attributes
    [wild] = stage.process(poll(1600, 2), T0)  # beyond valid_max as well: both checks' flags, in flag order
    assert wild.attributes["currentLevel"].metadata["quality"]["value"] == ["out_of_range", "spike"]
