"""Numbers orjson cannot give as written, in MQTT payloads: a message maps as a whole (README "Readings
produced"), so an out-of-range value in a mapped field drops the message as bad_value naming that field,
never as "not JSON"; one in a field nobody maps costs nothing; Text and ids take an integer's exact digits."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mqtt.config import Subscription
from adapters.mqtt.mapping import MalformedReason, Mapper, MappingError
from gateway.records import encode_reading
from tests.adapters.mqtt.peers import Sink, counter_config, publish, running, wait_for
from tests.support.mosquitto import MosquittoBroker

NOW = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
TOPIC = "things/dev1"


def mapper(*attributes: dict[str, Any], entity_id: str = "urn:ngsi-ld:Thing:{topic[1]}") -> Mapper:
    sub = Subscription.model_validate(
        {"topic": "things/+", "entity_id": entity_id, "entity_type": "Thing", "attributes": list(attributes)}
    )
    return Mapper([sub], adapter="m")


LEVEL = {"path": "lvl", "name": "waterLevel", "unit": "MTR"}
SERIAL = {"path": "serial", "name": "serialNumber", "type": "Text"}


def refusal(m: Mapper, payload: bytes) -> tuple[str, str]:
    with pytest.raises(MappingError) as info:
        m.map(TOPIC, payload, NOW)
    return info.value.reason.value, str(info.value)


def test_an_out_of_range_value_drops_the_message_as_bad_value_naming_the_field() -> None:
    assert refusal(mapper(LEVEL), b'{"lvl": 1e400}') == (
        "bad_value",
        "things/dev1: payload.lvl (attribute waterLevel) is out of range, got <1 digit>e<3 digits>",
    )
    assert refusal(mapper(LEVEL, SERIAL), b'{"lvl": 1.5, "serial": -1e400}') == (
        "bad_value",
        "things/dev1: payload.serial (attribute serialNumber) is a number out of range, got -<1 digit>e<3 digits>; "
        "send it as a JSON string",
    )


def test_an_out_of_range_value_in_a_field_nobody_maps_costs_nothing() -> None:
    (r,) = mapper(LEVEL).map(TOPIC, b'{"lvl": 2.5, "rssi": 1e400, "snr": [1, 2e999]}', NOW)
    assert r.attributes["waterLevel"].value == 2.5


def test_a_quoted_exponent_beyond_decimals_range_with_a_scale_is_bad_value_not_a_crash() -> None:
    # decimal.Overflow used to leave the mapper: the adapter stopped, the broker redelivered, for ever
    assert refusal(mapper({**LEVEL, "scale": 0.1}), b'{"lvl": "1e999999999"}') == (
        "bad_value",
        "things/dev1: payload.lvl (attribute waterLevel) is out of range after scaling, got '<11 chars>'",
    )


@pytest.mark.parametrize(
    "payload",
    [b'{"lvl": 1e400, "x": NaN}', b'{"lvl": 1e400, "x": "\\udc00"}', b'{"lvl": 1e400,}', b'{"lvl": 1e400}\xff'],
    ids=["nan", "lone_surrogate", "trailing_comma", "not_utf8"],
)
def test_a_payload_that_is_no_json_for_another_reason_is_still_not_json(payload: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError) as refused:
        orjson.loads(payload)
    reason, message = refusal(mapper(LEVEL), payload)
    assert reason == "not_json"
    assert message.startswith(f"things/dev1: payload is not JSON (invalid at character {refused.value.pos}), got ")


@pytest.mark.parametrize("extra", ["", ', "x": 1e400'], ids=["orjson", "fallback"])
@pytest.mark.parametrize("serial", ["18446744073709551616", "-9223372036854775809", "9" * 30, "12"])
def test_text_and_ids_take_an_integers_exact_digits(serial: str, extra: str) -> None:
    m = mapper(SERIAL, entity_id="urn:ngsi-ld:Thing:{payload.serial}")
    (r,) = m.map(TOPIC, f'{{"serial": {serial}{extra}}}'.encode(), NOW)
    assert (r.entity_id, r.attributes["serialNumber"].value) == (f"urn:ngsi-ld:Thing:{serial}", serial)


def test_a_float_beyond_64_bits_keeps_its_float_text() -> None:
    (r,) = mapper(SERIAL).map(TOPIC, b'{"serial": 2.5e19}', NOW)
    assert r.attributes["serialNumber"].value == "2.5e+19"


def test_when_the_exact_parser_cannot_read_the_payload_the_text_is_refused_not_rounded() -> None:
    deep = b"[" * 1010 + b"]" * 1010  # orjson reads it, the standard library's parser does not
    assert refusal(mapper(SERIAL), b'{"serial": 18446744073709551616, "x": ' + deep + b"}") == (
        "wrong_type",
        "things/dev1: payload.serial (attribute serialNumber) is an integer beyond 64 bits that cannot be read "
        "exactly, got float <1 digit>.<16 digits>e+<2 digits>; send it as a JSON string",
    )


def test_a_structured_value_maps_alike_on_both_paths() -> None:
    m = mapper({"path": "raw", "name": "raw", "type": "StructuredValue"})
    body = b'{"raw": {"n": 1.8446744073709552e19, "m": [-1e300, 2]}'
    (fast,) = m.map(TOPIC, body + b"}", NOW)
    (slow,) = m.map(TOPIC, body + b', "x": 1e400}', NOW)
    assert fast.attributes == slow.attributes
    assert slow.attributes["raw"].value == {"n": 1.8446744073709552e19, "m": [-1e300, 2]}
    encode_reading(slow)
    # an integer a double would change is refused on both paths, never sent as 1.8446744073709552e19
    for tail in (b"}", b', "x": 1e400}'):
        assert refusal(m, b'{"raw": {"n": 18446744073709551616, "m": [-1e300, 2]}' + tail) == (
            "bad_value",
            "things/dev1: payload.raw.n (attribute raw) is an integer beyond ±2^53, which Orion and the IoT Agents"
            " hold as a double (it would arrive as another number), got <20 digits>; map its path as an attribute"
            ' of its own with type = "Text", or have the device send it as a JSON string',
        )
    assert refusal(m, b'{"raw": {"n": [1, 1e400]}}') == (
        "bad_value",
        "things/dev1: payload.raw.n[1] (attribute raw) is out of range, got <1 digit>e<3 digits>",
    )


# integers of any length, as digits (a strategy bounded by 10**400 would print all 400 digits in its repr)
LONG_INTEGERS = st.builds(
    lambda sign, digits: sign + str(int(digits)),
    st.sampled_from(["", "-"]),
    st.text("0123456789", min_size=1, max_size=420),
)
INTEGERS = st.integers(-(10**25), 10**25).map(str) | st.integers(-(2**64), 2**64).map(str) | LONG_INTEGERS
DECIMALS = st.builds(
    lambda sign, whole, frac, exp: (
        sign + str(whole) + (f".{frac}" if frac else "") + (f"e{exp}" if exp is not None else "")
    ),
    st.sampled_from(["", "-"]),
    st.integers(0, 10**20),
    st.text("0123456789", max_size=20),
    st.none() | st.integers(-700, 700),
)
LITERALS = INTEGERS | DECIMALS


@settings(max_examples=300, deadline=None)
@given(lvl=LITERALS, serial=LITERALS, other=LITERALS)
def test_any_numbers_give_the_exact_values_or_a_bad_value_naming_the_field(lvl: str, serial: str, other: str) -> None:
    m = mapper(LEVEL, SERIAL)
    payload = f'{{"lvl": {lvl}, "other": {other}, "serial": {serial}}}'.encode()
    level = float(Decimal(lvl))
    text = str(int(serial)) if not any(c in serial for c in ".eE") else str(float(serial))
    if not math.isfinite(level):
        assert refusal(m, payload)[0] == "bad_value"
        assert refusal(m, payload)[1].startswith("things/dev1: payload.lvl (attribute waterLevel) is out of range")
        return
    lvl_integer = not any(c in lvl for c in ".eE")
    if lvl_integer and abs(int(lvl)) > 2**53:
        # an integer a double cannot hold exactly is refused, never sent as another number (check_reading's rule)
        assert refusal(m, payload)[0] == "bad_value"
        assert refusal(m, payload)[1].startswith("things/dev1: payload.lvl (attribute waterLevel) is an integer beyond")
        return
    if text in ("inf", "-inf"):
        assert refusal(m, payload)[0] == "bad_value"
        assert refusal(m, payload)[1].startswith("things/dev1: payload.serial (attribute serialNumber)")
        return
    (r,) = m.map(TOPIC, payload, NOW)  # `other` is nobody's field: whatever it holds, the message maps
    assert r.attributes["serialNumber"].value == text
    value = r.attributes["waterLevel"].value
    if lvl_integer:
        assert (type(value), value) == (int, int(lvl))  # integers stay integers
    else:
        assert (type(value), value) == (float, level)
    encode_reading(r)


async def test_the_adapter_acks_and_counts_the_message_as_bad_value(mosquitto_private: MosquittoBroker) -> None:
    sink = Sink()
    config = counter_config(mosquitto_private, "bignum")
    messages = [
        ("test/dev1", b'{"n": 1}'),
        ("test/dev1", b'{"n": 1e400}'),
        ("test/dev1", b'{"n": 2, "rssi": -1e400}'),
        ("test/dev1", b'{"n": 3}'),
    ]
    async with running(config, sink) as adapter:
        await publish(mosquitto_private, messages)
        await wait_for(lambda: adapter.received == 4 and adapter.in_flight == 0, what="all messages acked")
    assert sink.values() == [1, 2, 3]
    assert dict(adapter.malformed) == {MalformedReason.BAD_VALUE.value: 1}
