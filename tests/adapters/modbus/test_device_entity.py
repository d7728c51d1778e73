"""A device's own entity and what describes it: deviceState with a reason that never goes stale, controlledProperty, location."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from gateway.configbase import format_validation_error
from gateway.profiles import load_profile
from gateway.records import Attribute, TimeSource
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, states, until
from tests.support.entity_state import append, stored
from tests.support.orion_double import OrionDouble

XY = load_profile("generic/xy-md02")
DEVICE = "urn:ngsi-ld:Device:gw1-th1"
STATION = "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1"
HITOYOSHI = {"type": "Point", "coordinates": [130.7633, 32.2103]}


def _device(**extra: object) -> dict[str, object]:
    return {
        "name": "th1",
        "bus": "gw",
        "profile": "generic/xy-md02",
        "unit_id": 1,
        "poll_interval": 0.1,
        "timeout": 0.1,
        "retries": 0,
        **extra,
    }


async def test_offline_then_online_carries_the_same_metadata_and_orion_keeps_no_stale_reason(
    tmp_path: Path, orion_double: OrionDouble
) -> None:
    peer, port = await start_tcp_peer(
        [image_from_values(1, XY, {"temperature": 20.0, "relative_humidity": 0.5, "temperature_correction": 0.0})]
    )
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], [_device()]), tmp_path)
    try:
        async with running(adapter) as readings:
            await until(lambda: states(readings, DEVICE) == ["online"])
            peer.muted.add(1)
            await until(lambda: states(readings, DEVICE) == ["online", "offline"])
            peer.muted.discard(1)
            await until(lambda: states(readings, DEVICE) == ["online", "offline", "online"], timeout=5)
    finally:
        await peer.stop()
    changes = [r for r in of(readings, DEVICE) if "deviceState" in r.attributes]
    assert [set(r.attributes["deviceState"].metadata) for r in changes] == [{"reason"}] * 3
    reasons = [r.attributes["deviceState"].metadata["reason"] for r in changes]
    assert reasons[0] == reasons[2] == {"type": "Text", "value": ""}
    assert reasons[1]["value"].startswith(f"modbus unit 1 FC04 @1 x2 on tcp://127.0.0.1:{port}: no answer")
    # Orion merges metadata on append: what it holds after the three updates must be the last state's
    for reading in changes:
        await append(orion_double, [reading])
    state = stored(orion_double, DEVICE)["deviceState"]
    assert state["value"] == "online"
    assert state["metadata"]["reason"] == {"type": "Text", "value": ""}


def test_descriptions_give_the_device_entity_its_controlled_property_and_both_entities_their_location(
    tmp_path: Path,
) -> None:
    config = modbus_config(
        [{"name": "gw", "port": "tcp://127.0.0.1:1"}],
        [
            _device(location={"lat": 32.2103, "lon": 130.7633}),
            {
                "name": "relays",
                "bus": "gw",
                "profile": "waveshare/modbus-rtu-relay-d",
                "unit_id": 2,
                "controlled_property": ["waterFlow"],
            },
        ],
    )
    described = {(r.entity_id, r.entity_type): r for r in make_adapter(config, tmp_path).descriptions()}
    # the relay board's entity is its Device entity (the profile's type is Device): one reading for both
    assert sorted(described) == [
        ("urn:ngsi-ld:Device:gw1-relays", "Device"),
        (DEVICE, "Device"),
        (STATION, "IndoorEnvironmentObserved"),
    ]
    assert described[(DEVICE, "Device")].attributes == {
        "controlledProperty": Attribute(value=["temperature", "humidity"], type="StructuredValue"),
        "location": Attribute(value=HITOYOSHI, type="geo:json"),
    }
    assert described[(STATION, "IndoorEnvironmentObserved")].attributes == {
        "location": Attribute(value=HITOYOSHI, type="geo:json")
    }
    relays = described[("urn:ngsi-ld:Device:gw1-relays", "Device")]
    assert relays.attributes == {"controlledProperty": Attribute(value=["waterFlow"], type="StructuredValue")}
    assert relays.time_source is TimeSource.GATEWAY and relays.source.device == "relays"


async def test_descriptions_go_out_before_the_first_poll_and_orion_keeps_them(
    tmp_path: Path, orion_double: OrionDouble
) -> None:
    peer, port = await start_tcp_peer(
        [image_from_values(1, XY, {"temperature": 20.0, "relative_humidity": 0.5, "temperature_correction": 0.0})]
    )
    config = modbus_config(
        [{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], [_device(location={"lat": 32.2103, "lon": 130.7633})]
    )
    try:
        async with running(make_adapter(config, tmp_path)) as readings:
            await until(lambda: len(of(readings, STATION)) >= 3)
    finally:
        await peer.stop()
    first, *polled = of(readings, STATION)
    assert set(first.attributes) == {"location"}
    assert all("location" not in r.attributes and "dateObserved" in r.attributes for r in polled)
    await append(orion_double, readings)
    station = stored(orion_double, STATION)
    assert station["location"]["value"] == HITOYOSHI
    assert station["dateObserved"]["value"] == station["TimeInstant"]["value"]
    assert stored(orion_double, DEVICE)["controlledProperty"]["value"] == ["temperature", "humidity"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"location": {"lat": 130.76, "lon": 32.21}},
            "devices[0].location.lat: must be a latitude in degrees -90..90 (north positive), got 130.76; "
            "are lat and lon swapped?",
        ),
        (
            {"location": {"lat": 32.21, "lon": -181}},
            "devices[0].location.lon: must be a longitude in degrees -180..180 (east positive), got -181",
        ),
        ({"location": {"lat": 32.21}}, "devices[0].location.lon: required key is missing"),
        (
            {"location": {"lat": "32.21", "lon": 130.76}},
            'devices[0].location.lat: input should be a valid number, got "32.21"',
        ),
        (
            {"controlled_property": ["water level"]},
            "devices[0].controlled_property: must list Smart Data Models property names in lowerCamelCase (waterLevel, "
            'temperature, humidity), got "water level"',
        ),
    ],
)
def test_bad_location_or_controlled_property_names_the_key(extra: dict[str, object], message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        modbus_config([{"name": "gw", "port": "tcp://127.0.0.1:1"}], [_device(**extra)])
    assert format_validation_error(info.value) == [message]


def test_a_computed_level_may_not_take_the_name_of_a_published_point() -> None:
    device = {
        "name": "radar",
        "bus": "gw",
        "profile": "dfrobot/sen0676",
        "unit_id": 1,
        "river": {"point": "air_gap", "stage": {"mounting_height_m": 5.0}},
    }
    with pytest.raises(pydantic.ValidationError) as info:
        modbus_config([{"name": "gw", "port": "tcp://127.0.0.1:1"}], [device])
    assert format_validation_error(info.value) == [
        'devices[0].river.level_attribute: point "level" of dfrobot/sen0676 publishes it already, got "waterLevel"; '
        "name the computed level otherwise, or make that point river.point and drop river.stage"
    ]
    renamed = {**device, "river": {**device["river"], "level_attribute": "stageLevel"}}  # type: ignore[dict-item]
    assert modbus_config([{"name": "gw", "port": "tcp://127.0.0.1:1"}], [renamed]).devices[0].river is not None
