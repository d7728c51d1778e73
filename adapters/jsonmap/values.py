"""JSON values → values of the declared NGSI type (Number scaled in decimal, Text, Boolean, DateTime, ...).

A Number's integer stays an integer, and is refused (bad_value) beyond ±2^53, where the platform would
change it, rather than sent as the float nearest to it (gateway.ngsi.check's rule, at the field). The same
holds at any depth of a StructuredValue, where the refusal names the place inside the field."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from adapters.jsonmap.config import AttributeMapping, NgsiType, WhenAttributeMissing
from adapters.jsonmap.decode import ROUNDED, InexactNumber
from adapters.jsonmap.errors import FieldError, Problem, describe, is_field_name, masked, type_name
from adapters.jsonmap.numbers import INTEGER_TEXT_RE, LargeNumber, number_text
from adapters.jsonmap.paths import JsonPath, PathPart, parse_path, path_text
from adapters.jsonmap.timestamps import parse_iso, quote_time
from gateway.ngsi.check import DOUBLE_CHANGES_IT, EXACT_INTEGER_MAX
from gateway.records import iso_utc

# check_reading's rule, applied at the field: an integer beyond it is refused naming the field, masked, as
# bad_value; never a float (which check_reading would pass, and which would reach the platform rounded)
_INEXACT_INTEGER = f"is an integer beyond ±2^53{{after}}, {DOUBLE_CHANGES_IT}, got {{got}}; {{fix}}"
_TEXT_FIX = 'map it with type = "Text" to send its digits'
_INT_LOW, _INT_HIGH = -EXACT_INTEGER_MAX, EXACT_INTEGER_MAX
_FLOAT_LOW, _FLOAT_HIGH = -ROUNDED, ROUNDED
# inside an object a Text mapping of the whole field is no way out: the one number needs a mapping of its own
_NESTED_FIX = 'map its path as an attribute of its own with type = "Text", or have the device send it as a JSON string'
# check_values refuses deeper values for their nesting anyway; no walk (nor recursion) beyond it here
_MAX_NESTING = 51


@dataclass(frozen=True, slots=True, kw_only=True)
class AttributeRule:
    """An attribute mapping compiled for the hot path."""

    path: JsonPath
    key: str | None  # the path when it is a single top-level key: one dict lookup per message
    path_text: str
    name: str
    subject: str  # "attribute <name>", as messages say it
    type_text: str  # type.value, read once (an enum's .value is a descriptor call)
    unit: str | None
    scale: Decimal | None
    scale_integral: bool  # an integer times an integral scale stays an integer
    skip_if_missing: bool
    coerce: Callable[[AttributeRule, Any, tzinfo], Any]


def compile_attribute(a: AttributeMapping) -> AttributeRule:
    path = parse_path(a.path)
    return AttributeRule(
        path=path,
        key=path[0] if len(path) == 1 and isinstance(path[0], str) else None,
        path_text=a.path,
        name=a.name,
        subject=f"attribute {a.name}",
        type_text=a.type.value,
        unit=a.unit,
        scale=Decimal(repr(a.scale)) if a.scale is not None else None,
        scale_integral=a.scale is not None and float(a.scale).is_integer(),
        skip_if_missing=a.missing is WhenAttributeMissing.SKIP,
        coerce=_COERCE[a.type],
    )


def _fail(a: AttributeRule, what: str, problem: Problem) -> FieldError:
    return FieldError(what, problem=problem, path=a.path, path_text=a.path_text, subject=a.subject)


def _wrong_type(a: AttributeRule, want: str, raw: Any) -> FieldError:
    return _fail(a, f"must be {want}, got {type_name(raw)} {describe(raw)}", Problem.WRONG_TYPE)


def _inexact(a: AttributeRule, raw: Any) -> FieldError:
    scaled = a.scale is not None
    return _fail(
        a,
        _INEXACT_INTEGER.format(
            after=" after scaling" if scaled else "",
            got=describe(raw),
            fix=_TEXT_FIX + (", or a smaller scale" if scaled else ""),
        ),
        Problem.BAD_VALUE,
    )


def _number(a: AttributeRule, raw: Any, zone: tzinfo) -> Any:
    t = raw.__class__  # bool is not int here: true is not a number
    if t is float:
        if not _FLOAT_LOW < raw < _FLOAT_HIGH:
            # maybe an integer beyond 64 bits that orjson rounded: the adapter reads the item again, exactly
            raise InexactNumber(
                "is a number beyond ±2^63 that cannot be read exactly (it may be an integer beyond 64 bits), "
                f"got {describe(raw)}; send it as a JSON string, or as a smaller number",
                problem=Problem.BAD_VALUE,
                path=a.path,
                path_text=a.path_text,
                subject=a.subject,
            )
        if a.scale is None:
            return raw  # orjson gives no NaN or infinity
        exact, is_integer = Decimal(repr(raw)), False
    elif t is int:
        if a.scale is None:
            # as sent: integers stay integers, those a double holds
            if _INT_LOW <= raw <= _INT_HIGH:
                return raw
            raise _inexact(a, raw)
        exact, is_integer = Decimal(raw), True
    elif t is str:
        d = number_text(raw)
        if d is None:
            raise _wrong_type(a, "a number", raw)
        exact = d
        is_integer = INTEGER_TEXT_RE.match(raw) is not None
    elif t is LargeNumber:  # beyond 64 bits or beyond a double (adapters.jsonmap.decode)
        is_integer = raw.integer
        f = raw.as_float()
        if is_integer:
            exact = Decimal(raw.literal)  # every digit: a scale may bring it back into range, exactly
        elif math.isfinite(f):
            if a.scale is None:
                return f  # the float orjson gives for it: an item maps alike whichever parser read it
            exact = Decimal(repr(f))
        else:
            # no double holds it, but a scale may bring it back into range (1e310 × 0.001)
            try:
                exact = Decimal(raw.literal)
            except ArithmeticError:  # an exponent beyond even Decimal's own (1e99999999999999999999)
                exact = Decimal("Infinity")
    else:
        raise _wrong_type(a, "a number", raw)
    try:
        # Decimal keeps 235 × 0.1 at 23.5 instead of 23.500000000000004
        scaled = exact * a.scale if a.scale is not None else exact
        value = float(scaled)
    except ArithmeticError:  # "1e999999999" × scale overflows Decimal's own range (decimal.Overflow)
        value = math.inf
    if not math.isfinite(value):
        after = " after scaling" if a.scale is not None else ""
        raise _fail(a, f"is out of range{after}, got {describe(raw)}", Problem.BAD_VALUE)
    if is_integer and (a.scale_integral or scaled == scaled.to_integral_value()):
        if abs(scaled) > EXACT_INTEGER_MAX:
            raise _inexact(a, raw)
        return int(scaled)
    return value


def _text(a: AttributeRule, raw: Any, zone: tzinfo) -> Any:
    t = raw.__class__
    if t is str:
        return raw
    # a station code, a serial number or a numeric label sent as a number: its digits, never a rounded float
    if t is int:
        return str(raw)
    if t is float:
        if -ROUNDED < raw < ROUNDED:
            return str(raw)
        # maybe an integer beyond 64 bits that orjson rounded: the adapter reads the item again, exactly
        raise InexactNumber(
            f"is an integer beyond 64 bits that cannot be read exactly, got float {describe(raw)}; "
            "send it as a JSON string",
            problem=Problem.WRONG_TYPE,
            path=a.path,
            path_text=a.path_text,
            subject=a.subject,
        )
    if t is LargeNumber:
        if raw.integer:
            return raw.literal
        if raw.is_finite():
            return str(raw.as_float())  # a float's text, as for any float
        raise _fail(a, f"is a number out of range, got {describe(raw)}; send it as a JSON string", Problem.BAD_VALUE)
    raise _wrong_type(a, "a string", raw)


def _boolean(a: AttributeRule, raw: Any, zone: tzinfo) -> Any:
    if raw is True or raw is False:
        return raw
    raise _wrong_type(a, "true or false", raw)


def _datetime(a: AttributeRule, raw: Any, zone: tzinfo) -> Any:
    if raw.__class__ is not str:
        raise _wrong_type(a, "an ISO 8601 time", raw)
    t = parse_iso(raw, zone)
    if t is None:
        raise _fail(a, f"must be an ISO 8601 time, got {quote_time(raw)}", Problem.BAD_TIMESTAMP)
    return iso_utc(t)


def _structured(a: AttributeRule, raw: Any, zone: tzinfo) -> Any:
    if raw.__class__ is dict or raw.__class__ is list:
        if not _exact(raw, 0):
            raise _nested_inexact(a, *_first_inexact(raw, 0))
        return raw
    raise _wrong_type(a, "an object or a list", raw)


def _exact(node: Any, depth: int) -> bool:
    """Whether the platform gets every number inside `node` as written: no integer beyond ±2^53, no float
    beyond ±2^63 that orjson may have rounded from one (the hot path: values only, no places)."""
    if depth > _MAX_NESTING:
        return True
    # exact classes, as orjson builds them: bool is no int here, and most values are plain scalars
    for v in node.values() if node.__class__ is dict else node:
        t = v.__class__
        if t is float:
            if not _FLOAT_LOW < v < _FLOAT_HIGH:
                return False
        elif t is int:
            if not _INT_LOW <= v <= _INT_HIGH:
                return False
        elif t is dict or t is list:
            if not _exact(v, depth + 1):
                return False
        elif t is LargeNumber and v.integer:
            return False  # a fraction the exact parse kept is settled to orjson's float later (fields.py)
    return True


def _first_inexact(node: Any, depth: int) -> tuple[tuple[PathPart, ...], Any]:
    """The place inside `node` and the value of the first number `_exact` found (only after it did)."""
    for key, v in node.items() if node.__class__ is dict else enumerate(node):
        if v.__class__ is dict or v.__class__ is list:
            if not _exact(v, depth + 1):
                inner, found = _first_inexact(v, depth + 1)
                return (key, *inner), found
        elif not _exact([v], depth):
            return (key,), v
    raise AssertionError("_first_inexact runs only where _exact found a number")


def _nested_inexact(a: AttributeRule, inner: tuple[PathPart, ...], raw: Any) -> FieldError:
    # a key may be a card number or a MAC address used as a key: shown as describe() shows it in a value
    shown = tuple(p if p.__class__ is int or is_field_name(str(p)) else masked(str(p)) for p in inner)
    path = (*a.path, *shown)
    if raw.__class__ is float:
        # maybe an integer beyond 64 bits that orjson rounded: the adapter reads the item again, exactly
        return InexactNumber(
            "is a number beyond ±2^63 that cannot be read exactly (it may be an integer beyond 64 bits), "
            f"got {describe(raw)}; send it as a JSON string, or as a smaller number",
            problem=Problem.BAD_VALUE,
            path=path,
            path_text=path_text(path),
            subject=a.subject,
        )
    what = _INEXACT_INTEGER.format(after="", got=describe(raw), fix=_NESTED_FIX)
    return FieldError(what, problem=Problem.BAD_VALUE, path=path, path_text=path_text(path), subject=a.subject)


_COERCE: dict[NgsiType, Callable[[AttributeRule, Any, tzinfo], Any]] = {
    NgsiType.NUMBER: _number,
    NgsiType.TEXT: _text,
    NgsiType.BOOLEAN: _boolean,
    NgsiType.DATETIME: _datetime,
    NgsiType.STRUCTURED_VALUE: _structured,
}


def coerce(a: AttributeRule, raw: Any, zone: tzinfo) -> Any:
    """`raw` (not null, present) as a value of the attribute's NGSI type, or FieldError."""
    return a.coerce(a, raw, zone)
