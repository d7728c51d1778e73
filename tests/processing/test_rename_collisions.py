"""`rename` onto a name the reading already carries is counted and logged, not silent; a target that the
Orion-rule check would refuse (so every reading would be dropped) is refused when the config is checked."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError, ReadingError
from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.processing.api import ProcessorContext
from gateway.processing.registry import build_stage, parse_processing
from gateway.records import Attribute, Reading, Source, TimeSource

T0 = datetime(2024, 7, 1, tzinfo=UTC)


def reading(entity_type: str = "WaterObserved", /, **attrs: Attribute) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:{entity_type}:kuma",
        entity_type=entity_type,
        attributes=attrs,
        observed_at=T0,
        time_source=TimeSource.DEVICE,
        source=Source(adapter="portal"),
    )


def doc(*processing: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw"},
        "uplinks": [{"name": "o", "type": "orion", "url": "http://127.0.0.1:1"}],
        "processing": list(processing),
    }


def rename(to: str, **match: str) -> dict[str, Any]:
    return {"type": "rename", "match": {"attribute": "level_cm", **match}, "to": to}


def test_a_rename_onto_an_existing_attribute_replaces_it_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[str] = []
    stage = build_stage(
        parse_processing([rename("waterLevel")], errors), ProcessorContext(gateway_id="gw", data_dir="")
    )
    assert errors == [] and stage is not None
    both = reading(
        waterLevel=Attribute(value=3.52, type="Number", unit="MTR"),
        level_cm=Attribute(value=12.0, type="Number", unit="CMT"),
        rssi=Attribute(value=-97, type="Number"),
    )
    with caplog.at_level(logging.WARNING, logger="gateway.processing.attributes"):
        [out] = stage.process(both, T0)
        stage.process(both, T0)
        stage.process(reading("RiverGauge", level_cm=Attribute(value=1.0), waterLevel=Attribute(value=2.0)), T0)
        stage.process(reading(level_cm=Attribute(value=12.0, type="Number", unit="CMT")), T0)  # nothing in the way
    # the docs' table: `match.attribute` is renamed, keeping its value, unit, metadata and position
    assert dict(out.attributes) == {
        "waterLevel": Attribute(value=12.0, type="Number", unit="CMT"),
        "rssi": Attribute(value=-97, type="Number"),
    }
    assert stage.diagnostics() == [{"name": "processing[0] (rename)", "counters": {"renamed": 4, "collisions": 3}}]
    assert [r.getMessage() for r in caplog.records] == [
        "rename level_cm → waterLevel: a WaterObserved reading carries waterLevel already; it is replaced by "
        "level_cm's value (counted as collisions); rename to another name, or drop one of them first",
        "rename level_cm → waterLevel: a RiverGauge reading carries waterLevel already; it is replaced by "
        "level_cm's value (counted as collisions); rename to another name, or drop one of them first",
    ]


CONVERTER = "the converters write it from the reading's time, so every reading renamed would be dropped"
LD = "NGSI-LD reserves it, so every reading renamed would be dropped"
GEO = (
    "NGSI-LD requires a geo:json GeoProperty there, which a rename cannot check, so a reading renamed with "
    "any other value would be dropped"
)


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("TimeInstant", CONVERTER),
        ("timeSource", CONVERTER),
        ("scope", LD),
        ("@context", LD),
        ("createdAt", LD),
        ("location", GEO),
        ("observationSpace", GEO),
    ],
)
def test_a_target_the_orion_rule_check_refuses_is_refused_by_check_config(to: str, why: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc(rename(to)))
    assert exc.value.errors == [f'processing[0].to: must not be "{to}": {why}, got "{to}"; pick another name']
    # what the runtime would do with it: refuse the whole reading
    renamed = reading(**{to: Attribute(value=12.0, type="Number", unit="CMT")})
    with pytest.raises(ReadingError, match=to):
        check_reading(renamed, encoding=ValueEncoding.PERCENT)


def test_a_target_every_reading_of_the_type_carries_already_is_refused_by_check_config() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc(rename("dateObserved", entity_type="WaterObserved")))
    assert exc.value.errors == [
        'processing[0].to: must not be "dateObserved" for WaterObserved readings: the adapters add it to every one '
        'from its time, so every reading renamed would collide, got "dateObserved"; pick another name'
    ]
    # a type without dateObserved of its own may have its time attribute renamed so
    assert parse_config(doc(rename("dateObserved", entity_type="Device"))).processing[0].type == "rename"
