"""check_reading: the exact messages a technician sees, and the identity cache."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ReadingError
from gateway.ngsi.check import ReadingChecker, canonical_datetime, check_reading, ngsi_type, utc_instant
from gateway.ngsi.config import ValueEncoding
from gateway.records import Attribute, Reading, Source, iso_utc

JST = timezone(timedelta(hours=9))
GAUGE = "urn:ngsi-ld:WaterObserved:hitoyoshi"
PCT = ValueEncoding.PERCENT
TYPE_FIX = "make the device profile's data type match, or declare the attribute with the type of its values"
DATETIME_FIX = "send ISO 8601 with a zone, such as 2024-05-01T09:00:00+09:00 or 2024-05-01T00:00:00Z"


def reading(entity_id: str = GAUGE, **attrs: Attribute) -> Reading:
    return Reading(
        entity_id=entity_id,
        entity_type="WaterObserved",
        attributes=attrs or {"waterLevel": Attribute(value=1.25, unit="MTR")},
        observed_at=datetime(2024, 5, 1, 9, 0, tzinfo=JST),
        source=Source(adapter="river", device="gauge1"),
    )


def refused(r: Reading, encoding: ValueEncoding = PCT) -> ReadingError:
    with pytest.raises(ReadingError) as exc:
        ReadingChecker().check(r, encoding=encoding)
    return exc.value


def test_a_good_reading_passes() -> None:
    check_reading(reading(), encoding=PCT)
    check_reading(reading(name=Attribute(value="人吉(水の手橋)")), encoding=PCT)


def test_entity_id() -> None:
    err = refused(reading("gauge 1"))
    assert str(err) == (
        "river/gauge1: entity id must be 1-256 printable ASCII characters without blanks or any of"
        " < > \" ' = ; ( ) & ? / # { } | \\ ^ ` (found ' '), got 'gauge 1'"
    )
    assert err.params == {"entity_id": "gauge 1", "field": "entity_id"}
    assert str(refused(reading("a" * 231))).startswith(
        "river/gauge1: entity id must stay within 256 characters as the NGSI-LD id urn:ngsi-ld:<type>:<id>, got 257"
    )


def test_attribute_names() -> None:
    assert str(refused(reading(dateExpires=Attribute(value="x")))) == (
        f"{GAUGE}: attribute name must not be one Orion reserves (*, alterationType, dateCreated, dateExpires,"
        " dateModified, geo:distance, id, servicePath, type), got 'dateExpires'"
    )
    assert str(refused(reading(TimeInstant=Attribute(value="x")))) == (
        f"{GAUGE}: attribute name must not be 'TimeInstant', it is written by the converter"
        " (set observed_at instead), got 'TimeInstant'"
    )


def test_non_finite_numbers() -> None:
    err = refused(reading(waterLevel=Attribute(value=math.nan)))
    assert str(err) == f"{GAUGE}.waterLevel: must be a finite number, got nan"
    assert err.params["attribute"] == "waterLevel"
    err = refused(reading(levels=Attribute(value=[1.0, math.inf])))
    assert str(err) == f"{GAUGE}.levels[1]: must be a finite number, got inf"


def test_reject_mode_names_entity_attribute_and_character() -> None:
    err = refused(reading(name=Attribute(value="人吉(水の手橋)")), ValueEncoding.REJECT)
    assert str(err) == (
        f"{GAUGE}.name: value contains '(', which Orion refuses, got '人吉(水の手橋)';"
        ' set [ngsi] value_encoding = "percent" (reversible) or fix the source'
    )
    assert err.params["character"] == "("
    nested = refused(reading(info=Attribute(value={"station": "a;b"})), ValueEncoding.REJECT)
    assert str(nested).startswith(f"{GAUGE}.info: value contains ';', which Orion refuses")
    meta = refused(reading(level=Attribute(value=1, metadata={"note": "x=y"})), ValueEncoding.REJECT)
    assert str(meta).startswith(f"{GAUGE}.level.metadata.note: value contains '='")


def test_types_and_values_must_agree() -> None:
    assert str(refused(reading(level=Attribute(value="1.2", type="Number")))) == (
        f"{GAUGE}.level: type Number needs a number, got a string '1.2'; {TYPE_FIX}"
    )
    assert str(refused(reading(on=Attribute(value=1, type="Boolean")))) == (
        f"{GAUGE}.on: type Boolean needs true or false, got a number 1; {TYPE_FIX}"
    )
    assert str(refused(reading(at=Attribute(value="2024-05-01T09:00:00", type="DateTime")))) == (
        f"{GAUGE}.at: DateTime must carry a time zone (Z or +09:00), got '2024-05-01T09:00:00'; {DATETIME_FIX}"
    )
    assert str(refused(reading(pos=Attribute(value=[1, 2], type="geo:point")))) == (
        f"{GAUGE}.pos: type geo:point is deprecated by Orion, got 'geo:point'; use geo:json with [lon, lat]"
    )
    assert str(refused(reading(location=Attribute(value="1-2-3 Kumamoto")))) == (
        f"{GAUGE}.location: location must be of type geo:json (NGSI-LD requires a GeoProperty), got '1-2-3 Kumamoto'"
    )


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def test_locations() -> None:
    assert str(refused(reading(location=Attribute(value=point(32.2, 130.7), type="geo:json")))) == (
        f"{GAUGE}.location: geo:json latitude 130.7 at coordinates is outside -90..90,"
        " got {'type': 'Point', 'coordinates': [32.2, 130.7]}; positions are [longitude, latitude], are the two swapped?"
    )
    two = reading(
        location=Attribute(value=point(130.7, 32.2), type="geo:json"),
        area=Attribute(value=point(130.8, 32.3), type="geo:json"),
    )
    assert str(refused(two)) == (
        f"{GAUGE}: more than one geo:json location, got 2; mark the informative ones with metadata"
        " ignoreType = true (Orion answers 413 otherwise)"
    )
    informative = reading(
        location=Attribute(value=point(130.7, 32.2), type="geo:json"),
        area=Attribute(value=point(130.8, 32.3), type="geo:json", metadata={"ignoreType": True}),
    )
    check_reading(informative, encoding=PCT)
    bad_flag = reading(area=Attribute(value=point(130.8, 32.3), type="geo:json", metadata={"ignoreType": "yes"}))
    assert str(refused(bad_flag)) == f"{GAUGE}.area.metadata.ignoreType: ignoreType must be true or false, got 'yes'"


def test_structure() -> None:
    deep: Any = 1
    hollow: Any = []
    for _ in range(51):
        deep = [deep]
    for _ in range(50):
        hollow = [hollow]
    assert str(refused(reading(deep=Attribute(value=deep)))) == (
        f"{GAUGE}.deep{'[0]' * 51}: nesting deeper than 50 levels, Orion refuses it"
    )
    assert str(refused(reading(deep=Attribute(value=hollow)))) == (
        f"{GAUGE}.deep: nesting deeper than 50 levels, Orion refuses it, got {'[' * 51}{']' * 6}..."
    )
    check_reading(reading(deep=Attribute(value=deep[0])), encoding=PCT)
    # beyond 64 bits orjson could not even serialize it; the reason that matters is the one below 64 bits too
    assert str(refused(reading(x=Attribute(value=2**64)))) == (
        f"{GAUGE}.x: integer is beyond ±2^53, which Orion and the IoT Agents hold as a double (it would arrive as"
        " another number), got 18446744073709551616; declare the attribute Text and send the digits as a string,"
        " or scale it at the source"
    )
    assert str(refused(reading(x=Attribute(value={"$inc": 1})))) == (
        f"{GAUGE}.x: object key '$inc' starts with '$', which Orion takes for an update operator, got {{'$inc': 1}};"
        " rename the key (no leading $) in the device profile or decoder"
    )
    assert str(refused(reading(x=Attribute(value="\ud800")))) == (
        f"{GAUGE}.x: text must be valid Unicode (it holds a lone surrogate), got '\\ud800'"
    )


def test_metadata_and_units() -> None:
    assert str(refused(reading(x=Attribute(value=1, metadata={"previousValue": 0})))).startswith(
        f"{GAUGE}.x.metadata.previousValue: metadata name must not be one Orion reserves"
    )
    assert str(refused(reading(x=Attribute(value=1, unit="MTR", metadata={"unitCode": "CMT"})))) == (
        f"{GAUGE}.x.metadata.unitCode: metadata is written by the converter (from observed_at / unit), got 'unitCode'"
    )
    assert str(refused(reading(x=Attribute(value=1, unit="m s")))) == (
        f"{GAUGE}.x: unit must be a UN/CEFACT common code such as MTR, CEL or P1, got 'm s'"
    )


def test_observed_at_needs_a_zone() -> None:
    r = Reading(
        entity_id=GAUGE,
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=1.0)},
        observed_at=datetime(2024, 5, 1, 9, 0),
        source=Source(adapter="river"),
    )
    assert str(refused(r)) == f"{GAUGE}: observed_at must carry a time zone, got 2024-05-01T09:00:00"


def test_the_cache_is_bounded_and_values_are_still_checked() -> None:
    checker = ReadingChecker(cache_size=2)
    for n in range(5):
        checker.check(reading(f"gauge{n}"), encoding=PCT)
    assert checker.cached_identities == 2
    checker.check(reading(), encoding=PCT)
    with pytest.raises(ReadingError, match="must be a finite number"):
        checker.check(reading(waterLevel=Attribute(value=math.nan, unit="MTR")), encoding=PCT)


def test_typing_helpers() -> None:
    samples: tuple[Any, ...] = (True, 1, 1.5, "a", None, {}, [])
    assert [ngsi_type("", v) for v in samples] == [
        "Boolean",
        "Number",
        "Number",
        "Text",
        "None",
        "StructuredValue",
        "StructuredValue",
    ]
    assert ngsi_type("Integer", 3) == "Integer"
    assert canonical_datetime("2024-05-01T09:00:00.1234+09:00") == "2024-05-01T00:00:00.123Z"


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, JST, timezone(timedelta(hours=-5, minutes=-30))]),
    )
)
def test_canonical_datetime_takes_its_own_output_unchanged_and_agrees_with_the_long_way(t: datetime) -> None:
    canonical = iso_utc(t)
    assert canonical_datetime(canonical) == canonical  # the shortcut
    assert canonical_datetime(t.isoformat()) == canonical  # the long way, from any offset
    assert canonical_datetime(canonical) == iso_utc(utc_instant(canonical))


@pytest.mark.parametrize(
    "text",
    [
        "2024-13-01T00:00:00.000Z",
        "2024-02-30T00:00:00.000Z",
        "2024-07-01T24:00:00.000Z",
        "2024-07-01T00:60:00.000Z",
        "2024-07-0xT00:00:00.000Z",
    ],
)
def test_canonical_looking_text_is_still_checked(text: str) -> None:
    with pytest.raises(ValueError, match="is not an ISO 8601 date and time"):
        canonical_datetime(text)
