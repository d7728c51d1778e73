"""Each processor on its own: quality per entity, river per gauge, rename/unit/drop, and their config errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.errors import ConfigError, ReadingError
from gateway.processing.api import ProcessorContext
from gateway.processing.attributes import KNOWN_CONVERSIONS, UnitConfig, UnitProcessor
from gateway.processing.quality import (
    RAW_METADATA,
    VALUE_METADATA,
    OnFail,
    QualityConfig,
    QualityProcessor,
    QualityProcessorConfig,
)
from gateway.processing.river import RiverConfig, RiverProcessor
from gateway.records import Attribute, Lane, Reading, Source

T0 = datetime(2026, 7, 4, 0, 0, tzinfo=UTC)
CONTEXT = ProcessorContext(gateway_id="gw1", data_dir="/nonexistent")


def reading(entity: str, at: datetime = T0, **attrs: Attribute) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:{entity}",
        entity_type="WaterObserved",
        attributes=attrs,
        observed_at=at,
        source=Source(adapter="portal"),
    )


def level(value: Any, unit: str | None = "MTR", **metadata: Any) -> Attribute:
    return Attribute(value=value, type="Number", unit=unit, metadata=metadata)


def flags(r: Reading, name: str = "waterLevel") -> list[str]:
    return list(r.attributes[name].metadata["quality"]["value"])


# --- quality --------------------------------------------------------------------------------------------


def test_quality_tracks_spikes_per_entity_not_across_entities() -> None:
    q = QualityProcessor(QualityConfig(spike_max_delta=0.5), attribute="waterLevel")
    seq = [("g1", 1.0), ("g2", 3.0), ("g1", 1.1), ("g2", 3.1), ("g1", 2.5)]
    got = [
        flags(q.process(reading(e, T0 + timedelta(minutes=i), waterLevel=level(v)), T0)[0])
        for i, (e, v) in enumerate(seq)
    ]
    # g2's 3.0 is no spike after g1's 1.0: each entity's attribute has its own history
    assert got == [[], [], [], [], ["spike"]]
    assert q.diagnostics() == {"flagged": 1, "dropped": 0}


def test_quality_drops_a_failing_attribute_and_a_reading_left_with_nothing() -> None:
    q = QualityProcessor(QualityConfig(valid_max=10.0, on_fail=OnFail.DROP), attribute=None)
    out = q.process(reading("g1", waterLevel=level(12.0), flow=level(3.0, "MQS")), T0)
    assert list(out[0].attributes) == ["flow"]
    assert out[0].attributes["flow"].metadata == {"quality": {"type": "StructuredValue", "value": []}}
    assert q.process(reading("g1", waterLevel=level(12.0)), T0) == []
    assert q.diagnostics() == {"flagged": 2, "dropped": 2}


def test_quality_reads_and_removes_the_hints_an_adapter_sends() -> None:
    q = QualityProcessor(QualityConfig(sentinels=(32767,)), attribute="waterLevel")
    hinted = Attribute(
        value=None,
        type="Number",
        metadata={RAW_METADATA: {"type": "Number", "value": 32767}, VALUE_METADATA: {"type": "Number", "value": 32767}},
    )
    [out] = q.process(reading("g1", waterLevel=hinted), T0)
    assert out.attributes["waterLevel"].metadata == {"quality": {"type": "StructuredValue", "value": ["sentinel"]}}


def test_quality_of_every_numeric_attribute_leaves_text_alone() -> None:
    q = QualityProcessor(QualityConfig(valid_min=0.0), attribute=None)
    [out] = q.process(reading("g1", waterLevel=level(-1.0), name=Attribute(value="人吉", type="Text")), T0)
    assert flags(out) == ["out_of_range"] and out.attributes["name"].metadata == {}


# --- river ----------------------------------------------------------------------------------------------

RIVER = RiverConfig.model_validate({"thresholds": [{"level": 2.0}, {"level": 3.0}]})


def test_river_keeps_a_state_per_gauge_and_raises_alerts_on_the_alert_lane() -> None:
    river = RiverProcessor(RIVER, attribute="waterLevel")
    assert len(river.process(reading("g1", waterLevel=level(1.0)), T0)) == 1
    assert len(river.process(reading("g2", waterLevel=level(2.5)), T0)) == 1  # first sample: no crossing
    out = river.process(reading("g1", T0 + timedelta(minutes=10), waterLevel=level(250, "CMT")), T0)
    assert [r.entity_type for r in out] == ["WaterObserved", "Alert"]
    assert out[1].lane is Lane.ALERT and out[1].entity_id.startswith("urn:ngsi-ld:Alert:g1-1-up-")
    assert out[0].attributes["levelState"].value == "水防団待機水位"
    assert out[0].attributes["rateOfRise"].value == 9.0  # 1.0 m → 2.5 m in 10 minutes
    assert river.diagnostics() == {"alerts": 1, "skipped": 0}


def test_river_ignores_a_flagged_or_missing_level() -> None:
    river = RiverProcessor(RIVER, attribute="waterLevel")
    river.process(reading("g1", waterLevel=level(1.0)), T0)
    flagged = level(5.0, quality={"type": "StructuredValue", "value": ["spike"]})
    r = reading("g1", waterLevel=flagged)
    assert river.process(r, T0) == (r,)
    assert river.process(reading("g1", waterLevel=level(math.nan)), T0)[0].attributes.keys() == {"waterLevel"}
    assert river.diagnostics() == {"alerts": 0, "skipped": 2}


def test_river_refuses_a_level_in_an_unknown_unit() -> None:
    river = RiverProcessor(RIVER, attribute="waterLevel")
    with pytest.raises(ReadingError) as exc:
        river.process(reading("g1", waterLevel=level(1.0, "FOT")), T0)
    assert str(exc.value) == (
        "river waterLevel: waterLevel must be in MTR, CMT or MMT, got unit 'FOT'; "
        "convert it first with a `unit` processor"
    )


def test_river_stage_from_a_distance_removes_an_internal_source() -> None:
    config = RiverConfig.model_validate({"thresholds": [{"level": 2.0}], "stage": {"mounting_height_m": 5.0}})
    river = RiverProcessor(config, attribute="gap", level_attribute="waterLevel", remove_source=True)
    [out] = river.process(reading("g1", gap=level(321, "CMT")), T0)
    assert "gap" not in out.attributes and out.attributes["waterLevel"].value == 1.79


# --- unit, rename, drop ---------------------------------------------------------------------------------


@given(st.sampled_from(sorted(KNOWN_CONVERSIONS)), st.floats(min_value=-1e6, max_value=1e6))
def test_a_known_conversion_and_its_reverse_give_the_value_back(pair: tuple[str, str], value: float) -> None:
    a, b = pair
    if (b, a) not in KNOWN_CONVERSIONS:
        return
    there = UnitConfig.model_validate(
        {"type": "unit", "match": {"attribute": "x"}, "from_unit": a, "to_unit": b}
    ).build(CONTEXT)
    back = UnitProcessor(
        attribute="x", factor=KNOWN_CONVERSIONS[(b, a)][0], offset=KNOWN_CONVERSIONS[(b, a)][1], to_unit=a, from_unit=b
    )
    [mid] = there.process(reading("g", x=level(value, a)), T0)
    assert mid.attributes["x"].unit == b
    [out] = back.process(mid, T0)
    assert math.isclose(out.attributes["x"].value, value, rel_tol=1e-9, abs_tol=1e-6)


def test_unit_leaves_a_converted_value_and_refuses_another_unit() -> None:
    cm = UnitConfig.model_validate(
        {"type": "unit", "match": {"attribute": "waterLevel"}, "from_unit": "CMT", "to_unit": "MTR"}
    ).build(CONTEXT)
    r = reading("g", waterLevel=level(1.5, "MTR"))
    assert cm.process(r, T0) == (r,)
    with pytest.raises(ReadingError) as exc:
        cm.process(reading("g", waterLevel=level(150, "MMT")), T0)
    assert str(exc.value) == "unit waterLevel: must be in CMT to convert to MTR, got unit 'MMT'"


def test_processing_config_errors_name_the_entry_and_key() -> None:
    doc = {
        "gateway": {"id": "gw"},
        "uplinks": [{"name": "o", "type": "orion", "url": "http://127.0.0.1:1"}],
        "processing": [
            {"type": "rename", "match": {"attribute": "a"}, "to": "b"},
            {"type": "unit", "to_unit": "MTR", "from_unit": "KGM", "match": {"attribute": "a"}},
            {"type": "river", "match": {"entity_id": "("}, "thresholds": [{"level": 1.0}]},
            {"type": "sort"},
            {"type": "drop", "attributes": []},
            {"type": "quality", "valid_min": 2.0, "valid_max": 1.0},
            {"type": "rename", "to": "b"},
            {"type": "unit", "match": {"attribute": "a"}, "to_unit": "MTR"},
        ],
    }
    with pytest.raises(ConfigError) as exc:
        parse_config(doc)
    assert exc.value.errors == [
        (
            'processing[1].from_unit: no known conversion to MTR, got "KGM"; known: CMT→MTR, MMT→MTR, MMT→CMT, '
            "MTR→CMT, MTR→MMT, KMT→MTR, FAH→CEL, KEL→CEL, HP→KPA, KPA→HP, LTR→MTQ, or give factor and offset"
        ),
        (
            'processing[2].match.entity_id: not a regular expression, got "("; missing ), unterminated subpattern at '
            "position 0: write a Python regular expression matching the whole id, e.g. "
            '"urn:ngsi-ld:WaterObserved:.*"'
        ),
        (
            'processing[3].type: unknown processor type, got "sort"; valid: "quality", "river", "rename", '
            '"unit", "drop", "pseudonymize"'
        ),
        'processing[4].attributes: must name at least one attribute, got none; e.g. attributes = ["rssi"]',
        "processing[5].valid_max: must not be below valid_min (2), got 1.0",
        (
            "processing[6].match.attribute: required for rename, got none; name the attribute to rename, "
            'e.g. attribute = "level_cm"'
        ),
        (
            "processing[7].factor: required without from_unit, got none; set factor (and offset), or from_unit for a "
            "known pair such as CMT→MTR"
        ),
    ]


def test_a_match_naming_no_adapter_is_an_error() -> None:
    doc = {
        "gateway": {"id": "gw"},
        "uplinks": [{"name": "o", "type": "orion", "url": "http://127.0.0.1:1"}],
        "adapters": [{"name": "river-portal", "type": "simulated"}],
        "processing": [{"type": "drop", "match": {"adapter": "river-portl"}, "attributes": ["rssi"]}],
    }
    with pytest.raises(ConfigError) as exc:
        parse_config(doc)
    assert exc.value.errors == [
        'processing[0].match.adapter: no such adapter, got "river-portl"; adapters: river-portal'
    ]


def test_the_river_needs_its_attribute() -> None:
    doc = {
        "gateway": {"id": "gw"},
        "uplinks": [{"name": "o", "type": "orion", "url": "http://127.0.0.1:1"}],
        "processing": [{"type": "river", "thresholds": [{"level": 1.0}]}],
    }
    with pytest.raises(ConfigError) as exc:
        parse_config(doc)
    assert exc.value.errors == [
        (
            "processing[0].match.attribute: required for river, got none; name the attribute holding the water level "
            '(or the distance with `stage`), e.g. attribute = "waterLevel"'
        )
    ]


def test_a_quality_entry_builds_on_its_match_attribute() -> None:
    config = QualityProcessorConfig.model_validate(
        {"type": "quality", "match": {"attribute": "waterLevel"}, "valid_max": 10.0}
    )
    processor = config.build(CONTEXT)
    assert processor.attribute == "waterLevel" and processor.config.valid_max == 10.0
