"""A Number field's integer that the platform cannot carry exactly is refused for its field, never rounded.

Orion holds a Number as a C double and the IoT Agents JSON.parse it, so beyond ±2^53 an integer arrives
as another number; check_reading refuses such integers (gateway/ngsi/check.py). The JSON mapping had
three ways around that rule: an integer beyond 64 bits (which orjson gives as a rounded float, or the
exact parse as a LargeNumber) became that float; an integer written as text ("9007199254740993")
became the nearest float; and an integer times an integral scale became a float once beyond 2^53. Each
passed check_reading as a float and reached the platform as another number, unsaid. Now every integer
a Number field produces is held to check_reading's rule, at the field: the item or message is dropped
as bad_value naming the field and why, the digits masked (a serial may be a card number), counted and
logged like every other malformed value.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.http_poll.config import ItemMapping
from adapters.http_poll.mapping import MalformedReason as PollReason
from adapters.http_poll.mapping import Mapper as PollMapper
from adapters.jsonmap.config import AttributeMapping
from adapters.jsonmap.decode import InexactNumber
from adapters.jsonmap.errors import FieldError, Problem
from adapters.jsonmap.numbers import LargeNumber
from adapters.jsonmap.values import AttributeRule, coerce, compile_attribute
from adapters.mqtt.config import Subscription
from adapters.mqtt.mapping import Mapper as MqttMapper
from adapters.mqtt.mapping import MappingError
from gateway.errors import ReadingError
from gateway.ngsi.check import ReadingChecker
from gateway.ngsi.config import ValueEncoding
from tests.adapters.mqtt.peers import Sink, counter_config, publish, running, wait_for
from tests.support.mosquitto import MosquittoBroker

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)
LIMIT = 2**53
WHY = "which Orion and the IoT Agents hold as a double (it would arrive as another number)"
FIX = 'map it with type = "Text" to send its digits'


def rule(scale: float | None = None) -> AttributeRule:
    return compile_attribute(AttributeMapping(path="v", name="v", scale=scale))


def refusal(raw: Any, scale: float | None = None) -> tuple[Problem, str]:
    with pytest.raises(FieldError) as info:
        coerce(rule(scale), raw, TOKYO)
    return info.value.problem, str(info.value)


@pytest.mark.parametrize(
    ("raw", "got"),
    [
        (LIMIT + 1, "<16 digits>"),
        (-LIMIT - 1, "-<16 digits>"),
        (2**64 - 1, "<20 digits>"),  # the largest integer orjson gives as an int
        (LargeNumber("18446744073709551617"), "<20 digits>"),  # beyond 64 bits, as the exact parse keeps it
        (LargeNumber("-" + "9" * 300), "-<300 digits>"),  # within a double's range (beyond it: out of range)
        ("9007199254740993", "'<16 digits>'"),  # an integer written as text
        (" -9007199254740993 ", "' -<16 digits> '"),
    ],
)
def test_an_integer_beyond_2_53_is_refused_naming_the_field_and_why(raw: Any, got: str) -> None:
    assert refusal(raw) == (Problem.BAD_VALUE, f"v (attribute v): is an integer beyond ±2^53, {WHY}, got {got}; {FIX}")


@pytest.mark.parametrize(("raw", "scale"), [(LIMIT // 2 + 1, 2.0), (2**50 + 1, 1000.0), ("4503599627370497", 2.0)])
def test_an_integer_scaled_beyond_2_53_is_refused_too(raw: Any, scale: float) -> None:
    problem, message = refusal(raw, scale)
    assert problem is Problem.BAD_VALUE
    assert message.startswith(f"v (attribute v): is an integer beyond ±2^53 after scaling, {WHY}, got ")
    assert message.endswith(f"; {FIX}, or a smaller scale")


def test_a_float_orjson_may_have_rounded_from_an_integer_asks_for_the_exact_parse() -> None:
    for scale in (None, 0.001):
        with pytest.raises(InexactNumber) as info:
            coerce(rule(scale), 1.8446744073709552e19, TOKYO)
        # a refusal all the same where the document cannot be read again: never the rounded float
        assert info.value.problem is Problem.BAD_VALUE
        assert str(info.value) == (
            "v (attribute v): is a number beyond ±2^63 that cannot be read exactly (it may be an integer beyond"
            " 64 bits), got <1 digit>.<16 digits>e+<2 digits>; send it as a JSON string, or as a smaller number"
        )


@pytest.mark.parametrize(
    ("raw", "scale", "value"),
    [
        (LIMIT, None, LIMIT),  # a double holds every integer up to 2^53 itself
        (-LIMIT, None, -LIMIT),
        ("9007199254740992", None, LIMIT),
        (LIMIT // 2, 2.0, LIMIT),
        (LargeNumber("123456789000000000000000000000"), 1e-20, 1234567890),  # scaled back into range, exactly
        (LargeNumber("2.5e19"), None, 2.5e19),  # written as a float: a float, as any other
        (2**60 + 1, 0.001, 1152921504606846.977),  # a fraction once scaled: a measurement, not an integer
    ],
)
def test_what_a_double_holds_is_kept(raw: Any, scale: float | None, value: Any) -> None:
    got = coerce(rule(scale), raw, TOKYO)
    assert (type(got), got) == (type(value), value)


# ------------------------------------------------------------------- every integer, through a real mapper

# small ones, both sides of 2^53, of 2^63 and of 2^64, far beyond, and their negatives
INTEGERS = st.one_of(
    st.integers(-1000, 1000),
    st.integers(LIMIT - 3, LIMIT + 3),
    st.integers(2**63 - 3, 2**63 + 3),
    st.integers(2**64 - 3, 2**64 + 3),
    st.integers(-(10**30), 10**30),
    st.integers(10**40, 10**60),
).flatmap(lambda n: st.sampled_from([n, -n]))


def poll_mapper(scale: float | None = None) -> PollMapper:
    level: dict[str, Any] = {"path": "n", "name": "count"}
    if scale is not None:
        level["scale"] = scale
    m = ItemMapping.model_validate(
        {"items": "st", "entity_id": "urn:ngsi-ld:Thing:{code}", "entity_type": "Thing", "attributes": [level]}
    )
    return PollMapper([m], adapter="p")


@settings(max_examples=400, deadline=None)
@given(n=INTEGERS, quoted=st.booleans(), beside=st.sampled_from(["", ', "x": 1e400']))
def test_any_integer_arrives_exactly_or_is_refused_for_its_field(n: int, quoted: bool, beside: str) -> None:
    """`beside`: a number orjson refuses elsewhere in the document sends it to the exact parse."""
    literal = f'"{n}"' if quoted else str(n)
    body = f'{{"st": [{{"code": "a", "n": {literal}{beside}}}, {{"code": "b", "n": 1}}]}}'.encode()
    result = poll_mapper().map(body, NOW)
    readings = {r.entity_id.rsplit(":", 1)[1]: r for r in result.readings}
    assert readings["b"].attributes["count"].value == 1  # the other item maps whatever this one holds
    if quoted and len(str(n)) > 64:
        return  # not a measurement: wrong_type, as before
    if abs(n) <= LIMIT:
        value = readings["a"].attributes["count"].value
        assert (type(value), value) == (int, n)
        ReadingChecker().check(readings["a"], encoding=ValueEncoding.PERCENT)
        return
    assert "a" not in readings
    [error] = result.errors
    assert error.reason is PollReason.BAD_VALUE
    assert str(error).startswith("st[0].n (attribute count): is an integer beyond ±2^53, ")
    assert str(abs(n))[:6] not in str(error)  # the digits stay masked


@settings(max_examples=200, deadline=None)
@given(n=INTEGERS, scale=st.sampled_from([0.001, 0.5, 2.0, 1000.0]))
def test_what_a_scaled_integer_gives_check_reading_takes_as_is(n: int, scale: float) -> None:
    """No value a Number field gives is one check_reading would refuse or a double would change."""
    exact = Decimal(n) * Decimal(repr(scale))
    integral = exact == exact.to_integral_value()
    raw = n if -(2**63) <= n < 2**64 else LargeNumber(str(n))
    if integral and abs(exact) > LIMIT:
        assert refusal(raw, scale)[0] is Problem.BAD_VALUE
        return
    value = coerce(rule(scale), raw, TOKYO)
    if integral:
        assert (type(value), value) == (int, exact)
    else:
        assert (type(value), value) == (float, float(exact))


def mqtt_mapper() -> MqttMapper:
    sub = Subscription.model_validate(
        {"topic": "things/+", "entity_id": "urn:ngsi-ld:Thing:{topic[1]}", "entity_type": "Thing",
         "attributes": [{"path": "n", "name": "count"}]}
    )  # fmt: skip
    return MqttMapper([sub], adapter="m")


@pytest.mark.parametrize(
    "payload", [b'{"n": 9007199254740993}', b'{"n": 18446744073709551617}', b'{"n": "-9007199254740993"}']
)
def test_the_mqtt_mapper_refuses_the_message_as_bad_value(payload: bytes) -> None:
    with pytest.raises(MappingError) as info:
        mqtt_mapper().map("things/dev1", payload, NOW)
    assert info.value.reason.value == "bad_value"
    assert str(info.value).startswith("things/dev1: payload.n (attribute count) is an integer beyond ±2^53, ")


async def test_the_adapter_counts_and_logs_the_refusal_and_keeps_going(
    mosquitto_private: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink()
    messages = [
        ("test/dev1", b'{"n": 1}'),
        ("test/dev1", b'{"n": 18446744073709551617}'),  # orjson would give 1.8446744073709552e+19
        ("test/dev1", b'{"n": 9007199254740993}'),
        ("test/dev1", b'{"n": 9007199254740992}'),
    ]
    with caplog.at_level(logging.WARNING):
        async with running(counter_config(mosquitto_private, "exactint"), sink) as adapter:
            await publish(mosquitto_private, messages)
            await wait_for(lambda: adapter.received == 4 and adapter.in_flight == 0, what="all messages acked")
    assert sink.values() == [1, LIMIT]
    assert dict(adapter.malformed) == {"bad_value": 2}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "payload.n (attribute n) is an integer beyond ±2^53" in logged
    assert "18446744073709551617" not in logged and "9007199254740993" not in logged
    # what did reach the buffer, check_reading takes unchanged
    for r in sink.readings:
        ReadingChecker().check(r, encoding=ValueEncoding.PERCENT)


def test_check_reading_says_the_same_for_an_integer_beyond_64_bits() -> None:
    """One rule, one reason: check_reading no longer calls 2^64 merely out of the 64-bit range."""
    from gateway.records import Attribute, Reading, Source

    r = Reading(
        entity_id="urn:ngsi-ld:Thing:a",
        entity_type="Thing",
        attributes={"count": Attribute(value=2**64, type="Number")},
        observed_at=NOW,
        source=Source(adapter="p"),
    )
    with pytest.raises(ReadingError) as info:
        ReadingChecker().check(r, encoding=ValueEncoding.PERCENT)
    assert str(info.value) == (
        f"urn:ngsi-ld:Thing:a.count: integer is beyond ±2^53, {WHY}, got 18446744073709551616;"
        " declare the attribute Text and send the digits as a string, or scale it at the source"
    )
