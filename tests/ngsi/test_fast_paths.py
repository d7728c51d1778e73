"""The per-reading fast paths (a Number attribute already validated, time-keyed v2 parts, plain iota
measures) refuse exactly what the full paths refuse, even right after an accepted reading."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ReadingError
from gateway.ngsi import iota
from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.v2 import to_v2_entity
from gateway.records import Attribute, Reading, Source, iso_utc

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def gauge(value: object, *, at: datetime = T0, unit: str | None = "MTR", atype: str = "Number") -> Reading:
    return Reading(
        entity_id="urn:ngsi-ld:WaterObserved:hitoyoshi",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=value, type=atype, unit=unit)},
        observed_at=at,
        source=Source(adapter="river"),
    )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (float("nan"), "must be a finite number, got nan"),
        (float("inf"), "must be a finite number, got inf"),
        ("1.25", "type Number needs a number, got a string"),
        (True, "type Number needs a number, got a boolean"),
        (2**64, "integer is beyond ±2^53"),
    ],
)
def test_after_a_good_reading_the_same_attribute_still_refuses_bad_values(bad: object, message: str) -> None:
    check_reading(gauge(1.25), encoding=ValueEncoding.PERCENT)  # warms the cache of this entity/attribute
    with pytest.raises(ReadingError) as err:
        check_reading(gauge(bad), encoding=ValueEncoding.PERCENT)
    assert message in str(err.value)


def test_a_new_unit_on_a_known_attribute_is_checked_again() -> None:
    check_reading(gauge(1.25), encoding=ValueEncoding.PERCENT)
    with pytest.raises(ReadingError, match="unit"):
        check_reading(gauge(1.25, unit="m e t r e"), encoding=ValueEncoding.PERCENT)


def test_time_keyed_v2_parts_do_not_leak_between_entities() -> None:
    a = to_v2_entity(gauge(1.0), encoding=ValueEncoding.PERCENT)
    b = to_v2_entity(gauge(2.0), encoding=ValueEncoding.PERCENT)
    c = to_v2_entity(gauge(3.0, at=T0 + timedelta(seconds=1)), encoding=ValueEncoding.PERCENT)
    assert a["waterLevel"]["value"] == 1.0 and b["waterLevel"]["value"] == 2.0
    assert a["TimeInstant"]["value"] == b["TimeInstant"]["value"] == "2026-11-25T09:00:00.000Z"
    assert c["TimeInstant"]["value"] == "2026-11-25T09:00:01.000Z"
    assert c["waterLevel"]["metadata"]["TimeInstant"]["value"] == "2026-11-25T09:00:01.000Z"
    assert a["waterLevel"]["metadata"]["unitCode"] == {"type": "Text", "value": "MTR"}
    assert orjson.loads(orjson.dumps(a))["waterLevel"]["metadata"]["TimeInstant"]["value"] == "2026-11-25T09:00:00.000Z"


def test_plain_iota_measures_match_the_general_rendering() -> None:
    plain = gauge(1.25)
    text = Reading(
        entity_id=plain.entity_id,
        entity_type=plain.entity_type,
        attributes={
            "waterLevel": Attribute(value=1.25, type="Number"),
            "station": Attribute(value="人吉(水の手橋)", type="Text"),
        },
        observed_at=T0,
        source=plain.source,
    )
    assert orjson.loads(iota.json_measure_bytes(plain, encoding=ValueEncoding.PERCENT)) == {
        "waterLevel": 1.25,
        "TimeInstant": "2026-11-25T09:00:00.000Z",
    }
    assert orjson.loads(iota.json_measure_bytes(text, encoding=ValueEncoding.PERCENT)) == {
        "waterLevel": 1.25,
        "station": "人吉%28水の手橋%29",
        "TimeInstant": "2026-11-25T09:00:00.000Z",
    }


@pytest.mark.parametrize("bad", ["2026-13-25T09:00:00.000Z", "2026-02-30T09:00:00.000Z", "2026-11-25T09:00:00.000+"])
def test_a_date_in_orions_form_is_still_refused_when_it_is_no_date(bad: str) -> None:
    check_reading(gauge("2026-11-25T09:00:00.000Z", unit=None, atype="DateTime"), encoding=ValueEncoding.PERCENT)
    with pytest.raises(ReadingError, match="DateTime"):
        check_reading(gauge(bad, unit=None, atype="DateTime"), encoding=ValueEncoding.PERCENT)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=9))]),
    )
)
def test_a_date_in_orions_form_renders_as_the_long_way_renders_any_other_form(t: datetime) -> None:
    canonical = gauge(iso_utc(t), unit=None, atype="DateTime")  # the fast path
    other = gauge(t.isoformat(), unit=None, atype="DateTime")  # the full path: converted to UTC
    for r in (canonical, other):
        check_reading(r, encoding=ValueEncoding.PERCENT)
    assert to_v2_entity(canonical, encoding=ValueEncoding.PERCENT) == to_v2_entity(
        other, encoding=ValueEncoding.PERCENT
    )


_scalars = st.one_of(
    st.integers(),
    st.booleans(),
    st.floats(),  # NaN and ±Infinity included: both paths must refuse them alike
    st.text(alphabet=st.sampled_from("ab水%\"'();<=> ")),
    st.none(),
)
_values = st.one_of(
    _scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.sampled_from(["k", "(k)"]), _scalars, max_size=2)
)


@given(
    attributes=st.dictionaries(
        st.sampled_from(["level", "dev", "controlledProperty", "TimeInstant", "t"]),
        st.tuples(_values, st.booleans()),
        max_size=4,
    ),
    encoding=st.sampled_from(list(ValueEncoding)),
)
def test_the_iota_json_fast_path_renders_and_refuses_exactly_as_the_full_path(
    attributes: dict[str, tuple[object, bool]], encoding: ValueEncoding
) -> None:
    reading = Reading(
        entity_id="urn:ngsi-ld:Device:d1",
        entity_type="Device",
        attributes={
            name: Attribute(value=value, type="Text", metadata={"m": {"value": 1}} if meta else {})
            for name, (value, meta) in attributes.items()
        },
        observed_at=T0,
        source=Source(adapter="a"),
        seq=7,
    )

    def full() -> dict[str, Any]:  # the reference: the whole check, then the general rendering
        iota._check_reading(reading)
        return iota._json_measure(reading, encoding, "seq")

    def outcome(render: Callable[[], dict[str, Any]]) -> object:
        try:
            return render()
        except ReadingError as exc:
            return ("refused", str(exc))

    assert outcome(lambda: iota.json_measure(reading, encoding=encoding, sequence="seq")) == outcome(full)


def _device(attributes: dict[str, Attribute]) -> Reading:
    return Reading(
        entity_id="urn:ngsi-ld:Device:d001",
        entity_type="Device",
        attributes={"level": Attribute(value=1.5, type="Number"), **attributes},
        observed_at=T0,
        source=Source(adapter="race"),
    )


def test_a_shared_structured_attribute_passes_once_and_its_look_alikes_are_still_checked() -> None:
    """The checker's identity shortcut for an adapter's constant attribute (controlledProperty) skips only
    that very object under the same encoding; anything else with a list or object value is checked."""
    shared = Attribute(value=["level", "<script>"], type="StructuredValue")
    check_reading(_device({"controlledProperty": shared}), encoding=ValueEncoding.PERCENT)
    check_reading(_device({"controlledProperty": shared}), encoding=ValueEncoding.PERCENT)
    # the same object under `reject`: its banned characters are found, not skipped
    with pytest.raises(ReadingError, match="which Orion refuses"):
        check_reading(_device({"controlledProperty": shared}), encoding=ValueEncoding.REJECT)
    # an equal-looking new object with a bad value right after the shared one passed
    check_reading(_device({"controlledProperty": shared}), encoding=ValueEncoding.PERCENT)
    bad = Attribute(value=["level", float("nan")], type="StructuredValue")
    with pytest.raises(ReadingError, match="finite"):
        check_reading(_device({"controlledProperty": bad}), encoding=ValueEncoding.PERCENT)
    # the same object under an NGSI-LD geo name is still refused for not being geo:json
    ok = Attribute(value={"kind": "pump"}, type="StructuredValue")
    check_reading(_device({"meta": ok}), encoding=ValueEncoding.PERCENT)
    with pytest.raises(ReadingError, match="must be of type geo:json"):
        check_reading(_device({"location": ok}), encoding=ValueEncoding.PERCENT)
    # a shared geo:json location is counted every time: two of them are still one too many
    point = Attribute(value={"type": "Point", "coordinates": [130.7, 32.2]}, type="geo:json")
    check_reading(_device({"location": point}), encoding=ValueEncoding.PERCENT)
    with pytest.raises(ReadingError, match="more than one geo:json location"):
        check_reading(_device({"location": point, "where": point}), encoding=ValueEncoding.PERCENT)


def test_a_shared_list_is_sent_verbatim_and_a_new_list_right_after_is_encoded() -> None:
    """The iota fast path's identity shortcut for an adapter's constant list skips only that very list."""
    shared = Attribute(value=["level"], type="StructuredValue")
    for _ in range(2):
        measure = iota.json_measure(_device({"controlledProperty": shared}), encoding=ValueEncoding.PERCENT)
        assert measure["controlledProperty"] == ["level"]
    odd = Attribute(value=["level", "50%<x"], type="StructuredValue")
    measure = iota.json_measure(_device({"controlledProperty": odd}), encoding=ValueEncoding.PERCENT)
    assert measure["controlledProperty"] == ["level", "50%25%3Cx"]
    iota.json_measure(_device({"controlledProperty": shared}), encoding=ValueEncoding.REJECT)
    with pytest.raises(ReadingError, match="<"):
        iota.json_measure(_device({"controlledProperty": odd}), encoding=ValueEncoding.REJECT)
