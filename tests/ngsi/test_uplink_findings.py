"""Regressions for what the HTTP uplink engineer found getting past check_reading, one test per finding.

Each case is a reading that used to pass the converter and then made Orion answer 400 (a dead
letter) or 500 (an uplink retrying forever); now it is refused at the source with the message a
technician sees, and the accepted neighbours convert into what the strict oracle accepts.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from gateway.errors import ReadingError
from gateway.ngsi.check import MAX_VALUE_BYTES, ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import ld_upsert_body, to_ld_entity
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.records import Attribute, Reading, Source
from tests.support.orion_rules import validate_ld_upsert, validate_v2_update

JST = timezone(timedelta(hours=9))
GAUGE = "urn:ngsi-ld:WaterObserved:hitoyoshi"
PCT = ValueEncoding.PERCENT
CTX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
TYPE_FIX = "make the device profile's data type match, or declare the attribute with the type of its values"
DATETIME_FIX = "send ISO 8601 with a zone, such as 2024-05-01T09:00:00+09:00 or 2024-05-01T00:00:00Z"
RING_FIX = "a ring lists its corners in order and repeats the first position at the end"
DOLLAR_FIX = "rename the key (no leading $) in the device profile or decoder"


def reading(**attrs: Attribute) -> Reading:
    return Reading(
        entity_id=GAUGE,
        entity_type="WaterObserved",
        attributes=attrs,
        observed_at=datetime(2024, 5, 1, 9, 0, tzinfo=JST),
        source=Source(adapter="river", device="gauge1"),
    )


def refused(r: Reading) -> ReadingError:
    with pytest.raises(ReadingError) as exc:
        ReadingChecker().check(r, encoding=PCT)
    return exc.value


def v2_accepted(r: Reading) -> dict[str, Any]:
    """Checks, converts and has the strict oracle accept the v2 body; returns the entity sent."""
    ReadingChecker().check(r, encoding=PCT)
    entity = to_v2_entity(r, encoding=PCT)
    body = v2_update_body([orjson.dumps(entity)])
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Fiware-Service": "kumamoto"}
    assert validate_v2_update(headers, body) == (204, None)
    return entity


def ld_accepted(r: Reading) -> dict[str, Any]:
    entity = to_ld_entity(r, encoding=PCT, context=CTX)
    body = ld_upsert_body([orjson.dumps(entity)])
    headers = {"Content-Type": "application/ld+json", "Content-Length": str(len(body))}
    assert validate_ld_upsert(headers, body) == (204, None)
    return entity


# ------------------------------------------------------------------- finding 1: $-keys (operators)


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"$inc": 1}, "$inc"),
        ({"count": 1, "$set": {"a": 1}}, "$set"),
        ({"outer": {"$custom": 1}}, "$custom"),  # MongoDB refuses any $-key, at any depth
        ([{"ok": 1}, {"$push": 2}], "$push"),
    ],
)
def test_finding1_dollar_keys_are_refused_in_structured_values(value: Any, key: str) -> None:
    err = refused(reading(info=Attribute(value=value)))
    assert str(err).startswith(
        f"{GAUGE}.info: object key {key!r} starts with '$', which Orion takes for an update operator, got "
    )
    assert str(err).endswith(f"; {DOLLAR_FIX}")
    assert err.params["attribute"] == "info"


def test_finding1_dollar_keys_in_metadata_and_names() -> None:
    assert str(refused(reading(level=Attribute(value=1.0, metadata={"source": {"$inc": 1}})))) == (
        f"{GAUGE}.level.metadata.source: object key '$inc' starts with '$', which Orion takes for an update operator,"
        f" got {{'$inc': 1}}; {DOLLAR_FIX}"
    )
    # Orion before 3.1 answers 500 for such names (telefonicaid/fiware-orion#3841)
    assert str(refused(reading(**{"$temp": Attribute(value=1.0)}))) == (
        f"{GAUGE}: attribute name must not start with '$' (Orion stores names as database keys), got '$temp'"
    )
    assert str(refused(reading(level=Attribute(value=1.0, metadata={"$md": 1})))) == (
        f"{GAUGE}.level.metadata.$md: metadata name must not start with '$' (Orion stores names as database keys), got '$md'"
    )


def test_finding1_keys_the_database_cannot_store() -> None:
    assert str(refused(reading(info=Attribute(value={"": 1})))) == (
        f"{GAUGE}.info: object key '' must be non-empty and free of NUL characters (its database refuses it), got {{'': 1}}"
    )
    assert str(refused(reading(info=Attribute(value={"a\x00b": 1})))).startswith(
        f"{GAUGE}.info: object key 'a\\x00b' must be"
    )
    # a dollar inside a key, and dots, are stored fine (fiware-orion functional test 1490)
    entity = v2_accepted(reading(info=Attribute(value={"price$": 1, "pm2.5": 12})))
    assert entity["info"]["value"] == {"price$": 1, "pm2.5": 12}


# -------------------------------------------------------------- finding 2: declared type vs value


@pytest.mark.parametrize(
    ("atype", "value", "wanted", "got"),
    [
        ("Number", "12", "a number", "a string '12'"),
        ("Number", True, "a number", "a boolean True"),
        ("Boolean", 1, "true or false", "a number 1"),
        ("Boolean", "true", "true or false", "a string 'true'"),
        ("Text", 5, "a string", "a number 5"),
        ("StructuredValue", "x", "an object or an array", "a string 'x'"),
        ("DateTime", 1714521600, "an ISO 8601 string", "a number 1714521600"),
        ("geo:json", [130.7, 32.2], "a GeoJSON object", "an array [130.7, 32.2]"),
        ("Relationship", {"id": "x"}, "an entity id string", "an object {'id': 'x'}"),
    ],
)
def test_finding2_declared_type_must_match_the_value(atype: str, value: Any, wanted: str, got: str) -> None:
    err = refused(reading(level=Attribute(value=value, type=atype)))
    assert str(err) == f"{GAUGE}.level: type {atype} needs {wanted}, got {got}; {TYPE_FIX}"
    assert err.params["declared_type"] == atype
    assert err.params["entity_id"] == GAUGE and err.params["attribute"] == "level"


def test_finding2_matching_values_pass_and_datetimes_are_rendered_canonical_utc() -> None:
    entity = v2_accepted(
        reading(
            level=Attribute(value=12, type="Number"),
            ratio=Attribute(value=0.5, type="Number"),
            open=Attribute(value=False, type="Boolean"),
            missing=Attribute(value=None, type="Number"),
            since=Attribute(value="2024-05-01T09:00:00.1234+09:00", type="DateTime"),
            legacy=Attribute(value="2024-05-01 09:00+09:00", type="ISO8601"),
        )
    )
    assert entity["since"]["value"] == "2024-05-01T00:00:00.123Z"
    assert entity["legacy"] == {
        "type": "ISO8601",
        "value": "2024-05-01T00:00:00.000Z",
        "metadata": {"TimeInstant": {"type": "DateTime", "value": "2024-05-01T00:00:00.000Z"}},
    }
    ld = ld_accepted(reading(legacy=Attribute(value="2024-05-01 09:00+09:00", type="ISO8601")))
    assert ld["legacy"]["value"] == {"@type": "DateTime", "@value": "2024-05-01T00:00:00.000Z"}


# ------------------------------------------------------------------------- finding 3: GeoJSON


def geo(value: Any) -> Reading:
    return reading(location=Attribute(value=value, type="geo:json"))


SQUARE = [[130.7, 32.2], [130.8, 32.2], [130.8, 32.3], [130.7, 32.3], [130.7, 32.2]]
HOLE = [[130.72, 32.22], [130.74, 32.22], [130.74, 32.24], [130.72, 32.22]]

# (value, what, fix) — the message is "<id>.location: geo:json <what>, got <value>[; <fix>]"
GEO_REFUSED = [
    (
        {"type": "Point", "coordinates": [200, 32.2]},
        "longitude 200 at coordinates is outside -180..180",
        "positions are [longitude, latitude]",
    ),
    (
        {"type": "LineString", "coordinates": [[130.7, 32.2], [130.8, -95]]},
        "latitude -95 at coordinates[1] is outside -90..90",
        "positions are [longitude, latitude], are the two swapped?",
    ),
    # fiware-orion#3347: a Point with nested coordinates made Orion answer 500
    (
        {"type": "Point", "coordinates": [[2, 1]]},
        "coordinates must be a position [longitude, latitude] (an altitude may follow)",
        "positions are arrays of 2 or 3 numbers",
    ),
    # fiware-orion#3949: string coordinates, 500 again
    (
        {"type": "Point", "coordinates": ["-0.042202", "31.976196"]},
        "coordinates must hold finite numbers, it holds '-0.042202'",
        "positions are arrays of 2 or 3 numbers",
    ),
    (
        {"type": "Point", "coordinates": [130.7, 32.2, 10, 1]},
        "coordinates must be a position [longitude, latitude] (an altitude may follow)",
        "positions are arrays of 2 or 3 numbers",
    ),
    (
        {"type": "Polygon", "coordinates": SQUARE},
        "coordinates[0][0] must be a position [longitude, latitude] (an altitude may follow)",
        "positions are arrays of 2 or 3 numbers",
    ),
    (
        {"type": "MultiPoint", "coordinates": []},
        "coordinates of a MultiPoint must be a non-empty list of positions",
        "",
    ),
    (
        {"type": "LineString", "coordinates": [[130.7, 32.2], [130.7, 32.2]]},
        "line coordinates needs at least 2 distinct positions",
        "",
    ),
    (
        {"type": "Polygon", "coordinates": [SQUARE[:-1]]},
        "ring coordinates[0] is not closed: its last position must repeat the first",
        RING_FIX,
    ),
    (
        {"type": "Polygon", "coordinates": [[[130.7, 32.2], [130.8, 32.2], [130.7, 32.2]]]},
        "ring coordinates[0] needs at least 4 positions, it has 3",
        RING_FIX,
    ),
    (
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 0], [0, 0]]]},
        "ring coordinates[0] needs at least 3 distinct corners",
        RING_FIX,
    ),
    (
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
        "ring coordinates[0] crosses or touches itself",
        "split it into separate polygons",
    ),
    (
        {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [1, 1], [2, 2], [0, 2], [1, 1], [0, 0]]]},
        "ring coordinates[0] passes through [1.0, 1.0] twice",
        "split it into separate polygons",
    ),
    (
        {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [1, 0], [1, 1], [0, 0]]]},
        "ring coordinates[0] doubles back on itself at [2.0, 0.0]",
        RING_FIX,
    ),
    (
        {"type": "Polygon", "coordinates": [SQUARE, [[131, 33], [131.1, 33], [131.1, 33.1], [131, 33]]]},
        "hole coordinates[1] is not inside the outer ring coordinates[0]",
        "the first ring is the outline, the others are holes in it",
    ),
    (
        {
            "type": "Polygon",
            "coordinates": [SQUARE, [[130.75, 32.25], [130.9, 32.25], [130.75, 32.28], [130.75, 32.25]]],
        },
        "rings coordinates[0] and coordinates[1] cross",
        "",
    ),
    (
        {
            "type": "Polygon",
            "coordinates": [SQUARE, [[130.7, 32.2], [130.78, 32.22], [130.8, 32.3], [130.72, 32.28], [130.7, 32.2]]],
        },
        "hole coordinates[1] shares more than one corner with the outer ring coordinates[0]",
        "",
    ),
    (
        {"type": "Polygon", "coordinates": [SQUARE, [[130.75, 32.2], [130.78, 32.2], [130.76, 32.25], [130.75, 32.2]]]},
        "rings coordinates[0] and coordinates[1] cross",
        "",
    ),
    (
        {"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE[:-1]]]},
        "ring coordinates[1][0] is not closed: its last position must repeat the first",
        RING_FIX,
    ),
    (
        {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [130.7, 32.2]}]},
        "GeometryCollection is not supported by Orion (its database fails with 500)",
        "send each geometry as its own attribute (extra ones with metadata ignoreType = true) or use a Multi* type",
    ),
    (
        {"type": "Feature", "geometry": None, "properties": {}},
        "Feature needs a geometry (not a null, collection or nested Feature)",
        "",
    ),
    (
        {"type": "FeatureCollection", "features": []},
        "FeatureCollection must hold exactly one Feature, it holds 0",
        "Orion keeps one location per entity; send the one geometry that locates it",
    ),
    (
        {"type": "Circle", "coordinates": [130.7, 32.2]},
        "type must be Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon, Feature or FeatureCollection",
        "",
    ),
]


@pytest.mark.parametrize(("value", "what", "fix"), GEO_REFUSED, ids=[case[1][:40] for case in GEO_REFUSED])
def test_finding3_geojson_orion_cannot_index_is_refused(value: Any, what: str, fix: str) -> None:
    err = refused(geo(value))
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    assert str(err) == f"{GAUGE}.location: geo:json {what}, got {shown}" + (f"; {fix}" if fix else "")
    assert err.params["declared_type"] == "geo:json"


@pytest.mark.parametrize(
    "value",
    [
        {"type": "Point", "coordinates": [130.76, 32.21, 105.5]},
        {"type": "MultiPoint", "coordinates": [[130.7, 32.2], [130.8, 32.3]]},
        {"type": "LineString", "coordinates": [[130.7, 32.2], [130.7, 32.2], [130.8, 32.3]]},
        {"type": "MultiLineString", "coordinates": [[[130.7, 32.2], [130.8, 32.3]], [[131, 33], [131.1, 33.1]]]},
        {"type": "Polygon", "coordinates": [SQUARE, HOLE]},
        {"type": "Polygon", "coordinates": [SQUARE, [[130.7, 32.2], [130.75, 32.22], [130.72, 32.25], [130.7, 32.2]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 2], [0, 0]]]},  # repeats are dropped
        {"type": "MultiPolygon", "coordinates": [[SQUARE], [[[131, 33], [131.1, 33], [131.1, 33.1], [131, 33]]]]},
    ],
)
def test_finding3_valid_geometries_pass_and_convert(value: Any) -> None:
    entity = v2_accepted(geo(value))
    assert entity["location"]["value"] == value
    assert ld_accepted(geo(value))["location"]["value"] == value


def test_finding3_features_are_sent_as_their_geometry() -> None:
    point = {"type": "Point", "coordinates": [130.76, 32.21]}
    feature = {"type": "Feature", "geometry": point, "properties": {"name": "人吉"}}
    # Orion before 3.7 answers 500 for a Feature location; later ones keep only the geometry anyway
    assert v2_accepted(geo(feature))["location"]["value"] == point
    assert v2_accepted(geo({"type": "FeatureCollection", "features": [feature]}))["location"]["value"] == point
    # an informative, unindexed location keeps the whole Feature
    informative = reading(
        location=Attribute(value=point, type="geo:json"),
        area=Attribute(value=feature, type="geo:json", metadata={"ignoreType": True}),
    )
    assert v2_accepted(informative)["area"]["value"] == feature
    assert ld_accepted(informative)["area"]["value"] == point


# ----------------------------------------------------------------- finding 4: DateTime messages


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("2024-13-01T00:00:00Z", "DateTime is not an ISO 8601 date and time"),
        ("yesterday", "DateTime is not an ISO 8601 date and time"),
        ("2024-05-01", "DateTime must carry a time zone (Z or +09:00)"),
        ("0001-01-01T00:00:00+09:00", "DateTime is out of range once converted to UTC"),
    ],
)
def test_finding4_bad_datetime_gets_a_technicians_message(value: str, what: str) -> None:
    err = refused(reading(since=Attribute(value=value, type="DateTime")))
    assert str(err) == f"{GAUGE}.since: {what}, got {value!r}; {DATETIME_FIX}"
    assert "isoformat" not in str(err)


def test_finding4_bad_datetime_metadata_too() -> None:
    bad = reading(
        level=Attribute(value=1.0, metadata={"checkedAt": {"type": "DateTime", "value": "2024-02-30T00:00:00Z"}})
    )
    assert str(refused(bad)) == (
        f"{GAUGE}.level.metadata.checkedAt: DateTime is not an ISO 8601 date and time, got '2024-02-30T00:00:00Z'; {DATETIME_FIX}"
    )


# ------------------------------------------------------- other 500s: values Orion-LD cannot hold


def test_values_over_orion_lds_attribute_limit_are_refused() -> None:
    # Orion-LD keeps an attribute "just under 64k" (FIWARE/context.Orion-LD#954); bigger ones crash it
    err = refused(reading(note=Attribute(value="x" * MAX_VALUE_BYTES)))
    assert str(err).startswith(
        f"{GAUGE}.note: value takes {MAX_VALUE_BYTES + 2} bytes as JSON, more than the {MAX_VALUE_BYTES}"
        " an NGSI-LD broker (Orion-LD) holds, got 'xxx"
    )
    assert str(err).endswith("; split it into several attributes or send a reference to the data instead")
    japanese = "水" * (MAX_VALUE_BYTES // 3)  # 3 bytes each in UTF-8
    assert "value takes 63002 bytes" in str(refused(reading(note=Attribute(value=japanese))))
    assert "value takes" in str(refused(reading(note=Attribute(value={"samples": list(range(20_000))}))))
    fits = "x" * (MAX_VALUE_BYTES - 2)
    assert v2_accepted(reading(note=Attribute(value=fits)))["note"]["value"] == fits
