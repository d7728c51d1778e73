"""Refuse, before it is stored, any Reading that Orion or an NGSI-LD broker would refuse.

`check_reading` runs on every reading on its way into the buffer, so the parts that rarely change
(entity id, type and attribute names) are validated once per combination and remembered in a
bounded cache; values are checked every time, with a fast path for the common scalar/type pairs.

Beyond Orion's 400s it refuses what makes Orion answer **500** (which an uplink must treat as
transient and would retry forever): object keys starting with `$` (update operators, or refused by
its database), GeoJSON its MongoDB index cannot take (see `gateway.ngsi.geojson`), and attribute
values Orion-LD cannot hold (over `MAX_VALUE_BYTES` of JSON); and an entity no request can carry
(over `MAX_ENTITY_BYTES` of JSON as NGSI v2 or NGSI-LD: Orion answers 413 at every try, and the
reading, acknowledged at its source, would be dead-lettered). It refuses what would arrive changed
too: integers beyond ±2^53, which Orion and the IoT Agents hold as doubles (`EXACT_INTEGER_MAX`, the
limit adapters.jsonmap applies at the field too), attribute and metadata names NGSI-LD reserves
(JSON-LD keywords such as `@id`; metadata become sub-properties there, and the broker refuses the
entity) and a metadata `unitCode` that is not text (NGSI-LD's unitCode member is a string).

The entity's size is bounded as the values are checked, without converting it: a fixed room per
attribute and metadata item (names, types and units have at most 256 characters; a number, a date
or a short text fits beside them), plus the most each longer value can take as JSON once encoded.
Only an entity whose bound passes the limit is converted and measured, to be refused on its real size.

It also owns the NGSI value typing the converters share: `ngsi_type` (explicit, else inferred from
the value) and `canonical_datetime` (any ISO 8601 with a zone → `YYYY-MM-DDThh:mm:ss.sssZ` UTC).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.errors import ReadingError
from gateway.ngsi import geojson
from gateway.ngsi import identifiers as ids
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.values import first_banned
from gateway.records import Attribute, Reading, check_values, iso_utc

MAX_NESTING = 50
# Orion-LD keeps an attribute in a buffer "just under 64k" (FIWARE/context.Orion-LD#954, #1470:
# bigger values crash or restart it); leave room for the attribute's own members
MAX_VALUE_BYTES = 63_000
# orjson escapes a control character as \uXXXX: a string this short can never exceed the limit
_TEXT_FAST_LIMIT = MAX_VALUE_BYTES // 6
# Orion refuses a request body over 1 MiB (its default -inReqPayloadMaxSize) with 413 RequestEntityTooLarge,
# however the uplink splits a batch: an entity that cannot fit one request alone is never delivered
MAX_REQUEST_BYTES = 1_048_576
# what a request adds around one entity: v2's {"actionType":"append","entities":[...]} (37 bytes), or
# NGSI-LD's brackets and, with context_mode = "inline", the entity's "@context" member (14 bytes + the URL)
_REQUEST_ROOM = 4096
MAX_ENTITY_BYTES = MAX_REQUEST_BYTES - _REQUEST_ROOM
# The most JSON an entity takes, in either form, apart from its attributes (id, type, the time
# attributes: 610 bytes with an id and type of 256 characters), an attribute apart from its value and
# metadata (name, type and unit of 256 characters, the observation time, NGSI-LD's urn: prefix of a
# Relationship target: 914) and a metadata item apart from its value (537). Beside those, each room
# holds a number (24 bytes), a date (55, NGSI-LD's typed value) or a text of up to `_SHORT_TEXT`
# characters (6 bytes each at most, and its quotes): only longer values add to the bound.
# tests/ngsi/test_entity_size.py holds the bound to the converters' output.
_ENTITY_ROOM = 1024
_ATTRIBUTE_ROOM = 1280
_METADATA_ROOM = 1024
_SHORT_TEXT = 60
# the bound of the attributes' sum, once the entity's room is taken
_ATTRIBUTES_LIMIT = MAX_ENTITY_BYTES - _ENTITY_ROOM
# a value `_json_size` could not measure: the bound then sends the entity to be measured whole
_UNMEASURED = MAX_ENTITY_BYTES + 1
# Orion holds a Number as a C double (ContextAttribute::numberValue, read with rapidjson's GetDouble)
# and the IoT Agents JSON.parse it into one: beyond ±2^53 an integer arrives as another number
# (9007199254740993 as ...992), on every uplink, silently. The one rule for every integer a reading
# carries, whatever made it: adapters.jsonmap holds its Number fields to the same limit and reason.
EXACT_INTEGER_MAX = 2**53
DOUBLE_CHANGES_IT = "which Orion and the IoT Agents hold as a double (it would arrive as another number)"
_EXACT_MIN, _EXACT_MAX = -EXACT_INTEGER_MAX, EXACT_INTEGER_MAX
_INEXACT = f"is beyond ±2^53, {DOUBLE_CHANGES_IT}"
_INEXACT_FIX = "declare the attribute Text and send the digits as a string, or scale it at the source"
# Written by the converters themselves, so a reading must not bring its own
CONVERTER_ATTRIBUTES = frozenset({"TimeInstant", "timeSource"})
# NGSI-LD entity members and system attributes; refused so that one reading fits every uplink
LD_RESERVED_ATTRIBUTES = frozenset({"@context", "scope", "createdAt", "modifiedAt", "deletedAt"})
# An NGSI-LD entity is JSON-LD, where a name starting with @ is a keyword (@context, @id, @type, @value,
# ...) or has a keyword's form, which JSON-LD 1.1 reserves for future keywords and has processors
# ignore: Orion-LD takes @id/@type for the entity's id/type and refuses the entity holding both
# (400 "Both /id/ and /@id/ field in an entity", pCheckEntity.cpp), a JSON-LD broker drops the rest.
# Refused as attribute and metadata names (sub-properties there) so that one reading fits every uplink.
LD_KEYWORD_CHAR = "@"
# NGSI-LD insists these are GeoProperties
LD_GEO_NAMES = frozenset({"location", "observationSpace", "operationSpace"})
# an NGSI-LD attribute's own members: a sub-property by one of these names would be the member itself
LD_ATTRIBUTE_MEMBERS = frozenset({"value", "object", "observedAt", "datasetId", "languageMap"})
# NGSI-LD has no metadata: each item becomes a sub-property of its attribute, where the broker refuses
# these names (a 207 for the whole entity) or they are the attribute's own members (`type`, `createdAt`,
# `value`: the converter would have to leave them out, and the reading would arrive without them)
LD_RESERVED_METADATA = LD_GEO_NAMES | LD_RESERVED_ATTRIBUTES | LD_ATTRIBUTE_MEMBERS | {"id", "type"}
DEPRECATED_GEO_TYPES = frozenset({"geo:point", "geo:line", "geo:box", "geo:polygon"})
# Orion parses both as dates ("ISO8601" is its older spelling); the converters render them canonical
DATETIME_TYPES = frozenset({"DateTime", "ISO8601"})
_URN_PREFIX = "urn:ngsi-ld:"
# a device's own time for one attribute: v2 writes TimeInstant from observed_at and refuses a TimeInstant
# metadata, so NGSI-LD's observedAt comes from observed_at too, or the two uplinks would disagree on the time
_OBSERVED_AT_FIX = (
    "rename the metadata (each attribute's observedAt is the reading's observed_at:"
    " give the device's time as the reading's time)"
)
_DATETIME_FIX = "send ISO 8601 with a zone, such as 2024-05-01T09:00:00+09:00 or 2024-05-01T00:00:00Z"


_INFERRED: dict[type, str] = {
    bool: "Boolean",
    int: "Number",
    float: "Number",
    str: "Text",
    type(None): "None",
    dict: "StructuredValue",
    list: "StructuredValue",
}


def ngsi_type(declared: str, value: Any) -> str:
    """The NGSI type to send: the declared one, else Orion's own defaults (bool is Boolean, not Number)."""
    if declared:
        return declared
    inferred = _INFERRED.get(type(value))
    if inferred is not None:
        return inferred
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "Text"
    if value is None:
        return "None"
    return "StructuredValue"


