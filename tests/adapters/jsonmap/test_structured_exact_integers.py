"""An integer a double would change, at any depth of a StructuredValue field, is refused, never sent rounded.

A Number field already held its integers to ±2^53 (the platform's doubles; see test_exact_integers), but a
StructuredValue field took its object as the parser gave it: an integer beyond 64 bits, which orjson gives
as a rounded float (or the exact parse as a LargeNumber, then settled to that float), passed check_reading
as a float and reached Orion and the NGSI-LD broker as another number (`{"count": 18446744073709551617}`
became `{"count": 1.8446744073709552e+19}`), unsaid. One in 2^53..2^64 was refused only later, by
check_reading, for the whole attribute, with its digits in clear. Now the field refuses both as bad_value,
naming the attribute and the place inside it, the digits masked; a number that is not an integer, or an
integer a double holds, arrives exactly as sent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.http_poll.config import ItemMapping
from adapters.http_poll.mapping import MalformedReason as PollReason
from adapters.http_poll.mapping import Mapper as PollMapper
from adapters.jsonmap.config import AttributeMapping, NgsiType
from adapters.jsonmap.decode import InexactNumber
from adapters.jsonmap.errors import FieldError, Problem
from adapters.jsonmap.numbers import LargeNumber
from adapters.jsonmap.values import coerce, compile_attribute
from adapters.mqtt.config import Subscription
from adapters.mqtt.mapping import Mapper as MqttMapper
from adapters.mqtt.mapping import MappingError
from gateway.ngsi.check import ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.ld import to_ld_entity
from gateway.ngsi.v2 import to_v2_entity
from gateway.records import Reading

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)
LIMIT = 2**53
PCT = ValueEncoding.PERCENT
WHY = "which Orion and the IoT Agents hold as a double (it would arrive as another number)"
FIX = 'map its path as an attribute of its own with type = "Text", or have the device send it as a JSON string'


def mqtt_mapper() -> MqttMapper:
    sub = Subscription.model_validate(
        {"topic": "things/+", "entity_id": "urn:ngsi-ld:Thing:{topic[1]}", "entity_type": "Thing",
         "attributes": [{"path": "status", "name": "status", "type": "StructuredValue"},
                        {"path": "serial", "name": "serial", "type": "Text", "missing": "skip"}]}
    )  # fmt: skip
    return MqttMapper([sub], adapter="m")


def sent(reading: Reading) -> tuple[Any, Any]:
    """The `status` value in the NGSI v2 and NGSI-LD bodies, read back with every integer exact."""
    ReadingChecker().check(reading, encoding=PCT)
    v2 = json.loads(orjson.dumps(to_v2_entity(reading, encoding=PCT)))
    ld = json.loads(orjson.dumps(to_ld_entity(reading, encoding=PCT, context=None)))
    return v2["status"]["value"], ld["status"]["value"]


@pytest.mark.parametrize(
    ("payload", "where", "got"),
    [
        # orjson gives it as the float 1.8446744073709552e+19
        (b'{"status": {"count": 18446744073709551617}}', "status.count", "<20 digits>"),
        # a Text field that reads a rounded integer sends the message to the exact parse: a LargeNumber here
        (b'{"status": {"count": 18446744073709551617}, "serial": 18446744073709551617}', "status.count", "<20 digits>"),
        # orjson gives this one as an int: check_reading refused it, for the whole attribute, digits in clear
        (b'{"status": {"count": 9007199254740993}}', "status.count", "<16 digits>"),
        (b'{"status": [1, {"total": -9223372036854775809}]}', "status[1].total", "-<19 digits>"),
        (b'{"status": {"a": {"b": [[9007199254740993]]}}}', "status.a.b[0][0]", "<16 digits>"),
        # a key that may be a card number is masked in the place as in the value
        (b'{"status": {"0012345678901": 9007199254740993}}', "status.<13 digits>", "<16 digits>"),
    ],
)
def test_the_mqtt_mapper_refuses_the_message_naming_the_place_inside_the_field(
    payload: bytes, where: str, got: str
) -> None:
    with pytest.raises(MappingError) as info:
        mqtt_mapper().map("things/dev1", payload, NOW)
    assert info.value.reason.value == "bad_value"
    assert str(info.value) == (
        f"things/dev1: payload.{where} (attribute status) is an integer beyond ±2^53, {WHY}, got {got}; {FIX}"
    )


def test_the_http_poll_mapper_drops_that_item_only() -> None:
    m = ItemMapping.model_validate(
        {"items": "st", "entity_id": "urn:ngsi-ld:Thing:{code}", "entity_type": "Thing",
         "attributes": [{"path": "status", "name": "status", "type": "StructuredValue"}]}
    )  # fmt: skip
    body = b'{"st": [{"code": "a", "status": {"count": 18446744073709551617}}, {"code": "b", "status": {"count": 7}}]}'
    result = PollMapper([m], adapter="p").map(body, NOW)
    assert [r.entity_id for r in result.readings] == ["urn:ngsi-ld:Thing:b"]
    [error] = result.errors
    assert error.reason is PollReason.BAD_VALUE
    assert (
        str(error)
        == f"st[0].status.count (attribute status): is an integer beyond ±2^53, {WHY}, got <20 digits>; {FIX}"
    )


def test_what_a_double_holds_arrives_exactly_as_sent() -> None:
    payload = b'{"status": {"count": 9007199254740992, "low": -9007199254740992, "f": 2.5e19, "g": -1e300, "x": [0.1]}}'
    [reading] = mqtt_mapper().map("things/dev1", payload, NOW)
    want = {"count": LIMIT, "low": -LIMIT, "f": 2.5e19, "g": -1e300, "x": [0.1]}
    assert sent(reading) == (want, want)
    assert type(reading.attributes["status"].value["count"]) is int


def test_the_field_asks_for_the_exact_parse_for_a_float_orjson_may_have_rounded() -> None:
    rule = compile_attribute(AttributeMapping(path="status", name="status", type=NgsiType.STRUCTURED_VALUE))
    with pytest.raises(InexactNumber) as info:
        coerce(rule, {"count": 1.8446744073709552e19}, TOKYO)
    # the refusal it says where the document cannot be read again: never the rounded float
    assert (info.value.problem, info.value.path_text) == (Problem.BAD_VALUE, "status.count")
    with pytest.raises(FieldError) as exact:
        coerce(rule, {"count": LargeNumber("18446744073709551617")}, TOKYO)
    assert type(exact.value) is FieldError and exact.value.problem is Problem.BAD_VALUE
    # a fraction beyond 2^63 from the exact parse is a float, as orjson gives it
    assert coerce(rule, {"f": LargeNumber("2.5e19")}, TOKYO) == {"f": LargeNumber("2.5e19")}


# ---------------------------------------------------------------------------------- every nested integer

# small ones, both sides of ±2^53, of 2^63 and of 2^64, and far beyond
INTEGERS = st.one_of(
    st.integers(-1000, 1000),
    st.integers(LIMIT - 2, LIMIT + 2),
    st.integers(2**63 - 2, 2**63 + 2),
    st.integers(2**64 - 2, 2**64 + 2),
    st.integers(10**25, 10**30),
).flatmap(lambda n: st.sampled_from([n, -n]))
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.one_of(INTEGERS, FLOATS, st.booleans(), st.none(), st.sampled_from(["ok", "水位"]))
KEYS = st.sampled_from(["count", "level", "a", "b", "観測所"])
NESTED = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
OBJECTS = st.one_of(st.dictionaries(KEYS, NESTED, max_size=5), st.lists(NESTED, max_size=5))


def integers_in(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in integers_in(v)]
    if isinstance(value, list):
        return [n for v in value for n in integers_in(v)]
    return [value] if type(value) is int else []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=OBJECTS, serial=st.sampled_from([None, "1", "18446744073709551617"]))
def test_a_nested_integer_is_never_sent_changed(value: Any, serial: str | None) -> None:
    """`serial`: a Text field reading a rounded integer sends the message through the exact parse."""
    doc = json.dumps({"status": value} if serial is None else {"status": value, "serial": int(serial)})
    try:
        [reading] = mqtt_mapper().map("things/dev1", doc.encode(), NOW)
    except MappingError as exc:
        refused: MappingError | None = exc
    else:
        refused = None
    beyond = [n for n in integers_in(value) if abs(n) > LIMIT]
    if refused is not None:
        assert beyond, str(refused)
        assert refused.reason.value == "bad_value"
        assert " (attribute status) is an integer beyond ±2^53, " in str(refused)
        assert all(str(abs(n))[:6] not in str(refused) for n in beyond)  # the digits stay masked
        return
    assert not beyond
    # within range: unchanged, integers still integers, in both bodies
    assert sent(reading) == (value, value)
    assert json.dumps(reading.attributes["status"].value) == json.dumps(value)
