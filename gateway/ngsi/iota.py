"""Readings as FIWARE IoT Agent measures: iotagent-json objects and UltraLight 2.0 groups (sans I/O).

What the agents accept (telefonicaid/iotagent-json and iotagent-ul, lib/ulParser.js):
- JSON: a flat object `{"<measure>": value, ..., "TimeInstant": "…Z"}`, or an array of such objects
  (a multi-measure: each element becomes its own update, in array order). A `TimeInstant` measure is
  used as the observation time; without it the agent stamps the arrival time, so a backlog sent after
  an outage must carry it. Measures named `id` or `type` are renamed `measure_id` / `measure_type`.
- UltraLight 2.0: `k|v|k|v`, an optional leading timestamp `<ISO>|k|v` (an odd field count marks it),
  groups separated by `#`. The parser splits on `#` then `|`, refuses empty fields, and treats any group
  holding `@` as a command result — so `|`, `#`, `@` and empty strings cannot appear in keys or values.
  It then `JSON.parse`s every value and keeps the text only where that throws: a text that is valid
  JSON (`8600000`, `0.10`, `true`, `null`, `"x"`) would reach Orion as another value or type, so such
  texts are refused here.

Neither agent checks Orion's character rules and neither retries, so string values get the same
`[ngsi] value_encoding` treatment as NGSI v2 here, before they leave the gateway; a `Relationship`'s
target (an entity id) is sent untouched, as in NGSI v2, since an agent forwards a measure provisioned
as Relationship as it arrives. Both agents read numbers as JavaScript doubles, so an integer beyond
±2^53 is refused here rather than arriving as another number.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway.errors import ReadingError
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.values import NEEDS_ENCODING, encode_percent_value, first_banned
from gateway.records import Reading, check_values, iso_utc

__all__ = [
    "DEVICE_ID_FIELDS",
    "TIME_INSTANT",
    "device_id",
    "is_json_text",
    "json_measure",
    "json_measure_bytes",
    "json_payload",
    "parse_ul",
    "template_fields",
    "ul_group",
    "ul_payload",
]

TIME_INSTANT = "TimeInstant"
DEVICE_ID_FIELDS = ("entity_id", "entity_type", "device", "adapter")

_UL_FORBIDDEN = "|#@"
# JavaScript numbers are doubles: integers beyond ±2^53 lose digits in the agent's JSON.parse.
# (The per-value tests below spell it -(2**53) <= v <= 2**53, which compiles to constants.)
_MAX_SAFE_INTEGER = 2**53
_JSON_INEXACT_FIX = "send it as Text (the digits as a string), or scale it at the source"
# The agent renames these measures (measure_id, measure_type): the attribute would change its name silently.
_AGENT_IGNORED = ("id", "type")


def template_fields(template: str) -> set[str]:
    """The `{placeholder}` names of a str.format template; ValueError if it is malformed."""
    fields: set[str] = set()
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or spec or conv or not name.isidentifier():
            raise ValueError(f"placeholders must be plain {{name}}, got {{{name}}}")
        fields.add(name)
    return fields


def _topic_level(where: str, value: str) -> str:
    """One MQTT topic level: not empty, no `/` and no wildcard, else the topic would change meaning."""
    bad = [c for c in ("/", "+", "#", "\x00") if c in value]
    if not value or bad:
        shown = "empty" if not value else repr(value)
        raise ReadingError(
            f"{where}: must be one MQTT topic level (not empty, no '/', '+', '#'), got {shown}; "
            "change the device_id template or the entity id",
            value=value,
        )
    return value


def device_id(reading: Reading, template: str) -> str:
    """The IoT Agent device id of a reading, from a template over DEVICE_ID_FIELDS."""
    rendered = template.format(
        entity_id=reading.entity_id,
        entity_type=reading.entity_type,
        device=reading.source.device,
        adapter=reading.source.adapter,
    )
    return _topic_level(f"{reading.entity_id}: device_id", rendered)


def _encode_value(where: str, value: Any, encoding: ValueEncoding) -> Any:
    """The value as the agent should forward it to Orion, per `[ngsi] value_encoding` (same as NGSI v2)."""
    if encoding is ValueEncoding.PERCENT:
        return encode_percent_value(value)
    if encoding is ValueEncoding.REJECT:
        banned = first_banned(value)
        if banned is not None:
            raise ReadingError(
                f"{where}: Orion refuses the characters \" ' ( ) ; < = > in values, found {banned!r}, got {value!r}; "
                'set [ngsi] value_encoding = "percent" or clean the value at the source',
                path=where,
            )
    # text-unrestricted: the agent's provisioning must give this attribute the TextUnrestricted type
    return value


def _inexact_integer(value: Any) -> int | None:
    """The first integer in `value`, at any depth, that a JavaScript double cannot hold exactly."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER else value
    if isinstance(value, Mapping):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return None
    for item in value:
        found = _inexact_integer(item)
        if found is not None:
            return found
    return None


