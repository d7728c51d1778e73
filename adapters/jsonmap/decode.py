"""JSON from bytes for every JSON adapter: orjson on the hot path, the standard library where orjson cannot give a number.

Theory of operation. orjson reads every message and document first: it is fast, and it refuses what
JSON or the platform cannot take (NaN, lone surrogates, invalid UTF-8, nesting beyond 1024 levels). It
also refuses a whole document for one number beyond a double's range (`1e400`, a 400-digit integer),
and gives an integer beyond 64 bits as a rounded float (serial 18446744073709551616 becomes
1.8446744073709552e+19). So:

- `loads`: when orjson refuses, and only then, `exact_loads` reads the same bytes with the standard
  library's parser. A number orjson cannot give as written becomes a LargeNumber (its literal), which
  the readers (values, timestamps, locations, templates) take as their type needs (a Number the
  nearest double, a Text field or an id an integer's exact digits) or refuse for their own field
  (`bad_value`), so the other items still map. Whatever orjson refuses for any other reason stays
  refused, with orjson's position.
- A reader that meets one of orjson's rounded floats where the digits matter (a Text field, an id)
  raises InexactNumber; the adapter's mapper maps the document or message again from `exact_loads`.
  If even that cannot read it (nesting the standard library's parser does not reach), InexactNumber
  is the field's refusal (wrong_type): never a rounded serial number.

Neither costs the hot path anything: both run only after orjson refused, or rounded an integer that a
Text field or an id reads.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, NoReturn

import orjson

from adapters.jsonmap.errors import FieldError, not_json
from adapters.jsonmap.numbers import LargeNumber

_INT_MIN: Final = -(2**63)  # orjson's integers; beyond them it gives floats
_INT_MAX: Final = 2**64 - 1
_INT_DIGITS: Final = 20  # a longer integer literal is beyond them (and int() of 4300+ digits raises)
ROUNDED: Final = 2.0**63  # a float of orjson's this large may be an integer it rounded
_MAX_DEPTH: Final = 1024  # orjson's limit


class InexactNumber(FieldError):
    """wrong_type: a Text field or an id met a float orjson may have rounded from an integer beyond 64 bits.

    The JSON adapters' mappers catch it before any FieldError and map the document again from
    `exact_loads`; where they cannot (or for any other caller) it is the refusal it says.
    """


def loads(data: bytes | str) -> Any:
    """`data` as orjson reads it; where orjson refuses, as `exact_loads` reads it; FieldError(not_json) if neither."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return reread(data, exc)


def reread(data: bytes | str, refused: orjson.JSONDecodeError) -> Any:
    """After orjson `refused` `data`: `exact_loads`' document, or FieldError(not_json) at orjson's position.

    For a hot path that calls orjson itself (the MQTT mapper: no extra call per message).
    """
    try:
        return exact_loads(data)
    except ValueError:
        # orjson's position: the first thing it refused, as the message always said
        raise not_json(refused.pos, data) from None


def exact_loads(data: bytes | str) -> Any:
    """`data` read by the standard library's parser, each number orjson cannot give as written a LargeNumber.

    ValueError for whatever orjson refuses for another reason (not UTF-8, NaN and Infinity, lone
    surrogates, nesting beyond 1024 levels or beyond what the parser's recursion reaches).
    """
    # bytes are UTF-8 or nothing, as for orjson (json.loads would guess UTF-16 and UTF-32 too)
    text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    try:
        doc = json.loads(
            text, parse_int=_integer, parse_float=_float, parse_constant=_constant, object_pairs_hook=_object
        )
    except RecursionError:
        raise ValueError("nested deeper than the parser reaches") from None
    _check_strings(doc)
    return doc


def _integer(literal: str) -> int | LargeNumber:
    if len(literal) <= _INT_DIGITS:
        n = int(literal)
        if _INT_MIN <= n <= _INT_MAX:
            return n
    return LargeNumber(literal)


def _float(literal: str) -> float | LargeNumber:
    f = float(literal)
    # a finite float this large stays a LargeNumber too: a Text field then takes its text without
    # asking for the exact parse again (InexactNumber), and a Number the same float as ever
    if math.isfinite(f) and -ROUNDED < f < ROUNDED:
        return f
    return LargeNumber(literal)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # a key given twice keeps its last value; the values it drops must pass `_check_strings` too, as for orjson
        _check_strings([value for _, value in pairs])
    return obj


def _constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _check_strings(doc: Any) -> None:
    """ValueError for a lone surrogate (no uplink can encode it) or nesting beyond orjson's limit."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        t = node.__class__
        if t is str:
            _utf8(node)
            continue
        if (t is dict or t is list) and depth >= _MAX_DEPTH:
            raise ValueError("nested deeper than 1024 levels")
        if t is dict:
            for key, value in node.items():
                _utf8(key)
                stack.append((value, depth + 1))
        elif t is list:
            stack.extend((value, depth + 1) for value in node)


def _utf8(text: str) -> None:
    if not text.isascii():
        text.encode("utf-8")  # UnicodeEncodeError, a ValueError, for a lone surrogate
