"""The simulated source's entities follow the Smart Data Models: units, dateObserved, location, refDevice."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from adapters.simulated.adapter import SimulatedAdapter
from adapters.simulated.config import SimulatedConfig
from gateway.adapter_api import AdapterContext
from gateway.configbase import format_validation_error
from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.records import Attribute, Reading, TimeSource, iso_utc

HITOYOSHI = {"type": "Point", "coordinates": [130.7633, 32.2103]}


def adapter(**config: Any) -> SimulatedAdapter:
    cfg = SimulatedConfig.model_validate({"name": "sim", "type": "simulated", "seed": 1, **config})
    return SimulatedAdapter(cfg, AdapterContext(gateway_id="gw1", data_dir="/nonexistent"))


async def run(a: SimulatedAdapter) -> list[Reading]:
    got: list[Reading] = []

    async def emit(r: Reading) -> None:
        got.append(r)

    await a.run(emit)
    return got


async def test_weather_humidity_is_the_models_ratio_with_unit_one() -> None:
    readings = await run(adapter(kind="weather", entities=20, rate=10_000, limit=200))
    assert {r.attributes["relativeHumidity"].unit for r in readings} == {"C62"}
    assert all(0 <= r.attributes["relativeHumidity"].value <= 1 for r in readings)


async def test_observation_readings_carry_their_time_as_date_observed() -> None:
    for kind in ("river-level", "weather"):
        readings = await run(adapter(kind=kind, entities=2, rate=10_000, limit=4))
        assert all(
            r.attributes["dateObserved"] == Attribute(value=iso_utc(r.observed_at), type="DateTime") for r in readings
        ), kind
        assert list(readings[0].attributes)[-1] == "dateObserved"


async def test_a_type_without_date_observed_gets_none() -> None:
    readings = await run(adapter(kind="river-level", entity_type="RiverGauge", rate=10_000, limit=2))
    assert [list(r.attributes) for r in readings] == [["waterLevel", "sequence"]] * 2


async def test_events_name_their_device_by_relationship_and_carry_the_location() -> None:
    a = adapter(kind="events", entities=2, rate=10_000, limit=2, location={"lat": 32.2103, "lon": 130.7633})
    r = (await run(a))[1]
    assert r.entity_id == "urn:ngsi-ld:SimulatedEvent:sim-1-2"
    assert r.attributes["refDevice"] == Attribute(value="urn:ngsi-ld:Device:sim-1", type="Relationship")
    assert r.attributes["location"] == Attribute(value=HITOYOSHI, type="geo:json")
    assert "dateObserved" not in r.attributes  # SimulatedEvent is the gateway's own type, not an observation
    check_reading(r, encoding=ValueEncoding.PERCENT)
    assert a.descriptions() == []  # an event is its own entity: nothing to describe in advance


async def test_gauges_get_their_location_once_before_their_readings() -> None:
    readings = await run(
        adapter(kind="river-level", entities=3, rate=1000, limit=6, location={"lat": 32.2103, "lon": 130.7633})
    )
    described, measured = readings[:3], readings[3:]
    assert [(r.entity_id, r.attributes, r.time_source) for r in described] == [
        (
            f"urn:ngsi-ld:WaterObserved:sim-{n}",
            {"location": Attribute(value=HITOYOSHI, type="geo:json")},
            TimeSource.GATEWAY,
        )
        for n in range(3)
    ]
    assert len(measured) == 6 and all("location" not in r.attributes for r in measured)
    for r in readings:
        check_reading(r, encoding=ValueEncoding.PERCENT)


async def test_without_a_location_nothing_is_sent_before_the_readings() -> None:
    readings = await run(adapter(kind="weather", entities=2, rate=1000, limit=4))
    assert len(readings) == 4 and all("temperature" in r.attributes for r in readings)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        (
            {"lat": 130.7633, "lon": 32.2103},
            "location.lat: must be a latitude in degrees -90..90 (north positive), got 130.7633; are lat and lon swapped?",
        ),
        (
            {"lat": 32.2103, "lon": 190},
            "location.lon: must be a longitude in degrees -180..180 (east positive), got 190",
        ),
        ({"lat": 32.2103, "lon": 130.7633, "alt": 100}, "location.alt: unknown key; valid keys here: lat, lon"),
        ({"lat": True, "lon": 130.7633}, "location.lat: input should be a valid number, got true"),
    ],
)
def test_a_bad_location_is_refused_naming_its_key(location: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        SimulatedConfig.model_validate({"name": "sim", "type": "simulated", "location": location})
    assert format_validation_error(info.value, SimulatedConfig) == [message]