def _check_exact(where: str, value: Any) -> None:
    found = _inexact_integer(value)
    if found is not None:
        raise ReadingError(
            f"{where}: the IoT Agent reads numbers as JavaScript doubles, exact only up to ±2^53, got {found}; "
            f"{_JSON_INEXACT_FIX}",
            path=where,
        )


def _check_measure_name(reading: Reading, name: str) -> None:
    if name == TIME_INSTANT:
        raise ReadingError(
            f"{reading.entity_id}.{name}: the name is reserved for the observation time, got an attribute "
            "of that name; the gateway sends observed_at as TimeInstant",
            entity_id=reading.entity_id,
        )
    if name in _AGENT_IGNORED:
        raise ReadingError(
            f"{reading.entity_id}.{name}: the IoT Agent renames measures named id or type to measure_id / "
            f"measure_type, got {name!r}; rename the attribute in the device profile",
            entity_id=reading.entity_id,
        )


def _check_sequence_name(reading: Reading, sequence: str) -> None:
    if sequence in reading.attributes:
        raise ReadingError(
            f"{reading.entity_id}.{sequence}: the name is the uplink's sequence_attribute, got an attribute of "
            "that name; rename the attribute in the device profile or change sequence_attribute",
            entity_id=reading.entity_id,
        )


def _check_reading(reading: Reading) -> None:
    if not reading.attributes:
        raise ReadingError(f"{reading.entity_id}: a measure needs at least one attribute, got none")
    check_values(reading)  # NaN, Infinity and non-JSON objects never reach a payload


# Values every encoding passes through unchanged (they hold no text): no call, no f-string per value.
_UNENCODED = frozenset({float, bool, type(None)})
_SPECIAL_NAMES = frozenset({TIME_INSTANT, *_AGENT_IGNORED})


def _verbatim_scalar(value: Any) -> bool:
    tv = type(value)
    if tv is str:
        return NEEDS_ENCODING.search(value) is None  # neither % nor a character Orion refuses
    # NaN and ±Infinity fail the float test, an integer a double cannot hold the int test
    return (tv is int and -(2**53) <= value <= 2**53) or tv is bool or (tv is float and value - value == 0.0)


# The last list found verbatim, held (so an `is` match is never a new list at a reused address): an
# adapter's constant attribute (a subscription's `controlledProperty`) is one list shared by all its
# readings, and scanning it cost ~0.5 µs a measure. One assignment, so any thread may share it.
_last_verbatim_list: list[Any] | None = None


def _verbatim(value: Any) -> bool:
    """Whether `value` is sent as it is under every value_encoding, passes check_values and arrives unchanged."""
    global _last_verbatim_list
    if type(value) is list:
        if value is _last_verbatim_list:
            return True
        if all(_verbatim_scalar(v) for v in value):
            _last_verbatim_list = value
            return True
        return False
    return _verbatim_scalar(value)


