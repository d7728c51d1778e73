"""IoT Agent JSON and UltraLight 2.0 rendering: exact payloads, refusals, and parse-back properties."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta
from urllib.parse import unquote

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ReadingError
from gateway.ngsi import iota
from gateway.ngsi.config import ValueEncoding
from gateway.records import Attribute, Reading, Source
from tests.uplinks_mqtt.conftest import T0, reading


def test_json_measure_is_flat_object_with_time_instant() -> None:
    r = reading(waterLevel=1.25, alert=False, name="白川 代継橋", pos={"lat": 32.8, "lon": 130.7})
    assert (
        iota.json_measure_bytes(r)
        == (
            '{"waterLevel":1.25,"alert":false,"name":"白川 代継橋","pos":{"lat":32.8,"lon":130.7},'
            '"TimeInstant":"2024-06-01T03:00:00.000Z"}'
        ).encode()
    )


def test_json_multi_measure_is_an_array_of_measures() -> None:
    a = iota.json_measure_bytes(reading(at=0, waterLevel=1.0))
    b = iota.json_measure_bytes(reading(at=60.5, waterLevel=1.5))
    assert iota.json_payload([a]) == b'{"waterLevel":1.0,"TimeInstant":"2024-06-01T03:00:00.000Z"}'
    assert iota.json_payload([a, b]) == (
        b'[{"waterLevel":1.0,"TimeInstant":"2024-06-01T03:00:00.000Z"},'
        b'{"waterLevel":1.5,"TimeInstant":"2024-06-01T03:01:00.500Z"}]'
    )


def test_orion_banned_characters_are_percent_encoded_by_default() -> None:
    r = reading(station="人吉(水の手橋)", note="50%")
    assert iota.json_measure(r)["station"] == "人吉%28水の手橋%29"
    assert iota.json_measure(r)["note"] == "50%25"
    assert iota.ul_group(r) == "2024-06-01T03:00:00.000Z|station|人吉%28水の手橋%29|note|50%25"
    assert iota.json_measure(r, encoding=ValueEncoding.TEXT_UNRESTRICTED)["station"] == "人吉(水の手橋)"


def test_reject_encoding_names_the_attribute() -> None:
    with pytest.raises(ReadingError) as exc:
        iota.json_measure(reading(station="人吉(水の手橋)"), encoding=ValueEncoding.REJECT)
    assert str(exc.value) == (
        "urn:ngsi-ld:WaterObserved:gauge1.station: Orion refuses the characters \" ' ( ) ; < = > in values, "
        "found '(', got '人吉(水の手橋)'; set [ngsi] value_encoding = \"percent\" or clean the value at the source"
    )


def test_ul_group_has_leading_timestamp_and_typed_text() -> None:
    r = reading(waterLevel=1.25, count=3, alert=True, state="ok")
    assert iota.ul_group(r) == "2024-06-01T03:00:00.000Z|waterLevel|1.25|count|3|alert|true|state|ok"
    groups = [iota.ul_group(reading(at=0, waterLevel=1.0)), iota.ul_group(reading(at=1, waterLevel=-0.5))]
    assert iota.ul_payload(groups) == (
        b"2024-06-01T03:00:00.000Z|waterLevel|1.0#2024-06-01T03:00:01.000Z|waterLevel|-0.5"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"state": "a|b"},
            "urn:ngsi-ld:WaterObserved:gauge1.state: UltraLight 2.0 values cannot be empty or "
            "contain '|', '#' or '@', got 'a|b'; use format = \"iota-json\" for free text",
        ),
        (
            {"state": "#1"},
            "urn:ngsi-ld:WaterObserved:gauge1.state: UltraLight 2.0 values cannot be empty or "
            "contain '|', '#' or '@', got '#1'; use format = \"iota-json\" for free text",
        ),
        (
            {"mail": "a@b"},
            "urn:ngsi-ld:WaterObserved:gauge1.mail: UltraLight 2.0 values cannot be empty or "
            "contain '|', '#' or '@', got 'a@b'; use format = \"iota-json\" for free text",
        ),
        (
            {"state": ""},
            "urn:ngsi-ld:WaterObserved:gauge1.state: UltraLight 2.0 values cannot be empty or "
            "contain '|', '#' or '@', got an empty string; use format = \"iota-json\" for free text",
        ),
        (
            {"a|b": 1},
            "urn:ngsi-ld:WaterObserved:gauge1.a|b: UltraLight 2.0 keys cannot be empty or "
            "contain '|', '#' or '@', got 'a|b'; use format = \"iota-json\" for free text",
        ),
        (
            {"pos": {"lat": 1}},
            "urn:ngsi-ld:WaterObserved:gauge1.pos: UltraLight 2.0 carries only text, numbers "
            'and booleans, got dict; use format = "iota-json" for structured values',
        ),
        (
            {"level": None},
            "urn:ngsi-ld:WaterObserved:gauge1.level: UltraLight 2.0 carries only text, numbers "
            'and booleans, got null; use format = "iota-json" for structured values',
        ),
    ],
)
def test_ul_refuses_what_the_agent_would_misread(values: dict[str, object], message: str) -> None:
    with pytest.raises(ReadingError) as exc:
        iota.ul_group(replace(reading(), attributes={k: Attribute(value=v) for k, v in values.items()}))
    assert str(exc.value) == message


def test_reserved_measure_names_are_refused() -> None:
    with pytest.raises(ReadingError, match=r"^urn:ngsi-ld:WaterObserved:gauge1\.TimeInstant: the name is reserved"):
        iota.json_measure(reading(TimeInstant="2024-01-01T00:00:00Z"))
    with pytest.raises(ReadingError) as exc:
        iota.ul_group(reading(type="x"))
    assert str(exc.value) == (
        "urn:ngsi-ld:WaterObserved:gauge1.type: the IoT Agent renames measures named id or type to measure_id / "
        "measure_type, got 'type'; rename the attribute in the device profile"
    )


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ReadingError, match=r"waterLevel: must be a finite number, got nan"):
        iota.json_measure(reading(waterLevel=math.nan))
    with pytest.raises(ReadingError, match=r"waterLevel: must be a finite number, got inf"):
        iota.ul_group(reading(waterLevel=math.inf))


def test_device_id_template_and_topic_level_rules() -> None:
    r = reading("urn:ngsi-ld:WaterObserved:gauge1", device="rs485-3")
    assert iota.device_id(r, "{entity_id}") == "urn:ngsi-ld:WaterObserved:gauge1"
    assert iota.device_id(r, "{adapter}-{device}") == "sim-rs485-3"
    with pytest.raises(ReadingError) as exc:
        iota.device_id(reading("river/gauge+1"), "{entity_id}")
    assert str(exc.value) == (
        "river/gauge+1: device_id: must be one MQTT topic level (not empty, no '/', '+', '#'), "
        "got 'river/gauge+1'; change the device_id template or the entity id"
    )
    with pytest.raises(ReadingError) as exc:
        iota.device_id(reading(device=""), "{device}")
    assert str(exc.value).startswith("urn:ngsi-ld:WaterObserved:gauge1: device_id: must be one MQTT topic level")
    assert "got empty;" in str(exc.value)


def test_parse_ul_reads_like_the_agent() -> None:
    assert iota.parse_ul("t|15|k|abc") == [{"t": "15", "k": "abc"}]
    assert iota.parse_ul("gps|1.2/3.4#t|10") == [{"gps": "1.2/3.4"}, {"t": "10"}]
    assert iota.parse_ul("2016-06-13T00:35:30Z|lle|100") == [{"lle": "100", "TimeInstant": "2016-06-13T00:35:30Z"}]
    with pytest.raises(ValueError, match="empty field"):
        iota.parse_ul("t||k|v")
    with pytest.raises(ValueError, match="command result"):
        iota.parse_ul("dev@ping|ok")


# -- properties ---------------------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
offsets = st.integers(min_value=0, max_value=10**9)


def _reading(values: dict[str, object], offset_ms: int) -> Reading:
    return Reading(
        entity_id="e1",
        entity_type="T",
        attributes={k: Attribute(value=v) for k, v in values.items()},
        observed_at=T0 + timedelta(milliseconds=offset_ms),
        source=Source(adapter="sim"),
        seq=1,
    )


def _percent_decode(value: object) -> object:
    # the receiving side's view: decodeURIComponent-style, as the platform's consumers do it
    if isinstance(value, str):
        return unquote(value)
    if isinstance(value, dict):
        return {unquote(k): _percent_decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_percent_decode(v) for v in value]
    return value


@settings(max_examples=150, deadline=None)
@given(values=st.dictionaries(names, json_values, min_size=1, max_size=5), offset_ms=offsets)
def test_json_measure_parses_back_or_refuses_clearly(values: dict[str, object], offset_ms: int) -> None:
    r = _reading(values, offset_ms)
    try:
        body = iota.json_measure_bytes(r)
    except ReadingError as exc:  # a generated input may be refused or accepted; both outcomes are checked
        assert str(exc).startswith("e1."), str(exc)  # noqa: PT017 - pytest.raises would demand the refusal
        assert set(values) & {"id", "type", "TimeInstant"}
        return
    parsed = orjson.loads(body)
    assert (
        parsed.pop("TimeInstant")
        == (T0 + timedelta(milliseconds=offset_ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    )
    assert {k: _percent_decode(v) for k, v in parsed.items()} == values


@settings(max_examples=150, deadline=None)
@given(values=st.dictionaries(names, st.one_of(st.none(), scalars), min_size=1, max_size=5), offset_ms=offsets)
def test_ul_group_parses_back_or_refuses_clearly(values: dict[str, object], offset_ms: int) -> None:
    r = _reading(values, offset_ms)
    try:
        group = iota.ul_group(r)
    except ReadingError as exc:
        text = str(exc)
        known = ("UltraLight 2.0", "UltraLight agent", "IoT Agent", "reserved")
        assert text.startswith("e1.") and any(k in text for k in known), text
        return
    (parsed,) = iota.parse_ul(group)
    assert parsed.pop("TimeInstant").endswith("Z")
    assert list(parsed) == list(values)
    for name, value in values.items():
        text = parsed[name]
        if isinstance(value, bool):
            assert text == ("true" if value else "false")
        elif isinstance(value, (int, float)):
            assert float(text) == value and type(value)(text) == value
        else:
            assert _percent_decode(text) == value


@pytest.mark.parametrize(
    ("text", "becomes"),
    [
        ("8600000", "the number 8600000"),
        ("0.10", "the number 0.1"),
        ("1e5", "the number 100000"),
        ("-0", "the number 0"),
        (" 42", "the number 42"),
        ("true", "the boolean true"),
        ("null", "null"),
        ("[1,2]", "an array"),
        ("{}", "an object"),
    ],
)
def test_ul_refuses_text_the_agent_would_read_as_json(text: str, becomes: str) -> None:
    # the UL agent JSON.parses every value (lib/ulParser.js addAttributePair) and keeps the text only
    # where that throws: a Text attribute holding valid JSON would reach Orion as another value or type
    with pytest.raises(ReadingError) as exc:
        iota.ul_group(reading(code=text))
    assert str(exc.value) == (
        f"urn:ngsi-ld:WaterObserved:gauge1.code: the UltraLight agent reads a text that is valid JSON as JSON and "
        f'would store {becomes} instead, got {text!r}; use format = "iota-json" for this attribute'
    )


def test_ul_refuses_a_quoted_text_under_text_unrestricted() -> None:
    with pytest.raises(ReadingError, match=r"would store the text 'x' without its quotes instead, got '\"x\"'"):
        iota.ul_group(reading(code='"x"'), encoding=ValueEncoding.TEXT_UNRESTRICTED)


@pytest.mark.parametrize(
    "text", ["ok", "NaN", "Infinity", "-Infinity", "01", "1.", ".5", "1a", "tru", "0x10", "+1", "人吉", "8600000 m"]
)
def test_ul_keeps_text_javascript_json_parse_refuses(text: str) -> None:
    # NaN and Infinity are what Python's json takes and JavaScript's JSON.parse does not
    assert iota.ul_group(reading(code=text)).endswith(f"|code|{text}")


def test_ul_refuses_integers_javascript_cannot_hold_exactly() -> None:
    assert iota.ul_group(reading(n=2**53)).endswith("|n|9007199254740992")
    with pytest.raises(ReadingError) as exc:
        iota.ul_group(reading(n=2**53 + 1))
    assert str(exc.value) == (
        "urn:ngsi-ld:WaterObserved:gauge1.n: the UltraLight agent reads numbers as JavaScript doubles, exact only up "
        'to ±2^53, got 9007199254740993; use format = "iota-json" with the value as text, or scale it at the source'
    )


def test_the_sequence_measure_carries_the_buffer_seq() -> None:
    r = reading(seq=41, waterLevel=1.25, state="ok")
    assert orjson.loads(iota.json_measure_bytes(r, sequence="edgegwSeq")) == {
        "waterLevel": 1.25,
        "state": "ok",
        "edgegwSeq": 41,
        "TimeInstant": "2024-06-01T03:00:00.000Z",
    }
    assert orjson.loads(iota.json_measure_bytes(reading(seq=42), sequence="edgegwSeq")) == {
        "waterLevel": 1.25,
        "edgegwSeq": 42,
        "TimeInstant": "2024-06-01T03:00:00.000Z",
    }
    assert iota.ul_group(r, sequence="edgegwSeq") == ("2024-06-01T03:00:00.000Z|waterLevel|1.25|state|ok|edgegwSeq|41")


def test_an_attribute_named_like_the_sequence_measure_is_refused() -> None:
    with pytest.raises(ReadingError) as exc:
        iota.json_measure(reading(edgegwSeq=3), sequence="edgegwSeq")
    assert str(exc.value) == (
        "urn:ngsi-ld:WaterObserved:gauge1.edgegwSeq: the name is the uplink's sequence_attribute, got an attribute "
        "of that name; rename the attribute in the device profile or change sequence_attribute"
    )
    with pytest.raises(ReadingError, match="the name is the uplink's sequence_attribute"):
        iota.ul_group(reading(edgegwSeq=3), sequence="edgegwSeq")
