"""Property tests of the sans-I/O mapping: any topic and any bytes give Readings or a MappingError."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.jsonmap.numbers import INTEGER_TEXT_RE, number_text
from adapters.mqtt.config import Subscription
from adapters.mqtt.mapping import MalformedReason, Mapper, MappingError
from gateway.ngsi.check import EXACT_INTEGER_MAX
from gateway.ngsi.identifiers import check_entity_id, check_entity_type
from gateway.records import Reading, TimeSource
from tests.adapters.mqtt.casefiles import case_names, load_case

MAPPERS = [Mapper(c.config.subscriptions, adapter=c.config.name) for c in map(load_case, case_names())]
NOW = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)

KEYS = st.sampled_from(
    [
        "temperature",
        "humidity",
        "contact",
        "battery",
        "Time",
        "AM2301",
        "Temperature",
        "Humidity",
        "object",
        "deviceInfo",
        "devEui",
        "time",
        "station",
        "ts",
        "level_mm",
        "raw",
        "distance_cm",
        "rxInfo",
        "rssi",
        "x",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        ["2024-05-01T12:00:00", "2024-05-01T03:00:00.5Z", "1970-01-01T00:00:00", "9999-12-31T23:59:59+14:00"]
    )
)
# Tasmota and many bridges quote their numbers: these map as numbers, "NaN" and "1e999" do not
NUMERIC_TEXT = st.sampled_from(["24.0", " -7 ", "1e3", "２３", "NaN", "Infinity", "1e999", "24.0 C", ""])
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS | st.text(max_size=5), inner, max_size=6),
    max_leaves=25,
)
TOPICS = st.one_of(
    st.text(max_size=40),
    st.builds(
        "/".join,
        st.lists(
            st.sampled_from(
                [
                    "zigbee2mqtt",
                    "tele",
                    "SENSOR",
                    "river",
                    "application",
                    "device",
                    "event",
                    "up",
                    "",
                    "+",
                    "#",
                    "a b",
                    "dev-1",
                    "$SYS",
                    "é",
                ]
            ),
            min_size=1,
            max_size=7,
        ),
    ),
)
PAYLOADS = st.one_of(st.binary(max_size=80), JSON.map(lambda v: json.dumps(v).encode()))


def check_reading(r: Reading, topic: str) -> None:
    check_entity_id(r.entity_id)
    check_entity_type(r.entity_type)
    assert r.attributes, "a reading without attributes is never produced"
    assert r.observed_at.tzinfo is not None
    assert r.source.device == topic
    for a in r.attributes.values():
        if isinstance(a.value, float):
            assert math.isfinite(a.value)


@settings(max_examples=400, deadline=None)
@given(topic=TOPICS, payload=PAYLOADS, which=st.integers(0, len(MAPPERS) - 1))
def test_anything_in_gives_readings_or_a_typed_error(topic: str, payload: bytes, which: int) -> None:
    try:
        readings = MAPPERS[which].map(topic, payload, NOW)
    except MappingError as exc:
        assert isinstance(exc.reason, MalformedReason)  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        assert str(exc).startswith(f"{topic}: ")  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        return
    assert readings
    for r in readings:
        check_reading(r, topic)


def as_number(v: Any, scale: str | None = None) -> float | int | None:
    """What a Number attribute holds for `v` times `scale`: JSON numbers, and numeric strings read, scaled
    exactly; None if refused: a value no double holds, or an integer that stays an integer beyond ±2^53 once
    scaled (the platform would get another number; 2^53 + 1 percent is a ratio a double holds)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    if isinstance(v, float) and scale is None:
        return v
    exact = number_text(v) if isinstance(v, str) else Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    if exact is None:
        return None
    integer = isinstance(v, int) or (isinstance(v, str) and INTEGER_TEXT_RE.match(v) is not None)
    try:
        scaled = exact * Decimal(scale) if scale is not None else exact
    except ArithmeticError:  # beyond even Decimal's range
        return None
    if integer and scaled == scaled.to_integral_value():
        return int(scaled) if abs(scaled) <= EXACT_INTEGER_MAX else None
    f = float(scaled)
    return f if math.isfinite(f) else None


