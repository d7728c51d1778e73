"""A mapping's `location`: fixed, from two lat/lon fields, or from a GeoJSON field; checked, in both adapters alike."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.http_poll.config import HttpPollConfig, ItemMapping
from adapters.http_poll.mapping import Mapper as HttpMapper
from adapters.mqtt.config import Subscription
from adapters.mqtt.mapping import Mapper as MqttMapper
from adapters.mqtt.mapping import MappingError as MqttError
from gateway.configbase import format_validation_error
from gateway.ngsi import geojson
from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.records import Attribute, Reading

NOW = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
HITOYOSHI = {"type": "Point", "coordinates": [130.7633, 32.2103]}


def mapping(location: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "items": "s",
        "entity_id": "urn:ngsi-ld:WaterObserved:{c}",
        "entity_type": "WaterObserved",
        "null_values": ["欠測"],
        "attributes": [{"path": "l", "name": "waterLevel", "unit": "MTR"}],
        "location": location,
        **extra,
    }


def mapped(location: dict[str, Any], item: dict[str, Any]) -> tuple[list[Reading], list[str]]:
    result = HttpMapper([ItemMapping.model_validate(mapping(location))], adapter="h").map(
        json.dumps({"s": [item]}, ensure_ascii=False).encode(), NOW
    )
    return result.readings, [f"{e.reason.value}: {e}" for e in result.errors]


def location_of(location: dict[str, Any], item: dict[str, Any]) -> Any:
    readings, errors = mapped(location, item)
    assert errors == []
    (r,) = readings
    return r.attributes.get("location")


def test_a_fixed_place_is_a_geojson_point_lon_first() -> None:
    assert location_of({"lat": 32.2103, "lon": 130.7633}, {"c": 1, "l": 1.2}) == Attribute(
        value=HITOYOSHI, type="geo:json"
    )


@pytest.mark.parametrize(
    "item",
    [
        {"緯度": 32.2103, "経度": 130.7633},
        {"緯度": "32.2103", "経度": " 130.7633 "},  # portals quote their numbers
    ],
)
def test_two_fields_in_degrees_become_a_point(item: dict[str, Any]) -> None:
    got = location_of({"lat_path": "緯度", "lon_path": "経度"}, {"c": 1, "l": 1.2, **item})
    assert got == Attribute(value=HITOYOSHI, type="geo:json")


def test_a_geojson_field_is_sent_as_given() -> None:
    feature = {"type": "Feature", "geometry": HITOYOSHI, "properties": {"名称": "人吉"}}
    assert location_of({"path": "geo"}, {"c": 1, "l": 1.2, "geo": feature}) == Attribute(value=feature, type="geo:json")


@pytest.mark.parametrize(
    ("location", "item", "error"),
    [
        (
            {"lat_path": "lat", "lon_path": "lon"},
            {"lat": 130.7633, "lon": 32.2103},
            "bad_value: s[0].lat (location): must be a latitude -90..90, got <3 digits>.<4 digits>; are lat_path and lon_path swapped?",
        ),
        (
            {"lat_path": "lat", "lon_path": "lon"},
            {"lat": 32.2, "lon": "190.5"},
            "bad_value: s[0].lon (location): must be a longitude -180..180, got '<3 digits>.<1 digit>'",
        ),
        (
            {"lat_path": "lat", "lon_path": "lon"},
            {"lat": True, "lon": 130.7},
            "wrong_type: s[0].lat (location): must be a latitude in degrees (a number), got bool True",
        ),
        (
            {"lat_path": "lat", "lon_path": "lon"},
            {"lat": "北緯32度", "lon": 130.7},
            "wrong_type: s[0].lat (location): must be a latitude in degrees (a number), got str '<5 chars>'",
        ),
        (
            {"lat_path": "lat", "lon_path": "lon"},
            {"lat": 32.2},
            "missing_field: s[0].lon (location): is missing, got no such field",
        ),
        (
            {"lat_path": "lat", "lon_path": "lon"},
            {"lat": "欠測", "lon": 130.7},
            "missing_field: s[0].lat (location): is missing, got '欠測'",
        ),
        (
            {"path": "geo"},
            {"geo": "32.2,130.7"},
            "wrong_type: s[0].geo (location): must be a GeoJSON object, got str '<2 digits>.<1 digit>,<3 digits>.<1 digit>'",
        ),
        (
            {"path": "geo"},
            {"geo": {"type": "Point", "coordinates": [32.2103, 130.7633]}},
            "bad_value: s[0].geo (location): latitude 130.7633 at coordinates is outside -90..90, got {'type': '<5 letters>', "
            "'coordinates': [<2 digits>.<4 digits>, <3 digits>...; positions are [longitude, latitude], are the two swapped?",
        ),
        (
            {"path": "geo"},
            {"geo": {"type": "GeometryCollection", "geometries": []}},
            "bad_value: s[0].geo (location): GeometryCollection is not supported by Orion (its database fails with 500), "
            "got {'type': '<18 letters>', 'geometries': []}; send each geometry as its own attribute (extra ones "
            "with metadata ignoreType = true) or use a Multi* type",
        ),
    ],
)
def test_a_bad_location_drops_the_item_naming_the_field(
    location: dict[str, Any], item: dict[str, Any], error: str
) -> None:
    assert mapped(location, {"c": 1, "l": 1.2, **item}) == ([], [error])


def test_missing_skip_sends_the_item_without_a_location() -> None:
    for item in ({}, {"lat": None, "lon": 130.7}, {"lat": "欠測", "lon": "欠測"}):
        assert (
            location_of({"lat_path": "lat", "lon_path": "lon", "missing": "skip"}, {"c": 1, "l": 1.2, **item}) is None
        )
    assert location_of({"path": "geo", "missing": "skip"}, {"c": 1, "l": 1.2}) is None


@pytest.mark.parametrize(
    ("location", "message"),
    [
        (
            {"lat": 32.2},
            "needs lat and lon (a fixed place), lat_path and lon_path (two fields of each object) or path "
            "(a GeoJSON field of each object), got lat",
        ),
        (
            {"lat": 32.2, "lon": 130.7, "path": "geo"},
            "needs lat and lon (a fixed place), lat_path and lon_path (two fields of each object) or path "
            "(a GeoJSON field of each object), got lat, lon, path",
        ),
        (
            {},
            "needs lat and lon (a fixed place), lat_path and lon_path (two fields of each object) or path "
            "(a GeoJSON field of each object), got none of them",
        ),
    ],
)
def test_a_location_needs_exactly_one_form(location: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        ItemMapping.model_validate(mapping(location))
    assert format_validation_error(info.value, ItemMapping) == [f"location: {message}"]


def test_missing_with_a_fixed_place_is_reported_at_its_own_key() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        ItemMapping.model_validate(mapping({"lat": 32.2, "lon": 130.7, "missing": "skip"}))
    assert format_validation_error(info.value, ItemMapping) == [
        "location.missing: applies to a location read from the JSON, not to a fixed lat and lon, got missing = "
        "'skip'; remove it"
    ]


def test_config_errors_name_the_key_path() -> None:
    doc: dict[str, Any] = {
        "name": "p",
        "type": "http_poll",
        "url": "https://example.lg.jp/x",
        "mappings": [
            mapping({"lat": -91, "lon": 130.7}),
            mapping(
                {"path": "geo[x]"},
                controlled_property=["waterLevel"],
                attributes=[
                    {"path": "l", "name": "location", "type": "StructuredValue"},
                    {"path": "c", "name": "controlledProperty", "type": "StructuredValue"},
                ],
            ),
        ],
    }
    with pytest.raises(pydantic.ValidationError) as info:
        HttpPollConfig.model_validate(doc)
    assert format_validation_error(info.value, HttpPollConfig, "adapters[2]") == [
        "adapters[2].mappings[0].location.lat: must be a latitude in degrees -90..90 (north positive), got -91; "
        "are lat and lon swapped?",
        "adapters[2].mappings[1].location.path: must be a JSON path like data.stations or 観測値[0].水位 (keys "
        "separated by '.', list items as [i]), got \"geo[x]\"",
    ]
    doc["mappings"] = [doc["mappings"][1] | {"location": {"path": "geo"}}]
    with pytest.raises(pydantic.ValidationError) as info:
        HttpPollConfig.model_validate(doc)
    assert format_validation_error(info.value, HttpPollConfig, "adapters[2]") == [
        "adapters[2].mappings[0].location: is set and attributes[0] is named 'location' too, got both; keep one of them",
        "adapters[2].mappings[0].controlled_property: is set and attributes[1] is named 'controlledProperty' too, "
        "got both; keep one of them",
    ]


# what JSON can carry (no NaN or Infinity), as numbers and as the strings portals quote them in
COORDINATE = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-1000, 1000)
    | st.booleans()
    | st.none()
    | st.sampled_from(["32.5", "-181", "1e3", "nan", "Infinity", "", "欠測"])
)


@settings(max_examples=300, deadline=None)
@given(lat=COORDINATE, lon=COORDINATE)
def test_any_pair_gives_an_indexable_point_or_a_clear_error_in_both_adapters(lat: Any, lon: Any) -> None:
    item = {"c": "1", "l": 1.2, "lat": lat, "lon": lon}
    body = json.dumps(item, ensure_ascii=False).encode()
    section = {k: v for k, v in mapping({"lat_path": "lat", "lon_path": "lon"}).items() if k != "items"}
    http = HttpMapper([ItemMapping.model_validate(section)], adapter="h").map(body, NOW)
    mqtt = MqttMapper(
        [Subscription.model_validate(section | {"topic": "t", "entity_id": "urn:ngsi-ld:WaterObserved:{payload.c}"})],
        adapter="m",
    )
    try:
        (m,) = mqtt.map("t", body, NOW)
    except MqttError as exc:
        (h_err,) = http.errors
        assert exc.reason.value == h_err.reason.value  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        assert str(exc).replace("t: payload.", "") == str(h_err).replace("):", ")", 1)  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        return
    (h,) = http.readings
    assert m.attributes == h.attributes
    point = h.attributes["location"].value
    lon_v, lat_v = point["coordinates"]
    assert -90 <= lat_v <= 90 and -180 <= lon_v <= 180 and math.isfinite(lat_v) and math.isfinite(lon_v)
    assert geojson.problem(point) is None
    check_reading(h, encoding=ValueEncoding.PERCENT)
