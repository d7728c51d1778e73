"""The reversible encoding of string values that contain characters Orion refuses.

`percent` (the Japanese FIWARE community's convention): `%` first, then `" ' ( ) ; < = >` become
`%25 %22 %27 %28 %29 %3B %3C %3D %3E`. Applied in one pass over every string of a value — nested
strings, object keys and metadata values included — so `decode_percent(encode_percent(s)) == s`
for every text, and the result is also what `urllib.parse.unquote` / JavaScript's
`decodeURIComponent` turn back into the original. `%` is always encoded, even in a string with
nothing else to encode: otherwise a device text such as `%28` could not be told apart from an
encoded `(`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.identifiers import BANNED_CHARS

_ENCODE = str.maketrans({"%": "%25", **{ch: f"%{ord(ch):02X}" for ch in BANNED_CHARS}})
_DECODE = {f"{ord(ch):02X}": ch for ch in "%" + BANNED_CHARS}
# a string without these is the same under every value_encoding (gateway.ngsi.iota's fast path)
NEEDS_ENCODING = re.compile("[%" + re.escape(BANNED_CHARS) + "]")
_BANNED_RE = re.compile("[" + re.escape(BANNED_CHARS) + "]")
_ENCODED_RE = re.compile("%(" + "|".join(_DECODE) + ")")


_PLAIN_SCALARS = frozenset({int, float, bool, type(None)})
# Sent untouched under every encoding: what the source typed TextUnrestricted, and a Relationship's
# target, which names an entity by its id (`%` is legal in ids, and an id check_reading accepted holds
# none of the characters Orion refuses in values): encoded, it would name an entity that does not exist
_VERBATIM_TYPES = frozenset({"TextUnrestricted", "Relationship"})


def encode_percent(text: str) -> str:
    if NEEDS_ENCODING.search(text) is None:
        return text
    return text.translate(_ENCODE)


def decode_percent(text: str) -> str:
    if "%" not in text:
        return text
    return _ENCODED_RE.sub(lambda m: _DECODE[m.group(1)], text)


def encode_percent_value(value: Any) -> Any:
    """`value` with every string (keys too) percent-encoded, as plain dicts and lists."""
    if type(value) in _PLAIN_SCALARS:
        return value
    if isinstance(value, str):
        return encode_percent(value)
    if isinstance(value, Mapping):
        return {encode_percent(k): encode_percent_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_percent_value(v) for v in value]
    return value


def decode_percent_value(value: Any) -> Any:
    if isinstance(value, str):
        return decode_percent(value)
    if isinstance(value, Mapping):
        return {decode_percent(k): decode_percent_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [decode_percent_value(v) for v in value]
    return value


def first_banned(value: Any) -> str | None:
    """The first character Orion would refuse in any string (or key) of `value`, or None."""
    if isinstance(value, str):
        m = _BANNED_RE.search(value)
        return m.group(0) if m else None
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = first_banned(k) or first_banned(v)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for v in value:
            found = first_banned(v)
            if found:
                return found
    return None


def encode_attribute_value(atype: str, value: Any, encoding: ValueEncoding) -> tuple[str, Any]:
    """(type, value) to send for an attribute under the configured encoding.

    `text-unrestricted` only changes plain `Text` strings that need it (to type `TextUnrestricted`,
    value untouched); structured and custom-typed values fall back to `percent`, because Orion's
    exemption is documented for attribute values of that one type. `reject` sends values as they are
    (`check_reading` has already refused anything Orion would refuse). An attribute the source itself
    typed `TextUnrestricted`, and a `Relationship`'s target (an entity id), are always sent untouched.
    """
    if type(value) in _PLAIN_SCALARS or atype in _VERBATIM_TYPES or encoding is ValueEncoding.REJECT:
        return atype, value
    if encoding is ValueEncoding.TEXT_UNRESTRICTED and atype == "Text" and isinstance(value, str):
        return ("TextUnrestricted" if _BANNED_RE.search(value) else "Text"), value
    return atype, encode_percent_value(value)


def encode_metadata_value(value: Any, encoding: ValueEncoding) -> Any:
    """Metadata values: `percent` unless `reject` (Orion documents no TextUnrestricted for metadata)."""
    if encoding is ValueEncoding.REJECT:
        return value
    return encode_percent_value(value)