@settings(max_examples=200, deadline=None)
@given(
    time=st.sampled_from(["2024-05-01T12:00:00", "2024-05-01T12:00:00+09:00", "", "12:00", "1999-12-31T23:59:59Z"]),
    sensor=st.none() | st.fixed_dictionaries({"Temperature": SCALARS | NUMERIC_TEXT, "Humidity": SCALARS}),
    topic_name=st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
)
# beyond ±2^53 as percent: a ratio a double holds, then an integer ratio it does not
@example(time="2024-05-01T12:00:00", sensor={"Temperature": 0, "Humidity": 2**53 + 1}, topic_name="a")
@example(time="2024-05-01T12:00:00", sensor={"Temperature": 0, "Humidity": 100 * (2**53 + 1)}, topic_name="a")
def test_tasmota_shaped_payloads_map_exactly_when_valid(time: str, sensor: Any, topic_name: str) -> None:
    payload = {"Time": time, "AM2301": sensor}
    # the case's Humidity is percent, scaled to the 0..1 ratio the Smart Data Models use
    values = None if sensor is None else (as_number(sensor["Temperature"]), as_number(sensor["Humidity"], "0.01"))
    valid = time.startswith("2024") and values is not None and None not in values
    mapper = MAPPERS[case_names().index("tasmota_sensor")]
    try:
        readings = mapper.map(f"tele/{topic_name}/SENSOR", json.dumps(payload).encode(), NOW)
    except MappingError:
        assert not valid
        return
    assert valid
    assert values is not None
    (r,) = readings
    assert r.entity_id == f"urn:ngsi-ld:WeatherObserved:{topic_name}"
    assert r.observed_at == datetime(2024, 5, 1, 3, tzinfo=UTC)
    assert {k: a.value for k, a in r.attributes.items()} == {
        "temperature": values[0],
        "relativeHumidity": values[1],
        "dateObserved": "2024-05-01T03:00:00.000Z",
    }


@settings(max_examples=200, deadline=None)
@given(
    # NOW less the largest negative offset: at most 15 min ahead (adapters/jsonmap/timestamps.py MAX_AHEAD)
    when=st.datetimes(min_value=datetime(2000, 1, 1, 15), max_value=datetime(2024, 4, 30, 15)),
    offset_min=st.integers(-12 * 60, 14 * 60),
    temperature=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
)
def test_iso_times_with_offsets_map_to_the_same_instant(when: datetime, offset_min: int, temperature: float) -> None:
    aware = when.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    payload = {"Time": aware.isoformat(), "AM2301": {"Temperature": temperature, "Humidity": 50}}
    (r,) = MAPPERS[case_names().index("tasmota_sensor")].map("tele/a/SENSOR", json.dumps(payload).encode(), NOW)
    assert r.observed_at == aware
    assert r.time_source is TimeSource.DEVICE
    assert r.attributes["temperature"].value == temperature


@settings(max_examples=100, deadline=None)
@given(naive=st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2024, 5, 1, 12)))
def test_times_without_offset_are_read_in_the_configured_zone(naive: datetime) -> None:
    payload = {"Time": naive.isoformat(), "AM2301": {"Temperature": 1, "Humidity": 2}}
    (r,) = MAPPERS[case_names().index("tasmota_sensor")].map("tele/a/SENSOR", json.dumps(payload).encode(), NOW)
    assert r.observed_at == naive.replace(tzinfo=timezone(timedelta(hours=9)))  # Asia/Tokyo has no DST


STRUCTURED = Mapper(
    [
        Subscription.model_validate(
            {
                "topic": "things/+",
                "entity_id": "urn:ngsi-ld:Thing:{topic[1]}",
                "entity_type": "Thing",
                "attributes": [
                    {"path": "meta", "name": "meta", "type": "StructuredValue"},
                    {"path": "seen", "name": "lastSeen", "type": "DateTime", "missing": "skip"},
                ],
            }
        )
    ],
    adapter="t",
)


def _integers(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _integers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _integers(v)]
    return [value] if type(value) is int else []


@settings(max_examples=200, deadline=None)
@given(meta=JSON, seen=SCALARS)
def test_structured_and_datetime_values(meta: Any, seen: Any) -> None:
    payload = json.dumps({"meta": meta, "seen": seen}).encode()
    try:
        (r,) = STRUCTURED.map("things/a", payload, NOW)
    except MappingError as exc:
        if exc.reason is MalformedReason.BAD_VALUE:
            # an integer a double would change, at any depth: refused, never sent rounded
            assert any(abs(n) > 2**53 for n in _integers(meta))
            return
        assert exc.reason in (MalformedReason.MISSING_FIELD, MalformedReason.WRONG_TYPE, MalformedReason.BAD_TIMESTAMP)  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        assert not isinstance(meta, (dict, list)) or seen is not None
        return
    assert r.attributes["meta"].value == meta
    assert all(abs(n) <= 2**53 for n in _integers(meta))
    if "lastSeen" in r.attributes:
        assert r.attributes["lastSeen"].value.endswith("Z")