def utc_instant(text: str) -> datetime:
    """ISO 8601 with a zone → an aware UTC datetime; ValueError saying why (in our words) when impossible."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("is not an ISO 8601 date and time") from None
    if t.tzinfo is None:
        raise ValueError("must carry a time zone (Z or +09:00)")
    try:
        return t.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


def canonical_shape(text: str) -> bool:
    """Whether `text` is laid out as `YYYY-MM-DDThh:mm:ss.sssZ`; valid too once `utc_instant` accepts it."""
    return (
        len(text) == 24
        and text[23] == "Z"
        and text[19] == "."
        and text[10] == "T"
        and text[4] == "-"
        and text[7] == "-"
        and text[13] == ":"
        and text[16] == ":"
    )


def is_canonical_datetime(text: str) -> bool:
    """Whether `text` is a valid date and time in Orion's form already (every `dateObserved` is)."""
    if not canonical_shape(text):
        return False
    try:
        utc_instant(text)
    except ValueError:
        return False
    return True


def canonical_datetime(text: str) -> str:
    """ISO 8601 with a zone → Orion's `YYYY-MM-DDThh:mm:ss.sssZ`; ValueError saying why when impossible."""
    if canonical_shape(text):
        utc_instant(text)  # checked, not rebuilt: a fifth of the cost
        return text
    return iso_utc(utc_instant(text))


