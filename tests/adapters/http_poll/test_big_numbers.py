"""Numbers orjson cannot give as written (`1e400`, integers beyond 64 bits): one bad number drops its own
item as bad_value, never the document; a Text field or an id takes an integer's exact digits, never a
rounded float (README "Readings produced")."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.http_poll.adapter import HttpPollAdapter
from adapters.http_poll.config import HttpPollConfig, ItemMapping
from adapters.http_poll.mapping import MalformedReason, Mapper, MappingError, MapResult
from gateway.adapter_api import AdapterContext
from gateway.records import Reading, check_values, encode_reading
from tests.adapters.http_poll.peers import DocServer, serve, wait_for

NOW = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)


def mapper(*attributes: dict[str, Any], entity_id: str = "urn:ngsi-ld:Thing:{code}") -> Mapper:
    m = ItemMapping.model_validate(
        {"items": "st", "entity_id": entity_id, "entity_type": "Thing", "attributes": list(attributes)}
    )
    return Mapper([m], adapter="p")


LEVEL = {"path": "lvl", "name": "waterLevel", "unit": "MTR"}
SERIAL = {"path": "serial", "name": "serialNumber", "type": "Text"}


def doc(*items: str) -> bytes:
    return ('{"st": [' + ", ".join(items) + "]}").encode()


def values(result: MapResult, name: str) -> dict[str, Any]:
    return {r.entity_id.rsplit(":", 1)[1]: r.attributes[name].value for r in result.readings}


def messages(result: MapResult) -> list[tuple[str, str]]:
    return [(e.reason.value, str(e)) for e in result.errors]


# --- one out-of-range number drops its own item --------------------------------------------------------


def test_the_reviewers_document_drops_only_the_item_with_1e400() -> None:
    body = b'{"st": [{"code": "a", "lvl": 1.5}, {"code": "b", "lvl": 1e400}, {"code": "c", "lvl": 2.5}]}'
    result = mapper(LEVEL).map(body, NOW)
    assert values(result, "waterLevel") == {"a": 1.5, "c": 2.5}
    assert messages(result) == [
        ("bad_value", "st[1].lvl (attribute waterLevel): is out of range, got <1 digit>e<3 digits>")
    ]


@pytest.mark.parametrize(
    ("literal", "shown"),
    [
        ("-1e400", "-<1 digit>e<3 digits>"),
        ("1" + "0" * 400, "<401 digits>"),  # an integer no double holds: orjson refuses it like 1e400
        ("-" + "9" * 5000, "-<5000 digits>"),  # past Python's 4300-digit int() limit too
        ("1.5E+99999999999999999999", "<1 digit>.<1 digit>E+<20 digits>"),
    ],
)
def test_any_number_beyond_a_double_is_bad_value_for_its_item(literal: str, shown: str) -> None:
    result = mapper(LEVEL).map(doc('{"code": "a", "lvl": 1}', f'{{"code": "b", "lvl": {literal}}}'), NOW)
    assert values(result, "waterLevel") == {"a": 1}
    assert messages(result) == [("bad_value", f"st[1].lvl (attribute waterLevel): is out of range, got {shown}")]


def test_an_out_of_range_number_in_a_field_nobody_maps_costs_nothing() -> None:
    result = mapper(LEVEL).map(doc('{"code": "a", "lvl": 1.25, "debug": 1e400}', '{"code": "b", "lvl": 7}'), NOW)
    assert values(result, "waterLevel") == {"a": 1.25, "b": 7}
    assert result.errors == []


def test_scaled_out_of_range_numbers_are_bad_value_and_small_ones_scale_back_into_range() -> None:
    m = mapper({**LEVEL, "scale": 0.001})
    body = doc('{"code": "a", "lvl": 1e310}', '{"code": "b", "lvl": 1e400}', '{"code": "c", "lvl": "1e999999999"}')
    result = m.map(body, NOW)
    assert values(result, "waterLevel") == {"a": 1e307}  # 1e310 × 0.001, in decimal, fits a double
    assert messages(result) == [
        ("bad_value", "st[1].lvl (attribute waterLevel): is out of range after scaling, got <1 digit>e<3 digits>"),
        # a quoted exponent beyond Decimal's range used to raise decimal.Overflow out of the mapper
        ("bad_value", "st[2].lvl (attribute waterLevel): is out of range after scaling, got '<11 chars>'"),
    ]


def test_the_other_readers_refuse_an_out_of_range_number_for_their_field() -> None:
    m = ItemMapping.model_validate(
        {
            "items": "st",
            "entity_id": "urn:ngsi-ld:Thing:{code}",
            "entity_type": "Thing",
            "timestamp": {"path": "t", "format": "epoch_s"},
            "location": {"lat_path": "lat", "lon_path": "lon"},
            "attributes": [
                LEVEL,
                {"path": "ok", "name": "ok", "type": "Boolean", "missing": "skip"},
                {"path": "at", "name": "at", "type": "DateTime", "missing": "skip"},
                {"path": "raw", "name": "raw", "type": "StructuredValue", "missing": "skip"},
            ],
        }
    )
    fine = '"lvl": 1, "t": 1782867600, "lat": 32.2, "lon": 130.7'
    body = doc(
        f'{{"code": "a", {fine}}}',
        f'{{"code": "b", {fine}, "ok": 1e400}}',
        f'{{"code": "c", {fine}, "at": 1e400}}',
        f'{{"code": "d", {fine}, "raw": 1e400}}',
        f'{{"code": "e", {fine}, "raw": {{"x": [1, -1e400]}}}}',
        '{"code": "f", "lvl": 1, "t": 1e400, "lat": 32.2, "lon": 130.7}',
        '{"code": "g", "lvl": 1, "t": 1782867600, "lat": 1e400, "lon": 130.7}',
        f'{{"code": 1e400, {fine}}}',
    )
    result = Mapper([m], adapter="p").map(body, NOW)
    assert [r.entity_id for r in result.readings] == ["urn:ngsi-ld:Thing:a"]
    assert messages(result) == [
        ("wrong_type", "st[1].ok (attribute ok): must be true or false, got float <1 digit>e<3 digits>"),
        ("wrong_type", "st[2].at (attribute at): must be an ISO 8601 time, got float <1 digit>e<3 digits>"),
        ("wrong_type", "st[3].raw (attribute raw): must be an object or a list, got float <1 digit>e<3 digits>"),
        ("bad_value", "st[4].raw.x[1] (attribute raw): is out of range, got -<1 digit>e<3 digits>"),
        (
            "bad_timestamp",
            "st[5].t (timestamp): must be after 2000-01-01 and at most 15 min ahead, got <1 digit>e<3 digits>; "
            "check the timestamp format and zone, or the source's clock",
        ),
        (
            "bad_value",
            "st[6].lat (location): must be a latitude -90..90, got <1 digit>e<3 digits>; "
            "are lat_path and lon_path swapped?",
        ),
        ("wrong_type", "st[7].code (entity_id {code}): must be a string or an integer, got float <1 digit>e<3 digits>"),
    ]


def test_a_structured_value_maps_alike_beside_an_out_of_range_number() -> None:
    # item a maps the same whether or not another item holds 1e400 (which sends the document to the slow path)
    m = mapper({"path": "raw", "name": "raw", "type": "StructuredValue"})
    item = '{"code": "a", "raw": {"n": 1.8446744073709552e19, "m": [-1e300, 2]}}'
    fast = m.map(doc(item), NOW)
    slow = m.map(doc(item, '{"code": "b", "raw": 1e400}'), NOW)
    assert values(fast, "raw") == values(slow, "raw") == {"a": {"n": 1.8446744073709552e19, "m": [-1e300, 2]}}
    for r in slow.readings:
        encode_reading(r)  # no marker of the slow path reaches the buffer
    # an integer a double would change is refused on both paths, never sent as 1.8446744073709552e19
    big = '{"code": "a", "raw": {"n": 18446744073709551616, "m": [-1e300, 2]}}'
    for result in (m.map(doc(big), NOW), m.map(doc(big, '{"code": "b", "raw": 1e400}'), NOW)):
        assert values(result, "raw") == {}
        assert str(result.errors[0]).startswith("st[0].raw.n (attribute raw): is an integer beyond ±2^53, ")


@pytest.mark.parametrize(
    "body",
    [
        doc('{"code": "a", "lvl": 1e400}', '{"code": "b", "lvl": 2},'),  # a trailing comma as well
        doc('{"code": "a", "lvl": 1e400}', '{"code": "b", "lvl": NaN}'),  # NaN is no JSON, whatever parser
        doc('{"code": "a", "lvl": 1e400}', '{"code": "\\ud800", "lvl": 2}'),  # a lone surrogate no uplink can send
        doc('{"code": "a", "lvl": 1e400, "x": ' + "[" * 1100 + "]" * 1100 + "}"),  # deeper than orjson reads
        doc('{"code": "a", "lvl": 1e400}').replace(b'"a"', b'"a\xff"'),  # not UTF-8
    ],
    ids=["trailing_comma", "nan", "lone_surrogate", "too_deep", "not_utf8"],
)
def test_a_document_that_is_no_json_for_another_reason_is_still_not_json(body: bytes) -> None:
    with pytest.raises(MappingError) as info:
        mapper(LEVEL).map(body, NOW)
    assert info.value.reason is MalformedReason.NOT_JSON
    # orjson's position, the first thing it refused, as before the fallback existed
    with pytest.raises(orjson.JSONDecodeError) as refused:
        orjson.loads(body)
    assert str(info.value).startswith(f"document: is not JSON (invalid at character {refused.value.pos}), got ")


# --- Text and ids take an integer's exact digits ---------------------------------------------------------


SERIALS = ["18446744073709551616", "123456789012345678901234", "-9223372036854775809", "9" * 400]


@pytest.mark.parametrize("slow_path", [False, True], ids=["orjson", "fallback"])
def test_a_text_field_takes_an_integers_exact_digits(slow_path: bool) -> None:
    items = [f'{{"code": "s{i}", "serial": {s}}}' for i, s in enumerate(SERIALS)]
    items += ['{"code": "small", "serial": 18446744073709551615}', '{"code": "float", "serial": 2.5e19}']
    if slow_path:
        items.append('{"code": "x", "serial": 1e400}')
    result = mapper(SERIAL).map(doc(*items), NOW)
    expected = {f"s{i}": s for i, s in enumerate(SERIALS)}
    assert values(result, "serialNumber") == {**expected, "small": "18446744073709551615", "float": "2.5e+19"}
    assert messages(result) == (
        [
            (
                "bad_value",
                "st[6].serial (attribute serialNumber): is a number out of range, got <1 digit>e<3 digits>; "
                "send it as a JSON string",
            )
        ]
        if slow_path
        else []
    )


def test_an_id_takes_an_integers_exact_digits() -> None:
    result = mapper(LEVEL).map(doc('{"code": 18446744073709551616, "lvl": 1}', '{"code": 7, "lvl": 2}'), NOW)
    assert sorted(r.entity_id for r in result.readings) == [
        "urn:ngsi-ld:Thing:18446744073709551616",
        "urn:ngsi-ld:Thing:7",
    ]


def test_when_the_exact_parser_cannot_read_the_document_the_text_is_refused_not_rounded() -> None:
    # orjson reads 1100 levels, the standard library's parser fewer: the rounded float is all there is
    deep = "[" * 1010 + "]" * 1010
    body = doc(f'{{"code": "a", "serial": 18446744073709551616, "x": {deep}}}', '{"code": "b", "serial": 5}')
    result = mapper(SERIAL).map(body, NOW)
    assert values(result, "serialNumber") == {"b": "5"}
    assert messages(result) == [
        (
            "wrong_type",
            "st[0].serial (attribute serialNumber): is an integer beyond 64 bits that cannot be read exactly, "
            "got float <1 digit>.<16 digits>e+<2 digits>; send it as a JSON string",
        )
    ]


# --- property: any document with arbitrary numbers -------------------------------------------------------

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


def is_integer_literal(lit: str) -> bool:
    return not any(c in lit for c in ".eE")


def number_outcome(lit: str, scale: str | None) -> Any:
    """What a Number attribute holds for `lit` (adapters.jsonmap.values): its value, or "bad_value"."""
    integer = is_integer_literal(lit)
    if integer:
        exact = Decimal(lit)  # every digit: beyond 64 bits orjson's rounded float sends the item to the exact parse
    else:
        raw = float(lit)
        if scale is None:
            return raw if math.isfinite(raw) else "bad_value"
        exact = Decimal(repr(raw)) if math.isfinite(raw) else Decimal(lit)  # a float scales from its shortest text
    scaled = exact * Decimal(scale) if scale else exact
    value = float(scaled)
    if not math.isfinite(value):
        return "bad_value"
    if integer and scaled == scaled.to_integral_value():
        # an integer a double cannot hold exactly is refused, never sent as another number (check_reading's rule)
        return int(scaled) if abs(scaled) <= 2**53 else "bad_value"
    return value


def text_outcome(lit: str) -> Any:
    """What a Text attribute holds for `lit`: an integer's exact digits, a float's text, or "bad_value"."""
    if is_integer_literal(lit):
        return str(int(lit))  # its exact digits ("-0" is 0 as orjson reads it)
    value = float(lit)
    return str(value) if math.isfinite(value) else "bad_value"


def item_outcomes(result: MapResult, n: int) -> list[Any]:
    """Per item: (level, serial) of its reading, or the reason it was dropped."""
    out: list[Any] = [None] * n
    for r in result.readings:
        i = int(r.entity_id.rsplit(":i", 1)[1])
        out[i] = (r.attributes["waterLevel"].value, r.attributes["serialNumber"].value)
    for e in result.errors:
        i = int(e.where[3 : e.where.index("]")])
        assert out[i] is None, f"item {i} both mapped and dropped"
        out[i] = e.reason.value
    assert None not in out, "an item vanished"
    return out


@settings(max_examples=300, deadline=None)
@given(
    numbers=st.lists(st.tuples(LITERALS, LITERALS), min_size=1, max_size=6),
    scale=st.sampled_from([None, "0.001", "1000"]),
)
def test_any_numbers_give_each_item_its_exact_value_or_its_own_error(
    numbers: list[tuple[str, str]], scale: str | None
) -> None:
    m = mapper({**LEVEL, "scale": float(scale)} if scale else LEVEL, SERIAL)
    items = [f'{{"code": "i{i}", "lvl": {lvl}, "serial": {serial}}}' for i, (lvl, serial) in enumerate(numbers)]
    result = m.map(doc(*items), NOW)  # never a MappingError: the document is JSON
    for r in result.readings:
        check_values(r)
        encode_reading(r)  # the buffer can store it: no marker, no integer beyond 64 bits
    want = []
    for lvl, serial in numbers:
        level, text = number_outcome(lvl, scale), text_outcome(serial)
        want.append("bad_value" if "bad_value" in (level, text) else (level, text))
    got = item_outcomes(result, len(items))
    assert got == want
    # exact types too: a rounded float is never an integer's text, an integer stays an int
    assert [type(g[0]) for g in got if isinstance(g, tuple)] == [type(w[0]) for w in want if isinstance(w, tuple)]
    # each item maps as it does alone: no number elsewhere in the document changes its fate
    for i, item in enumerate(items):
        assert item_outcomes(m.map(doc(item.replace(f'"i{i}"', '"i0"')), NOW), 1) == [got[i]]


@settings(max_examples=200, deadline=None)
@given(lit=LITERALS, field=st.sampled_from(["code", "lvl", "serial", "other"]))
def test_one_number_anywhere_never_drops_the_other_items(lit: str, field: str) -> None:
    fields = {"code": '"a"', "lvl": "1", "serial": '"s"', "other": "0"}
    fields[field] = lit
    first = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
    result = mapper(LEVEL, SERIAL).map(doc(first, '{"code": "b", "lvl": 2, "serial": "t"}'), NOW)
    readings = {r.entity_id: r for r in result.readings}
    assert "urn:ngsi-ld:Thing:b" in readings
    # an id of 300 digits breaks Orion's identifier rules (bad_id): its own item's error too
    allowed = (MalformedReason.BAD_VALUE, MalformedReason.WRONG_TYPE, MalformedReason.BAD_ID)
    assert all(e.reason in allowed for e in result.errors)
    if field == "code" and is_integer_literal(lit) and len(lit) < 200:
        assert f"urn:ngsi-ld:Thing:{int(lit)}" in readings  # its exact digits, in the id
    if field == "serial" and is_integer_literal(lit):
        assert readings["urn:ngsi-ld:Thing:a"].attributes["serialNumber"].value == str(int(lit))


# --- the adapter against a real server ---------------------------------------------------------------------


async def test_the_adapter_emits_the_good_items_and_counts_the_bad_one() -> None:
    server = DocServer(
        body=b'{"st": [{"code": "a", "lvl": 1.5, "serial": 18446744073709551616}, '
        b'{"code": "b", "lvl": 1e400, "serial": 1}, {"code": "c", "lvl": 2.5, "serial": "x"}]}'
    )
    async with serve(server):
        cfg = HttpPollConfig.model_validate(
            {
                "name": "river",
                "type": "http_poll",
                "url": server.url,
                "interval_s": 0.05,
                "timeout_s": 0.05,
                "mappings": [
                    {
                        "items": "st",
                        "entity_id": "urn:ngsi-ld:Thing:{code}",
                        "entity_type": "Thing",
                        "attributes": [LEVEL, SERIAL],
                    }
                ],
            }
        )
        adapter = HttpPollAdapter(cfg, AdapterContext(gateway_id="gw1", data_dir="/nonexistent"), clock=lambda: NOW)
        got: list[Reading] = []

        async def emit(r: Reading) -> None:
            got.append(r)

        task = asyncio.create_task(adapter.run(emit))
        try:
            await wait_for(lambda: adapter.diagnostics()["polls"] >= 2, what="two polls")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    d = adapter.diagnostics()
    assert [(r.entity_id, r.attributes["waterLevel"].value, r.attributes["serialNumber"].value) for r in got] == [
        ("urn:ngsi-ld:Thing:a", 1.5, "18446744073709551616"),
        ("urn:ngsi-ld:Thing:c", 2.5, "x"),
    ]
    assert d["malformed"].get("not_json", 0) == 0
    assert d["malformed"]["bad_value"] >= 1
    assert "st[1].lvl (attribute waterLevel): is out of range, got <1 digit>e<3 digits>" in d["last_error"]
