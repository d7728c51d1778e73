"""Every reader of adapters.jsonmap takes a LargeNumber as its type needs or refuses it for its own field,
and never lets one, or a rounded serial number, through."""

from __future__ import annotations

import math
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.jsonmap.config import AttributeMapping
from adapters.jsonmap.decode import InexactNumber
from adapters.jsonmap.errors import FieldError, Problem
from adapters.jsonmap.numbers import LargeNumber
from adapters.jsonmap.templates import field_ref, id_field
from adapters.jsonmap.values import AttributeRule, coerce, compile_attribute

TOKYO = ZoneInfo("Asia/Tokyo")
TYPES = ["Number", "Text", "Boolean", "DateTime", "StructuredValue"]
# what the exact parse makes a LargeNumber of: integers beyond 64 bits, doubles from 2**63 on or beyond range
LARGE = st.builds(
    lambda sign, digits, frac, exp: LargeNumber(sign + digits + frac + exp),
    st.sampled_from(["", "-"]),
    st.text("123456789", min_size=1, max_size=1).flatmap(lambda d: st.text("0123456789", max_size=400).map(d.__add__)),
    st.sampled_from(["", ".5", ".0001"]),
    st.sampled_from(["", "e19", "e300", "e400", "E+99999999999999999999"]),
).filter(lambda n: not (n.integer and -(2**63) <= int(n.literal) < 2**64) and abs(n.as_float()) >= 2.0**63)


def rule(type: str, scale: float | None = None) -> AttributeRule:
    return compile_attribute(AttributeMapping(path="v", name="v", type=type, scale=scale))  # type: ignore[arg-type]


def number_fits(n: LargeNumber, scale: float | None) -> bool:
    """Whether a Number attribute holds `n` (times `scale`) as a finite double, and an integer only where a
    double holds it exactly, within ±2^53 (adapters.jsonmap.values, gateway.ngsi.check)."""
    if n.integer:
        exact = Decimal(n.literal)  # every digit
    elif n.is_finite():
        exact = Decimal(repr(n.as_float()))  # as orjson's float scales
    else:
        try:
            exact = Decimal(n.literal)
        except ArithmeticError:
            return False
    try:
        scaled = exact * Decimal(repr(scale)) if scale else exact
        if n.integer and scaled == scaled.to_integral_value():
            return abs(scaled) <= 2**53
        return math.isfinite(float(scaled))
    except ArithmeticError:
        return False


@settings(max_examples=300, deadline=None)
@given(n=LARGE, type=st.sampled_from(TYPES), scale=st.none() | st.sampled_from([0.001, 1e-300, 1000.0]))
def test_a_large_number_becomes_a_value_of_its_type_or_its_fields_error(
    n: LargeNumber, type: str, scale: float | None
) -> None:
    a = rule(type, scale if type == "Number" else None)
    expected_value = {
        "Number": number_fits(n, scale),
        "Text": n.integer or n.is_finite(),
        "Boolean": False,
        "DateTime": False,
        "StructuredValue": False,
    }[type]
    if not expected_value:
        with pytest.raises(FieldError) as info:
            coerce(a, n, TOKYO)
        assert info.value.problem is (Problem.BAD_VALUE if type in ("Number", "Text") else Problem.WRONG_TYPE)
        assert info.value.path_text == "v"
        assert n.literal.lstrip("-")[:5] not in str(info.value)  # the digits stay masked
        return
    value = coerce(a, n, TOKYO)
    orjson.dumps(value)  # plain JSON data: no LargeNumber left in it
    if type == "Number":
        assert math.isfinite(value)
    else:
        assert value == (n.literal if n.integer else str(n.as_float()))


def test_the_readers_wording_for_large_numbers() -> None:
    big, huge = LargeNumber("18446744073709551616"), LargeNumber("1e400")
    # an integer no double holds exactly is refused (test_exact_integers.py), never the float orjson gives for it
    with pytest.raises(FieldError) as info:
        coerce(rule("Number"), big, TOKYO)
    assert (info.value.problem, str(info.value)) == (
        Problem.BAD_VALUE,
        "v (attribute v): is an integer beyond ±2^53, which Orion and the IoT Agents hold as a double (it would"
        ' arrive as another number), got <20 digits>; map it with type = "Text" to send its digits',
    )
    assert coerce(rule("Number", 1e-10), big, TOKYO) == 1844674407.3709552  # a fraction once scaled
    assert coerce(rule("Number", 0.001), LargeNumber("1e310"), TOKYO) == 1e307
    assert coerce(rule("Text"), big, TOKYO) == "18446744073709551616"
    assert coerce(rule("Text"), LargeNumber("2.5e19"), TOKYO) == "2.5e+19"
    with pytest.raises(FieldError) as info:
        coerce(rule("Number"), huge, TOKYO)
    assert (info.value.problem, str(info.value)) == (
        Problem.BAD_VALUE,
        "v (attribute v): is out of range, got <1 digit>e<3 digits>",
    )
    with pytest.raises(FieldError) as info:
        coerce(rule("Text"), huge, TOKYO)
    assert (info.value.problem, str(info.value)) == (
        Problem.BAD_VALUE,
        "v (attribute v): is a number out of range, got <1 digit>e<3 digits>; send it as a JSON string",
    )
    with pytest.raises(FieldError) as info:
        coerce(rule("Boolean"), big, TOKYO)
    assert str(info.value) == "v (attribute v): must be true or false, got int <20 digits>"


@pytest.mark.parametrize("value", [1.8446744073709552e19, -9.223372036854776e18, 2.5e19, 1e300])
def test_a_float_orjson_may_have_rounded_from_an_integer_asks_for_the_exact_parse(value: float) -> None:
    with pytest.raises(InexactNumber) as info:
        coerce(rule("Text"), value, TOKYO)
    # a FieldError all the same: a caller that cannot read the document again refuses the field, never rounds it
    assert isinstance(info.value, FieldError)
    assert info.value.problem is Problem.WRONG_TYPE
    assert str(info.value).endswith("; send it as a JSON string")
    with pytest.raises(InexactNumber):
        id_field({"code": value}, field_ref("code"), "entity_id")


@pytest.mark.parametrize("value", [9.223372036854775e18, -1.5, 0.1, 1e18])
def test_smaller_floats_keep_their_text(value: float) -> None:
    assert coerce(rule("Text"), value, TOKYO) == str(value)