def json_measure(
    reading: Reading, *, encoding: ValueEncoding = ValueEncoding.PERCENT, sequence: str | None = None
) -> dict[str, Any]:
    """One iotagent-json measure object: the attribute values, the buffer seq as `sequence` if named, then TimeInstant."""
    # The common measure (finite floats, ints and bools, texts and flat lists of them with nothing to
    # encode, no metadata, no reserved name) needs neither encoding nor the full check_values walk:
    # one pass instead of two (a race-workload measure, a text and a controlledProperty list among
    # its values: 4.4 → 1.8 µs). Such values come out the same under every value_encoding. Anything
    # else takes the full path, which raises exactly what it always did.
    out: dict[str, Any] = {}
    for name, attr in reading.attributes.items():
        value = attr.value
        tv = type(value)
        if (
            # numbers inline (the common measure): a call per value cost 0.52 → 0.75 µs a 4-number measure
            not (
                (tv is int and -(2**53) <= value <= 2**53)
                or tv is bool
                or (tv is float and value - value == 0.0)
                or _verbatim(value)
            )
            or attr.metadata
            or name in _SPECIAL_NAMES
        ):
            _check_reading(reading)
            return _json_measure(reading, encoding, sequence)
        out[name] = value
    if not out:
        _check_reading(reading)  # raises: a measure needs an attribute
    if sequence is not None:
        _check_sequence_name(reading, sequence)
        out[sequence] = reading.seq
    out[TIME_INSTANT] = iso_utc(reading.observed_at)
    return out


def _json_measure(reading: Reading, encoding: ValueEncoding, sequence: str | None) -> dict[str, Any]:
    """`json_measure` of a reading with any kind of value, once `_check_reading` accepted it."""
    out: dict[str, Any] = {}
    for name, attr in reading.attributes.items():
        if name in _SPECIAL_NAMES:
            _check_measure_name(reading, name)
        value = attr.value
        tv = type(value)
        if tv in _UNENCODED or (tv is int and -(2**53) <= value <= 2**53):
            out[name] = value
            continue
        where = f"{reading.entity_id}.{name}"
        if tv is not str:
            _check_exact(where, value)
        # a Relationship's target is an entity id (checked by check_reading): sent as the entity's own id is
        out[name] = value if attr.type == "Relationship" else _encode_value(where, value, encoding)
    if sequence is not None:
        _check_sequence_name(reading, sequence)
        out[sequence] = reading.seq
    out[TIME_INSTANT] = iso_utc(reading.observed_at)
    return out


def json_measure_bytes(
    reading: Reading, *, encoding: ValueEncoding = ValueEncoding.PERCENT, sequence: str | None = None
) -> bytes:
    """`json_measure` serialized; the unit the uplink packs into messages."""
    try:
        return orjson.dumps(json_measure(reading, encoding=encoding, sequence=sequence))
    except TypeError as exc:  # NaN passes orjson as null, but sets and the like do not
        raise ReadingError(f"{reading.entity_id}: value is not JSON, {exc}", entity_id=reading.entity_id) from exc


def json_payload(measures: Sequence[bytes]) -> bytes:
    """One serialized measure as an object, several as a multi-measure array (keep them ascending by time)."""
    if not measures:
        raise ValueError("json_payload needs at least one measure")
    if len(measures) == 1:
        return measures[0]
    return b"[" + b",".join(measures) + b"]"


def _ul_text(where: str, text: str, what: str) -> str:
    bad = sorted({c for c in text if c in _UL_FORBIDDEN})
    if not text or bad:
        got = "an empty string" if not text else repr(text)
        raise ReadingError(
            f"{where}: UltraLight 2.0 {what}s cannot be empty or contain '|', '#' or '@', got {got}; "
            'use format = "iota-json" for free text',
            path=where,
        )
    return text


# JSON texts start with one of these after optional JSON whitespace (RFC 8259 section 2): a quick
# test before the parse, since most texts (names, states) start with a letter outside the set.
_JSON_START = frozenset('{["-0123456789tfn')
_JSON_SPACE = " \t\n\r"
_JSON_START_OR_SPACE = _JSON_START | frozenset(_JSON_SPACE)


def _reject_constant(token: str) -> Any:
    # Python's json takes NaN and ±Infinity; JavaScript's JSON.parse throws on them, so the agent keeps the text
    raise ValueError(token)


