"""Readings survive the buffer's encoding unchanged; values no broker can hold are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ReadingError
from gateway.records import (
    Attribute,
    Lane,
    Reading,
    Source,
    TimeSource,
    check_values,
    decode_reading,
    encode_reading,
    from_epoch_us,
    iso_utc,
    make_attribute,
    make_reading,
    to_epoch_us,
    with_seq,
)

chars = st.characters(exclude_categories=["Cs"])  # lone surrogates are not text


def text(**kw: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=chars, **kw)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text()
)
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(text(max_size=8), c, max_size=4), max_leaves=12
)
times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
attributes = st.builds(
    Attribute,
    value=json_values,
    type=st.sampled_from(["", "Number", "Text", "StructuredValue"]),
    unit=st.none() | st.sampled_from(["MTR", "CEL", "P1"]),
    metadata=st.dictionaries(text(min_size=1, max_size=8), json_values, max_size=2),
)
readings = st.builds(
    Reading,
    entity_id=text(min_size=1, max_size=40),
    entity_type=text(min_size=1, max_size=20),
    attributes=st.dictionaries(text(min_size=1, max_size=12), attributes, max_size=4),
    observed_at=times,
    time_source=st.sampled_from(TimeSource),
    source=st.builds(Source, adapter=text(max_size=10), device=text(max_size=10)),
    lane=st.sampled_from(Lane),
)


@settings(max_examples=200)
@given(readings)
def test_encode_decode_round_trip(r: Reading) -> None:
    back = decode_reading(encode_reading(r), seq=42)
    assert back.seq == 42
    assert back == Reading(**{**{f: getattr(r, f) for f in r.__dataclass_fields__}, "seq": 42})


@given(times)
def test_epoch_microseconds_round_trip(t: datetime) -> None:
    assert from_epoch_us(to_epoch_us(t)) == t


def test_iso_utc_converts_japan_time_to_z() -> None:
    jst = timezone(timedelta(hours=9))
    assert iso_utc(datetime(2026, 7, 1, 9, 0, 0, 123456, tzinfo=jst)) == "2026-07-01T00:00:00.123Z"


def test_naive_time_is_refused() -> None:
    with pytest.raises(ReadingError, match="observed_at: must carry a time zone, got naive 2026-01-01T00:00:00"):
        to_epoch_us(datetime(2026, 1, 1))


def _reading(value: object) -> Reading:
    return Reading(
        entity_id="gauge1",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=value)},
        observed_at=datetime.now(UTC),
        source=Source(adapter="sim"),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "gauge1.waterLevel: must be a finite number, got nan"),
        ({"a": [1.0, float("inf")]}, "gauge1.waterLevel.a[1]: must be a finite number, got inf"),
        (object(), "gauge1.waterLevel: must be JSON data (str, number, bool, null, list, object), got object"),
        ({1: "x"}, "gauge1.waterLevel: object keys must be strings, got 1"),
    ],
)
def test_values_no_broker_can_hold_are_refused(value: object, message: str) -> None:
    with pytest.raises(ReadingError) as err:
        check_values(_reading(value))
    assert str(err.value) == message


def test_deep_nesting_is_refused() -> None:
    value: object = 1
    for _ in range(52):
        value = [value]
    with pytest.raises(ReadingError, match="nesting deeper than 50 levels"):
        check_values(_reading(value))
    check_values(_reading([[[1.5, "ok", None, True]]]))


def test_text_that_is_not_unicode_is_refused_at_encoding() -> None:
    with pytest.raises(ReadingError, match="gauge1: value cannot be stored"):
        encode_reading(_reading("\ud800"))


def _iso_by_fields(t: datetime) -> str:
    u = t.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond // 1000:03d}Z"


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5))]),
    )
)
def test_iso_utc_fast_path_writes_the_same_text(t: datetime) -> None:
    assert iso_utc(t) == _iso_by_fields(t)
    assert iso_utc(t.replace(microsecond=0)) == _iso_by_fields(
        t.replace(microsecond=0)
    )  # isoformat drops a zero fraction


def test_conversion_caches_never_answer_for_another_time() -> None:
    a = datetime(2026, 7, 1, 0, 0, 0, 1000, tzinfo=UTC)
    b = datetime(2026, 7, 1, 0, 0, 0, 2000, tzinfo=UTC)
    assert [iso_utc(a), iso_utc(a), iso_utc(b)] == [
        "2026-07-01T00:00:00.001Z",
        "2026-07-01T00:00:00.001Z",
        "2026-07-01T00:00:00.002Z",
    ]
    assert [to_epoch_us(a), to_epoch_us(a), to_epoch_us(b)] == [1782864000001000, 1782864000001000, 1782864000002000]
    assert [from_epoch_us(1782864000001000), from_epoch_us(1782864000002000)] == [a, b]
    with pytest.raises(ReadingError, match="must carry a time zone"):
        to_epoch_us(a.replace(tzinfo=None))


@given(readings)
def test_fast_constructors_build_what_the_dataclass_init_builds(r: Reading) -> None:
    attrs = {name: make_attribute(a.value, a.type, a.unit, a.metadata) for name, a in r.attributes.items()}
    fast = make_reading(r.entity_id, r.entity_type, attrs, r.observed_at, r.time_source, r.source, r.lane, 7)
    assert fast == with_seq(r, 7) == Reading(**{**{f: getattr(r, f) for f in r.__dataclass_fields__}, "seq": 7})
    assert make_attribute(1) == Attribute(value=1)
    assert make_attribute(1).metadata is not make_attribute(1).metadata  # each its own dict, as default_factory gives