def test_nesting_deeper_than_orion_allows_is_a_bad_value() -> None:
    deep: Any = 1
    for _ in range(60):
        deep = [deep]
    with pytest.raises(MappingError) as info:
        STRUCTURED.map("things/a", json.dumps({"meta": deep}).encode(), NOW)
    assert info.value.reason is MalformedReason.BAD_VALUE
    assert str(info.value).startswith("things/a: urn:ngsi-ld:Thing:a.meta")
    assert str(info.value).endswith(": nesting deeper than 50 levels, Orion refuses it")


def test_datetime_attribute_is_normalised_to_utc() -> None:
    (r,) = STRUCTURED.map("things/a", b'{"meta": {}, "seen": "2024-05-01T12:00:00.5+09:00"}', NOW)
    assert r.attributes["lastSeen"].value == "2024-05-01T03:00:00.500Z"
    assert r.attributes["lastSeen"].type == "DateTime"


def _ids_mapper(entity_id: str, entity_type: str = "Thing", topic: str = "ids/+") -> Mapper:
    sub = {
        "topic": topic,
        "entity_id": entity_id,
        "entity_type": entity_type,
        "attributes": [{"path": "n", "name": "n"}],
    }
    return Mapper([Subscription.model_validate(sub)], adapter="t")


TOPIC_IDS = _ids_mapper("urn:ngsi-ld:Thing:{topic[1]}")


@settings(max_examples=300, deadline=None)
@given(level=st.text(max_size=12).filter(lambda s: "/" not in s and "+" not in s and "#" not in s), n=st.integers(0, 9))
def test_ids_from_the_topic_are_rendered_once_a_topic_and_refused_every_time(level: str, n: int) -> None:
    """The per-topic cache of topic-only ids gives what rendering each message gave: the id, or the same
    BAD_ID refusal on every message of that topic (never a refusal cached as an id)."""
    topic = f"ids/{level}"
    expected = f"urn:ngsi-ld:Thing:{level}"
    try:
        check_entity_id(expected)
    except ValueError:
        valid = False
    else:
        valid = True
    for k in range(3):  # the first message plans the topic, the later ones take the plan
        payload = json.dumps({"n": n + k}).encode()
        if valid:
            (r,) = TOPIC_IDS.map(topic, payload, NOW)
            assert (r.entity_id, r.entity_type, r.attributes["n"].value) == (expected, "Thing", n + k)
        else:
            with pytest.raises(MappingError) as info:
                TOPIC_IDS.map(topic, payload, NOW)
            assert info.value.reason is MalformedReason.BAD_ID
            assert "{topic[1]}" in str(info.value)


def test_ids_that_read_the_payload_are_rendered_for_each_message() -> None:
    mapper = _ids_mapper("urn:ngsi-ld:Thing:{topic[1]}-{payload.unit}", entity_type="{payload.kind}")
    first = mapper.map("ids/a", b'{"n": 1, "unit": "u1", "kind": "Pump"}', NOW)
    second = mapper.map("ids/a", b'{"n": 2, "unit": "u2", "kind": "Valve"}', NOW)
    assert [(r.entity_id, r.entity_type) for r in first + second] == [
        ("urn:ngsi-ld:Thing:a-u1", "Pump"),
        ("urn:ngsi-ld:Thing:a-u2", "Valve"),
    ]
    with pytest.raises(MappingError) as info:
        mapper.map("ids/a", b'{"n": 3, "unit": "u3"}', NOW)  # no kind: the type cannot be rendered
    assert info.value.reason is MalformedReason.MISSING_FIELD


def test_a_topic_too_short_for_the_id_template_is_refused_on_every_message() -> None:
    mapper = _ids_mapper("urn:ngsi-ld:Thing:{topic[3]}", topic="ids/#")
    for n in range(3):
        with pytest.raises(MappingError, match=r"needs \{topic\[3\]\}, got a topic of 2 levels") as info:
            mapper.map("ids/a", b'{"n": %d}' % n, NOW)
        assert info.value.reason is MalformedReason.MISSING_FIELD
    (r,) = mapper.map("ids/a/b/c", b'{"n": 3}', NOW)  # a deep enough topic of the same filter maps
    assert r.entity_id == "urn:ngsi-ld:Thing:c"
