"""adapters.jsonmap.decode: orjson's result wherever orjson reads a document; where it refuses one for a number,
the same document with each such number kept as written; refused as not JSON for anything else."""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.jsonmap.decode import exact_loads, loads
from adapters.jsonmap.errors import FieldError, Problem, describe, type_name
from adapters.jsonmap.numbers import LargeNumber

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
    st.none() | st.sampled_from(["", "+", "-"]).flatmap(lambda s: st.integers(0, 700).map(lambda e: f"{s}{e}")),
)
NUMBERS = INTEGERS | DECIMALS
SCALARS = NUMBERS | st.sampled_from(["true", "false", "null"]) | st.text(max_size=8).map(json.dumps)


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in pairs) + "}"


# documents as text, so that every number is written as the strategy wrote it
DOCS = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.lists(st.tuples(st.text(max_size=4), inner), max_size=4, unique_by=lambda kv: kv[0]).map(_object)
    ),
    max_leaves=20,
)


REFUSED = object()  # orjson refused it (None is JSON's null)


def as_written(value: Any) -> Any:
    """`value` with each LargeNumber as the exact number its literal says (int, or float for the rest)."""
    if isinstance(value, LargeNumber):
        return int(value.literal) if value.integer else float(value.literal)
    if isinstance(value, dict):
        return {k: as_written(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_written(v) for v in value]
    return value


def large_numbers(value: Any) -> list[LargeNumber]:
    if isinstance(value, LargeNumber):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in large_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in large_numbers(v)]
    return []


@settings(max_examples=400, deadline=None)
@given(DOCS)
def test_any_json_with_any_numbers_decodes_to_what_it_says(text: str) -> None:
    data = text.encode()
    doc = loads(data)  # never "not JSON": every number is a JSON number, however large
    try:
        fast = orjson.loads(data)
    except orjson.JSONDecodeError:
        fast = REFUSED
        assert large_numbers(doc), "the fallback read a document without a number orjson could not give"
    if fast is not REFUSED:
        assert doc == fast  # orjson's result as it was: the hot path is unchanged
    # the standard library, with no limit on what it gives, reads the same numbers
    exact = json.loads(text, parse_int=int, parse_float=float)
    assert as_written(exact_loads(data)) == as_written(exact)
    for n in large_numbers(exact_loads(data)):
        # only what orjson cannot give: an integer beyond 64 bits, a double beyond 2**63 or beyond its range
        assert not (n.integer and -(2**63) <= int(n.literal) < 2**64)
        assert n.integer or not abs(float(n.literal)) < 2.0**63


BREAKERS = st.sampled_from([b",", b"]", b"}", b"NaN", b'"\\ud800"', b"\xff", b"1e400", b"-1e999", b" ", b"01"])


def mutated(text: str, at: int, breaker: bytes) -> bytes:
    """A document with something inserted: often no JSON any more, sometimes JSON with one more big number."""
    data = text.encode()
    at = min(at, len(data))
    return data[:at] + breaker + data[at:]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60) | st.builds(mutated, DOCS, st.integers(0, 200), BREAKERS))
def test_any_bytes_decode_as_orjson_does_or_only_where_it_refused_a_number(data: bytes) -> None:
    try:
        fast = orjson.loads(data)
    except orjson.JSONDecodeError:
        fast = REFUSED
    try:
        doc = loads(data)
    except FieldError as exc:
        assert exc.problem is Problem.NOT_JSON  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        assert fast is REFUSED
        return
    if fast is not REFUSED:
        assert doc == fast
        return
    numbers = large_numbers(doc)
    assert numbers
    # everything but those numbers is what orjson would take: no NaN, no lone surrogate, no deeper nesting
    orjson.dumps(_zeroed(doc))


def _zeroed(value: Any) -> Any:
    if isinstance(value, LargeNumber):
        return 0
    if isinstance(value, dict):
        return {k: _zeroed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_zeroed(v) for v in value]
    return value


@pytest.mark.parametrize(
    "data",
    [
        b"[1e400, NaN]",
        b"[1e400, Infinity]",
        b"[1e400, -Infinity]",
        b'[1e400, "\\ud800"]',
        b'{"\\udfff": 1e400}',
        b'{"a": {"b": ["\\ud800"]}, "a": 1e400}',  # in a value a repeated key drops: orjson refuses it all the same
        b"[1e400, 1,]",
        b"[1e400] x",
        b'[1e400, "\xff"]',
        b"\xef\xbb\xbf[1e400]",
        "[1e400]".encode("utf-16"),
        b"[1e400, " + b"[" * 1024 + b"]" * 1024 + b"]",
        b"[1e400, 01]",
    ],
)
def test_what_orjson_refuses_for_another_reason_stays_refused_at_orjsons_position(data: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError) as refused:
        orjson.loads(data)
    with pytest.raises(FieldError) as info:
        loads(data)
    assert info.value.problem is Problem.NOT_JSON
    assert info.value.what.startswith(f"is not JSON (invalid at character {refused.value.pos}), got ")


def test_orjsons_nesting_limit_holds_even_where_the_parser_reaches_further() -> None:
    depth = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        assert exact_loads(b"[1e400, " + b"[" * 1022 + b"]" * 1022 + b"]")  # 1023 levels: orjson's too
        with pytest.raises(ValueError, match="nested deeper than 1024 levels"):
            exact_loads(b"[1e400, " + b"[" * 1024 + b"]" * 1024 + b"]")
    finally:
        sys.setrecursionlimit(depth)


def test_large_numbers_keep_their_literal_and_show_only_its_shape() -> None:
    fields = b'"b": 18446744073709551616, "c": -1.5e19, "d": 18446744073709551615, "e": 1e-400'
    # orjson reads it: its values as ever, the big integer a float
    assert loads(b"{" + fields + b"}") == {
        "b": 1.8446744073709552e19,
        "c": -1.5e19,
        "d": 18446744073709551615,
        "e": 0.0,
    }
    # orjson refuses it for 1e400: every number it cannot give as written is kept as written
    doc = loads(b'{"a": 1e400, ' + fields + b"}")
    assert doc == {
        "a": LargeNumber("1e400"),
        "b": LargeNumber("18446744073709551616"),
        "c": LargeNumber("-1.5e19"),
        "d": 18446744073709551615,
        "e": 0.0,
    }
    assert [describe(v) for v in doc.values()] == [
        "<1 digit>e<3 digits>",
        "<20 digits>",
        "-<1 digit>.<1 digit>e<2 digits>",
        "<20 digits>",
        "<1 digit>.<1 digit>",
    ]
    assert [type_name(v) for v in doc.values()] == ["float", "int", "float", "int", "float"]
    assert repr(doc["b"]) == "<20 digits>"  # never its digits, in whatever message quotes it