def value_kind(value: Any) -> str:
    """The JSON kind of a value, as a technician reads it in an error message."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Which JSON values each well-known NGSI type may carry (null is always allowed)
_VALUE_RULES: dict[str, tuple[str, Any]] = {
    "Number": ("a number", _is_number),
    "Boolean": ("true or false", lambda v: isinstance(v, bool)),
    "Text": ("a string", lambda v: isinstance(v, str)),
    "TextUnrestricted": ("a string", lambda v: isinstance(v, str)),
    "StructuredValue": ("an object or an array", lambda v: isinstance(v, (Mapping, list, tuple))),
    "DateTime": ("an ISO 8601 string", lambda v: isinstance(v, str)),
    "ISO8601": ("an ISO 8601 string", lambda v: isinstance(v, str)),
    "geo:json": ("a GeoJSON object", lambda v: isinstance(v, Mapping)),
    "Relationship": ("an entity id string", lambda v: isinstance(v, str)),
}
# (declared type, Python type) pairs that need no further check: the per-value fast path
_PLAIN_MATCHES = frozenset(
    {("Number", int), ("Number", float), ("Boolean", bool), ("Text", str), ("TextUnrestricted", str)}
)
_isfinite = math.isfinite
_TYPE_FIX = "make the device profile's data type match, or declare the attribute with the type of its values"


_DOLLAR_FIX = "rename the key (no leading $) in the device profile or decoder"
_NOT_JSON = "must be JSON data (str, number, bool, null, list, object)"


def _int_problem(value: int) -> tuple[str, str]:
    """Why an integer outside ±2^53 cannot be sent (the caller has found it outside); beyond 64 bits, where
    it could not even be serialized, the reason a technician can act on is the same."""
    return f"integer {value} {_INEXACT}", _INEXACT_FIX


def _key_problem(k: Any) -> tuple[str, str] | None:
    if type(k) is not str:
        return f"object keys must be strings, found {k!r}", ""
    if k[:1] == "$":
        # Orion executes $inc, $set, ... and its database refuses any other $-key (500)
        return f"object key {k!r} starts with '$', which Orion takes for an update operator", _DOLLAR_FIX
    if not k or "\x00" in k:
        return f"object key {k!r} must be non-empty and free of NUL characters (its database refuses it)", ""
    return None if k.isascii() else _text_problem(k)


def _text_problem(text: str) -> tuple[str, str] | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (it holds a lone surrogate)", ""
    return None


def _scan(value: Any, level: int) -> tuple[str, str] | None:
    """One pass over a value: JSON types, finite numbers, exact ints, valid text, storable keys, nesting."""
    t = type(value)
    if t is str:
        return None if value.isascii() else _text_problem(value)
    if t is float:
        return None if math.isfinite(value) else ("must be a finite number", "")
    if t is int:
        return None if _EXACT_MIN <= value <= _EXACT_MAX else _int_problem(value)
    if t is bool or value is None:
        return None
    if t is dict or isinstance(value, Mapping):
        if level >= MAX_NESTING:
            return f"nesting deeper than {MAX_NESTING} levels, Orion refuses it", ""
        for k, v in value.items():
            problem = _key_problem(k) or _scan(v, level + 1)
            if problem:
                return problem
        return None
    if t is list or isinstance(value, (list, tuple)):
        if level >= MAX_NESTING:
            return f"nesting deeper than {MAX_NESTING} levels, Orion refuses it", ""
        for v in value:
            problem = _scan(v, level + 1)
            if problem:
                return problem
        return None
    # subclasses (an IntEnum, a str Enum) serialize as their base type
    if isinstance(value, str):
        return None if value.isascii() else _text_problem(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if _EXACT_MIN <= value <= _EXACT_MAX else _int_problem(value)
    if isinstance(value, float):
        return None if math.isfinite(value) else ("must be a finite number", "")
    return _NOT_JSON, ""


def _json_size(value: Any) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return 0  # not plain dicts/lists: measured after encoding by the uplink instead


def _value_bound(value: Any, measured: int, reject: bool) -> int:
    """The most `value` takes as JSON in either entity beyond its room; `measured` is its JSON size when
    the checks took it (0: they could not), else -1."""
    if isinstance(value, str):
        n = len(value)
        if measured >= 0:
            # percent-encoding makes a character at most 2 bytes longer (`%` is `%25`, `\"` is `%22`)
            return measured + 2 * n
        # a character takes at most 6 bytes (a control as \u001f; percent-encoded 3, UTF-8 at most 4)
        return 0 if n <= _SHORT_TEXT else 6 * n + 2
    if measured < 0:
        return 0  # a number, a bool or null
    if measured == 0:
        return _UNMEASURED
    # percent-encoding turns each byte of a string at most into 3, and `reject` sends the value as it is
    return measured if reject else 3 * measured


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ReadingChecker:
    """Validates readings; remembers up to `cache_size` (id, type, attribute names) combinations."""

    def __init__(self, *, cache_size: int = 4096) -> None:
        self._cache_size = cache_size
        self._identities: dict[tuple[str, str, tuple[str, ...]], None] = {}
        self._types: set[str] = {
            "Number",
            "Boolean",
            "Text",
            "StructuredValue",
            "DateTime",
            "geo:json",
            "Relationship",
            "TextUnrestricted",
            "None",
        }
        self._units: set[str] = set()
        self._last_seen: datetime | None = None
        # the last date accepted on the fast path below, held like _last_seen: a burst's readings share
        # one `dateObserved` string, so one check serves them all
        self._last_date: str | None = None
        # The last Attribute with a list or object value that passed, and whether under `reject`:
        # an adapter's constant attribute (a subscription's `controlledProperty`) is one object shared
        # by all its readings, and its value checks cost ~1 µs a reading. Held, so an `is` match is
        # never a new object at a reused address; the checks of its name still run. Its size bound is held too.
        self._last_structured: tuple[Attribute | None, bool, int] = (None, False, 0)

    @property
    def cached_identities(self) -> int:
        return len(self._identities)

    # ------------------------------------------------------------------------------ identity

    def _check_identity(self, r: Reading) -> None:
        where = r.source.adapter + (f"/{r.source.device}" if r.source.device else "")
        for check, text, what in (
            (ids.check_entity_id, r.entity_id, "entity_id"),
            (ids.check_entity_type, r.entity_type, "entity_type"),
        ):
            try:
                check(text)
            except ValueError as exc:
                raise ReadingError(f"{where}: {exc}, got {text!r}", entity_id=text, field=what) from None
        ld_id = r.entity_id if r.entity_id.startswith("urn:") else f"{_URN_PREFIX}{r.entity_type}:{r.entity_id}"
        if len(ld_id) > 256 or ld_id == "urn:":
            raise ReadingError(
                f"{where}: entity id must stay within 256 characters as the NGSI-LD id {_URN_PREFIX}<type>:<id>,"
                f" got {len(ld_id)} characters",
                entity_id=r.entity_id,
            )
        for name in r.attributes:
            try:
                ids.check_attribute_name(name)
            except ValueError as exc:
                raise ReadingError(
                    f"{r.entity_id}: {exc}, got {name!r}", entity_id=r.entity_id, attribute=name
                ) from None
            if name in CONVERTER_ATTRIBUTES or name in LD_RESERVED_ATTRIBUTES:
                why = (
                    "written by the converter (set observed_at instead)"
                    if name in CONVERTER_ATTRIBUTES
                    else "reserved by NGSI-LD"
                )
                raise ReadingError(
                    f"{r.entity_id}: attribute name must not be {name!r}, it is {why}, got {name!r}",
                    entity_id=r.entity_id,
                    attribute=name,
                )
            if name[0] == LD_KEYWORD_CHAR:  # names are never empty here
                raise ReadingError(
                    f"{r.entity_id}: attribute name must not start with '@', NGSI-LD (JSON-LD) reserves such names"
                    f" for its keywords (an NGSI-LD broker refuses or drops the attribute), got {name!r};"
                    " rename the attribute in the device profile or decoder",
                    entity_id=r.entity_id,
                    attribute=name,
                )

    # -------------------------------------------------------------------------------- values

    def _fail(
        self, r: Reading, name: str, what: str, value: Any, fix: str = "", *, got: str | None = None, **params: Any
    ) -> ReadingError:
        tail = f"; {fix}" if fix else ""
        return ReadingError(
            f"{r.entity_id}.{name}: {what}, got {_shown(value) if got is None else got}{tail}",
            entity_id=r.entity_id,
            entity_type=r.entity_type,
            attribute=name,
            **params,
        )

    def _check_type_name(self, r: Reading, name: str, atype: str) -> None:
        if atype in self._types:
            return
        if atype in DEPRECATED_GEO_TYPES:
            raise self._fail(r, name, f"type {atype} is deprecated by Orion", atype, "use geo:json with [lon, lat]")
        try:
            ids.check_attribute_type(atype)
        except ValueError as exc:
            raise self._fail(r, name, str(exc), atype) from None
        if len(self._types) < self._cache_size:
            self._types.add(atype)

    def _check_typed(self, r: Reading, name: str, atype: str, value: Any) -> None:
        rule = _VALUE_RULES.get(atype)
        if rule is None or value is None:
            return
        wanted, accepts = rule
        if not accepts(value):
            raise self._fail(
                r,
                name,
                f"type {atype} needs {wanted}",
                value,
                _TYPE_FIX,
                got=f"{value_kind(value)} {_shown(value)}",
                declared_type=atype,
                kind=value_kind(value),
            )
        if atype in DATETIME_TYPES:
            try:
                utc_instant(value)
            except ValueError as exc:
                raise self._fail(r, name, f"{atype} {exc}", value, _DATETIME_FIX, declared_type=atype) from None
        elif atype == "geo:json":
            problem = geojson.problem(value)
            if problem:
                raise self._fail(r, name, f"geo:json {problem[0]}", value, problem[1], declared_type=atype)
        elif atype == "Relationship":
            try:
                ids.check_entity_id(value)
            except ValueError as exc:
                raise self._fail(r, name, f"Relationship target {exc}", value) from None
            if value == "urn:":  # kept as a URN by the NGSI-LD encoder, and no URI: Orion-LD refuses the entity
                raise self._fail(
                    r, name, "Relationship target must name an entity after urn:", value, "give the target's full URN"
                )

    def _check_structure(self, r: Reading, name: str, value: Any) -> int:
        """Checks a value's structure; returns its JSON size when measured (0: unmeasurable), else -1."""
        problem = _scan(value, 0)
        if problem:
            # `records.check_values` names the exact place (levels[1], deep[0][0]...) for what it covers
            check_values(r)
            raise self._fail(r, name, problem[0], value, problem[1])
        t = type(value)
        if (
            t is dict
            or t is list
            or (t is str and len(value) > _TEXT_FAST_LIMIT)
            or isinstance(value, (Mapping, tuple))
        ):
            size = _json_size(value)
            self._check_size(r, name, size, value)
            return size
        return -1

    def _check_size(self, r: Reading, name: str, size: int, value: Any) -> None:
        if size > MAX_VALUE_BYTES:
            raise self._fail(
                r,
                name,
                f"value takes {size} bytes as JSON, more than the {MAX_VALUE_BYTES} an NGSI-LD broker (Orion-LD) holds",
                value,
                "split it into several attributes or send a reference to the data instead",
            )

    def _check_banned(self, r: Reading, name: str, value: Any) -> None:
        ch = first_banned(value)
        if ch is not None:
            raise self._fail(
                r,
                name,
                f"value contains {ch!r}, which Orion refuses",
                value,
                'set [ngsi] value_encoding = "percent" (reversible) or fix the source',
                character=ch,
            )

    def _check_metadata(self, r: Reading, name: str, attr: Attribute, reject: bool) -> tuple[bool, int]:
        """Checks an attribute's metadata; (whether it carries `ignoreType: true`, the most it takes as JSON)."""
        ignore = False
        bound = len(attr.metadata) * _METADATA_ROOM
        for mname, mvalue in attr.metadata.items():
            where = f"{name}.metadata.{mname}"
            try:
                ids.check_metadata_name(mname)
            except ValueError as exc:
                raise self._fail(r, where, str(exc), mname) from None
            if mname in LD_RESERVED_METADATA:
                raise self._fail(
                    r,
                    where,
                    f"metadata name must not be {mname!r}, NGSI-LD reserves it (metadata become sub-properties there)",
                    mname,
                    _OBSERVED_AT_FIX if mname == "observedAt" else "rename the metadata",
                    metadata=mname,
                )
            if mname[0] == LD_KEYWORD_CHAR:
                raise self._fail(
                    r,
                    where,
                    "metadata name must not start with '@', NGSI-LD (JSON-LD) reserves such names for its keywords"
                    " (metadata become sub-properties there)",
                    mname,
                    "rename the metadata",
                    metadata=mname,
                )
            if mname == "TimeInstant" or (mname == "unitCode" and attr.unit is not None):
                raise self._fail(r, where, "metadata is written by the converter (from observed_at / unit)", mname)
            typed = isinstance(mvalue, Mapping) and "value" in mvalue and set(mvalue) <= {"type", "value"}
            value = mvalue["value"] if typed else mvalue
            if mname == "unitCode" and value is not None and not isinstance(value, str):
                # v2 would carry any value; NGSI-LD's unitCode member only text (ld.py would have to drop it)
                raise self._fail(
                    r,
                    where,
                    "unitCode must be text, a UN/CEFACT common code such as MTR, CEL or P1"
                    " (NGSI-LD's unitCode member is a string)",
                    value,
                    "give the unit as the attribute's unit instead",
                    got=f"{value_kind(value)} {_shown(value)}",
                    metadata=mname,
                )
            mtype = ngsi_type(str(mvalue.get("type") or "") if typed else "", value)
            self._check_type_name(r, where, mtype)
            size = self._check_structure(r, where, value)
            if size >= 0 or (isinstance(value, str) and len(value) > _SHORT_TEXT):
                bound += _value_bound(value, size, reject)
            self._check_typed(r, where, mtype, value)
            if reject:
                self._check_banned(r, where, value)
            if mname == "ignoreType":
                if not isinstance(value, bool):
                    raise self._fail(r, where, "ignoreType must be true or false", value)
                ignore = value
        return ignore, bound

    def check(self, r: Reading, *, encoding: ValueEncoding) -> None:
        attrs = r.attributes
        key = (r.entity_id, r.entity_type, tuple(attrs))
        identities = self._identities
        if key not in identities:
            self._check_identity(r)
            if len(identities) >= self._cache_size:
                del identities[next(iter(identities))]
            identities[key] = None
        seen = r.observed_at
        # a burst of readings shares one observed_at object: the one checked last needs no new check
        # (the datetime is held, so an `is` match can never be a new object at a reused address)
        if seen is not self._last_seen:
            if seen.tzinfo is None or not 2 <= seen.year <= 9998:
                what = "must carry a time zone" if seen.tzinfo is None else "must be a year between 2 and 9998"
                raise ReadingError(f"{r.entity_id}: observed_at {what}, got {seen.isoformat()}", entity_id=r.entity_id)
            self._last_seen = seen
        reject = encoding is ValueEncoding.REJECT
        locations = 0
        # what the values and metadata may take beyond the rooms (see `_ATTRIBUTE_ROOM`)
        beyond = 0
        units = self._units
        for name, attr in attrs.items():
            value = attr.value
            atype = attr.type
            tv = type(value)
            # Fast path for the common sensor value: a finite float or an int a double holds declared Number,
            # no metadata, a unit already accepted, not an NGSI-LD geo name. Everything the full path
            # below would check of such an attribute is covered here, so it may be skipped (~0.3 µs).
            if (
                atype == "Number"
                and not attr.metadata
                and (attr.unit is None or attr.unit in units)
                and name not in LD_GEO_NAMES
                and ((tv is float and _isfinite(value)) or (tv is int and _EXACT_MIN <= value <= _EXACT_MAX))
            ):
                continue
            # the same for a date in Orion's form (the observation types' `dateObserved`): the full path
            # would find nothing else to refuse in 24 characters of digits and separators
            if (
                atype == "DateTime"
                and tv is str
                and not attr.metadata
                and attr.unit is None
                and name not in LD_GEO_NAMES
                and (value is self._last_date or is_canonical_datetime(value))
            ):
                self._last_date = value
                continue
            if attr is self._last_structured[0] and reject is self._last_structured[1] and name not in LD_GEO_NAMES:
                beyond += self._last_structured[2]
                continue
            bound = 0  # a structured value's, held with it in _last_structured
            if tv is float:
                if not math.isfinite(value):
                    raise self._fail(r, name, "must be a finite number", value)
            elif tv is str:
                if reject and atype != "TextUnrestricted":
                    self._check_banned(r, name, value)
                if not value.isascii():
                    problem = _text_problem(value)
                    if problem:
                        raise self._fail(r, name, problem[0], value, problem[1])
                n = len(value)
                if n > _SHORT_TEXT:  # a shorter text fits its attribute's room: no call on the common path
                    size = -1
                    if n > _TEXT_FAST_LIMIT:
                        size = _json_size(value)
                        self._check_size(r, name, size, value)
                    beyond += _value_bound(value, size, reject)
            elif tv is int:
                if not _EXACT_MIN <= value <= _EXACT_MAX:
                    raise self._fail(r, name, f"integer {_INEXACT}", value, _INEXACT_FIX)
            elif not (tv is bool or value is None):
                bound = _value_bound(value, self._check_structure(r, name, value), reject)
                beyond += bound
                if reject:
                    self._check_banned(r, name, value)
            if atype and (atype, tv) not in _PLAIN_MATCHES:
                self._check_type_name(r, name, atype)
                self._check_typed(r, name, atype, value)
            if name in LD_GEO_NAMES and value is not None and atype != "geo:json":
                raise self._fail(r, name, f"{name} must be of type geo:json (NGSI-LD requires a GeoProperty)", value)
            if attr.unit is not None and attr.unit not in self._units:
                self._check_unit(r, name, attr.unit)
            ignore = False
            if attr.metadata:
                ignore, metadata_bound = self._check_metadata(r, name, attr, reject)
                beyond += metadata_bound
            if atype == "geo:json" and value is not None and not ignore:
                locations += 1
            elif (tv is list or tv is dict) and not attr.metadata:
                self._last_structured = (attr, reject, bound)
        if locations > 1:
            raise ReadingError(
                f"{r.entity_id}: more than one geo:json location, got {locations};"
                " mark the informative ones with metadata ignoreType = true (Orion answers 413 otherwise)",
                entity_id=r.entity_id,
                entity_type=r.entity_type,
            )
        if len(attrs) * _ATTRIBUTE_ROOM + beyond > _ATTRIBUTES_LIMIT:
            self._check_entity_size(r, encoding)

    def _check_entity_size(self, r: Reading, encoding: ValueEncoding) -> None:
        """The bound says the entity may not fit one request: convert it as the uplinks do and measure it."""
        # imported here: both converters build on this module
        from gateway.ngsi.ld import MetadataDrops, to_ld_entity
        from gateway.ngsi.v2 import to_v2_entity

        drops = MetadataDrops("check_reading")  # none for a reading checked this far; never the uplinks' counts
        try:
            sizes = (
                (len(orjson.dumps(to_v2_entity(r, encoding=encoding, drops=drops))), "NGSI v2"),
                (len(orjson.dumps(to_ld_entity(r, encoding=encoding, context=None, drops=drops))), "NGSI-LD"),
            )
        except TypeError:
            return  # a value only the uplink's encoding makes JSON (value_encoding = "reject"): it measures it
        size, form = max(sizes)
        if size > MAX_ENTITY_BYTES:
            raise ReadingError(
                f"{r.entity_id}: entity must take at most {MAX_ENTITY_BYTES} bytes as JSON to fit one request"
                f" (Orion refuses a request over {MAX_REQUEST_BYTES} bytes, 1 MiB, with 413), got {size} bytes"
                f" as {form} with {len(r.attributes)} attributes; split the reading into several readings of fewer"
                " or smaller attributes, or send a reference to the data instead",
                entity_id=r.entity_id,
                entity_type=r.entity_type,
                size=size,
                limit=MAX_ENTITY_BYTES,
            )

    def _check_unit(self, r: Reading, name: str, unit: Any) -> None:
        try:
            ids.check_attribute_type(unit)
        except ValueError:
            raise self._fail(r, name, "unit must be a UN/CEFACT common code such as MTR, CEL or P1", unit) from None
        if len(self._units) < self._cache_size:
            self._units.add(unit)


_default = ReadingChecker()


def check_reading(reading: Reading, *, encoding: ValueEncoding) -> None:
    """Raise ReadingError if any uplink's broker would refuse this reading (shared, cached checker)."""
    _default.check(reading, encoding=encoding)