def is_json_text(text: str) -> bool:
    """Whether JavaScript's `JSON.parse(text)` succeeds (it would then turn the text into another value)."""
    head = text[:1]
    if head in _JSON_SPACE and head:
        head = text.lstrip(_JSON_SPACE)[:1]
    if head not in _JSON_START or not head:
        return False
    try:
        json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return False
    return True


def _as_javascript(text: str) -> str:
    """What the agent makes of a JSON text, for a technician's message."""
    value = json.loads(text)
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return f"the number {int(value)}"  # JavaScript prints 1.0 as 1
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r} without its quotes"
    return "an object" if isinstance(value, dict) else "an array"


def _ul_string(where: str, value: str, encoding: ValueEncoding, *, verbatim: bool = False) -> str:
    text = _ul_text(where, value if verbatim else _encode_value(where, value, encoding), "value")
    # most texts (names, states) start with a letter no JSON text starts with: no call for them
    if text[0] in _JSON_START_OR_SPACE and is_json_text(text):
        raise ReadingError(
            f"{where}: the UltraLight agent reads a text that is valid JSON as JSON and would store "
            f'{_as_javascript(text)} instead, got {value!r}; use format = "iota-json" for this attribute',
            path=where,
        )
    return text


def _ul_value(where: str, value: Any, encoding: ValueEncoding, *, relationship: bool = False) -> str:
    if type(value) is float:  # the usual sensor value first: an exact type test, no isinstance chain
        return repr(value)  # shortest text that reads back to the same number
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            raise ReadingError(
                f"{where}: the UltraLight agent reads numbers as JavaScript doubles, exact only up to ±2^53, got "
                f'{value}; use format = "iota-json" with the value as text, or scale it at the source',
                path=where,
            )
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _ul_string(where, value, encoding, verbatim=relationship)
    kind = "null" if value is None else type(value).__name__
    raise ReadingError(
        f"{where}: UltraLight 2.0 carries only text, numbers and booleans, got {kind}; "
        'use format = "iota-json" for structured values',
        path=where,
    )


def ul_group(reading: Reading, *, encoding: ValueEncoding = ValueEncoding.PERCENT, sequence: str | None = None) -> str:
    """One UltraLight 2.0 measure group with its leading timestamp: `<ISO>|k|v|k|v`, and `|<sequence>|<seq>` if named."""
    _check_reading(reading)
    fields = [iso_utc(reading.observed_at)]
    for name, attr in reading.attributes.items():
        where = f"{reading.entity_id}.{name}"
        _check_measure_name(reading, name)
        fields.append(_ul_text(where, name, "key"))
        fields.append(_ul_value(where, attr.value, encoding, relationship=attr.type == "Relationship"))
    if sequence is not None:
        _check_sequence_name(reading, sequence)
        fields.append(sequence)
        fields.append(str(reading.seq))
    return "|".join(fields)


def ul_payload(groups: Sequence[str]) -> bytes:
    """Groups joined with `#` (keep them ascending by time): one message, one update per group."""
    if not groups:
        raise ValueError("ul_payload needs at least one group")
    return "#".join(groups).encode()


def parse_ul(payload: str) -> list[dict[str, str]]:
    """How iotagent-ul reads a measure payload: one dict per group, the timestamp as TimeInstant.

    Mirrors the agent's rules (split on `#`, then `|`; an odd field count means a leading timestamp;
    empty fields and `@` are refused) so tests and the CLI can check what the agent will see.
    """
    groups: list[dict[str, str]] = []
    for i, group in enumerate(payload.split("#")):
        if group.startswith("|"):
            group = group[1:]
        if "@" in group:
            raise ValueError(f"group {i}: '@' makes the agent read a command result, got {group!r}")
        fields = group.split("|")
        timestamp = None
        if len(fields) % 2 == 1:
            timestamp, fields = fields[0], fields[1:]
        if not fields or any(f == "" for f in fields) or timestamp == "":
            raise ValueError(f"group {i}: empty field or no key/value pair, got {group!r}")
        measures = dict(zip(fields[0::2], fields[1::2], strict=True))
        if timestamp is not None:
            measures[TIME_INSTANT] = timestamp
        groups.append(measures)
    return groups
