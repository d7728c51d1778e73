"""Value coercion to the declared NGSI type: any JSON value gives a value of that type or a typed FieldError."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.jsonmap.config import AttributeMapping
from adapters.jsonmap.errors import FieldError, Problem
from adapters.jsonmap.paths import path_text
from adapters.jsonmap.values import AttributeRule, coerce, compile_attribute

TOKYO = ZoneInfo("Asia/Tokyo")
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["1.5", " -7 ", "1e3", "２３", "NaN", "Infinity", "1e400", "0x10", "2026-07-01T09:00:00+09:00"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)
TYPES = ["Number", "Text", "Boolean", "DateTime", "StructuredValue"]


def rule(type: str = "Number", scale: float | None = None, path: str = "level") -> AttributeRule:
    return compile_attribute(AttributeMapping(path=path, name="waterLevel", type=type, scale=scale))  # type: ignore[arg-type]


def fails(a: AttributeRule, raw: Any) -> tuple[str, str]:
    with pytest.raises(FieldError) as info:
        coerce(a, raw, TOKYO)
    return info.value.problem.value, str(info.value)


@settings(max_examples=300, deadline=None)
@given(raw=JSON, type=st.sampled_from(TYPES), scale=st.none() | st.sampled_from([0.1, 0.001, 10.0, 1e300, -2.5]))
def test_any_value_coerces_to_its_type_or_fails_typed(raw: Any, type: str, scale: float | None) -> None:
    a = rule(type, scale if type == "Number" else None)
    try:
        value = coerce(a, raw, TOKYO)
    except FieldError as exc:
        assert exc.problem in (Problem.WRONG_TYPE, Problem.BAD_VALUE, Problem.BAD_TIMESTAMP)  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        # a StructuredValue's refusal names the place inside the field too (`level[0].count`)
        nested = type == "StructuredValue" and len(exc.path) > 1
        assert exc.path[: 1 if nested else None] == ("level",)  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        assert str(exc).startswith(f"{path_text(exc.path)} (attribute waterLevel): ")  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        return
    if type == "Number":
        assert isinstance(value, (int, float)) and not isinstance(value, bool)
        assert math.isfinite(value)
    elif type == "Text":
        assert isinstance(value, str)
    elif type == "Boolean":
        assert value is raw
    elif type == "DateTime":
        assert isinstance(value, str) and value.endswith("Z")
    else:
        assert value is raw and isinstance(raw, (dict, list))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(-(10**12), 10**12), places=st.integers(0, 6))
def test_scaling_is_decimal_exact(n: int, places: int) -> None:
    scale = float(Decimal(1).scaleb(-places))  # 1, 0.1, 0.01, ...
    value = coerce(rule(scale=scale), n, TOKYO)
    assert value == float(Decimal(n).scaleb(-places))
    # an integer that stays whole after scaling stays an integer; anything else is a float
    assert isinstance(value, int) == (Decimal(n).scaleb(-places) % 1 == 0)


@settings(max_examples=200, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_numeric_text_means_the_same_as_the_number(x: float) -> None:
    assert coerce(rule(), repr(x), TOKYO) == x
    assert coerce(rule(), f"  {x!r} ", TOKYO) == x


@pytest.mark.parametrize(
    ("raw", "scale", "value"),
    [
        (235, 0.1, 23.5),  # not 23.500000000000004
        (235, 0.01, 2.35),
        (412, 1.0, 412),
        (100, 0.01, 1),  # whole after scaling: an integer
        (3012, 0.001, 3.012),
        (21.5, None, 21.5),
        (2**53, None, 2**53),  # as sent: a double holds every integer up to 2^53 (beyond: test_exact_integers.py)
        ("2.35", None, 2.35),
        ("-7", 0.01, -0.07),
        ("12", None, 12),
        ("12.0", None, 12.0),
        ("２３", None, 23),  # full-width digits occur in Japanese systems
        ("1e3", None, 1000.0),
    ],
)
def test_numbers_are_kept_or_scaled_exactly(raw: Any, scale: float | None, value: Any) -> None:
    got = coerce(rule(scale=scale), raw, TOKYO)
    assert (got, type(got)) == (value, type(value))


@pytest.mark.parametrize(
    ("type", "raw", "problem", "message"),
    [
        ("Number", "high", "wrong_type", "level (attribute waterLevel): must be a number, got str '<4 letters>'"),
        ("Number", "NaN", "wrong_type", "level (attribute waterLevel): must be a number, got str '<3 letters>'"),
        ("Number", True, "wrong_type", "level (attribute waterLevel): must be a number, got bool True"),
        ("Number", [1], "wrong_type", "level (attribute waterLevel): must be a number, got list [<1 digit>]"),
        ("Number", "1e400", "bad_value", "level (attribute waterLevel): is out of range, got '<5 chars>'"),
        (
            "Number",
            2**64,
            "bad_value",
            "level (attribute waterLevel): is an integer beyond ±2^53, which Orion and the IoT Agents hold as a"
            ' double (it would arrive as another number), got <20 digits>; map it with type = "Text" to send its digits',
        ),
        ("Text", False, "wrong_type", "level (attribute waterLevel): must be a string, got bool False"),
        ("Text", {"a": 1}, "wrong_type", "level (attribute waterLevel): must be a string, got dict {'a': <1 digit>}"),
        ("Boolean", "yes", "wrong_type", "level (attribute waterLevel): must be true or false, got str '<3 letters>'"),
        ("Boolean", 1, "wrong_type", "level (attribute waterLevel): must be true or false, got int <1 digit>"),
        (
            "DateTime",
            1714521600,
            "wrong_type",
            "level (attribute waterLevel): must be an ISO 8601 time, got int <10 digits>",
        ),
        (
            "DateTime",
            "yesterday",
            "bad_timestamp",
            "level (attribute waterLevel): must be an ISO 8601 time, got '<9 letters>'",
        ),
        (
            "DateTime",
            "2024-02-30T00:00:00Z",
            "bad_timestamp",
            "level (attribute waterLevel): must be an ISO 8601 time, got '2024-02-30T00:00:00Z'",
        ),
        (
            "StructuredValue",
            "x",
            "wrong_type",
            "level (attribute waterLevel): must be an object or a list, got str '<1 letter>'",
        ),
    ],
)
def test_wrong_values_are_typed_errors_with_exact_messages(type: str, raw: Any, problem: str, message: str) -> None:
    assert fails(rule(type), raw) == (problem, message)


def test_overflow_after_scaling_names_the_scale() -> None:
    assert fails(rule(scale=1e300), 1e10) == (
        "bad_value",
        "level (attribute waterLevel): is out of range after scaling, got <11 digits>.<1 digit>",
    )


def test_text_takes_numbers_as_their_text_and_datetime_goes_to_utc() -> None:
    assert coerce(rule("Text"), 860101, TOKYO) == "860101"
    assert coerce(rule("Text"), "人吉", TOKYO) == "人吉"
    assert coerce(rule("DateTime"), "2024-05-01T12:00:00.5+09:00", TOKYO) == "2024-05-01T03:00:00.500Z"
    assert coerce(rule("DateTime"), "2024-05-01T12:00:00", TOKYO) == "2024-05-01T03:00:00.000Z"  # the zone applies
