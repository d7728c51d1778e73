"""An independent oracle of what Orion (NGSI v2) and Orion-LD (NGSI-LD) accept for a batch write.

Written from Orion's manual (`doc/manuals/orion-api.md`: "General syntax restrictions",
"Identifiers syntax restrictions", "Attribute names restrictions", "Metadata names restrictions",
"Special Attribute Types", "Datetime support", "Geospatial properties of entities", "Error
Responses", "Multi tenancy", "Service path"), `src/lib/common/errorMessages.h` and the functional
and acceptance tests cited in `tests/ngsi/test_orion_rules.py`. It deliberately shares no code with
`gateway.ngsi`, so a converter bug cannot hide behind the same bug here.

`validate_v2_update(headers, body)` answers for `POST /v2/op/update`; `validate_ld_upsert(headers,
body)` for `POST /ngsi-ld/v1/entityOperations/upsert`; `validate_v2_query(headers, body, query)` for
`POST /v2/op/query` and `validate_v2_registration(headers, body)` for `POST /v2/registrations` (what
the IoT Agents send for command devices). All are stateless: they say whether the broker would accept
the request, not what it would store or answer.

`strict=True` (the default) also refuses what Orion tolerates but this gateway promises never to send,
each marked "strict" below: an upper-case `Fiware-Service` (Orion lowercases it silently, which splits
tenants), a trailing `/` in `Fiware-ServicePath` (Orion drops it), attributes named like builtins
(`dateCreated`, ... — Orion lets them shadow the builtin), missing entity/attribute types, values whose
JSON type contradicts `Number`/`Boolean`/`Text`/`StructuredValue`, the deprecated `geo:point` family,
`GeometryCollection` and out-of-range coordinates (Orion answers 500 from MongoDB), a `Feature` or
`FeatureCollection` as an indexed location (Orion before 3.7 answers 500: telefonicaid/fiware-orion#4114),
object keys starting with `$` anywhere in a value (Orion executes `$inc`, ...; MongoDB refuses the
rest), attribute and metadata names starting with `$` (Orion before 3.1 answers 500: #3841), and, for
NGSI-LD, attribute values over 64 KiB of JSON (Orion-LD's limit: FIWARE/context.Orion-LD#954).

`tolerate` switches single strict rules off for a sender that is not this gateway and makes no such
promise (the IoT Agents type every unprovisioned measure `Text`, whatever it holds): a `Tolerance`
names what Orion stores as sent, so every rule of Orion's own still applies.

MongoDB's own GeoJSON rules (`src/mongo/db/geo/geoparser.cpp`) are applied without `strict`:
positions of 2 or 3 numbers, LineStrings of 2+ distinct positions, Polygon rings of 4+ positions that
are closed, have 3+ distinct corners and do not cross themselves.

Every v2 validator starts with Orion's HTTP layer in the order of its `connectionTreat()`
(src/lib/rest/rest.cpp): 413 on the declared size, the service paths, 415, the URI params (pagination
included, on every route), 411; then the service's own checks. The Orion double leaves all of it to these
rules but the size, whose limit it lets a test choose.

Description texts follow Orion's where known; the manual says their wording varies between versions,
so callers should match on status and `error`.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

MAX_BODY = 1_048_576  # Orion's default -inReqPayloadMaxSize
MAX_ID_LEN = 256
MAX_NESTING = 50
MAX_LD_BATCH = 1000
MAX_LD_ATTRIBUTE = 65_536  # Orion-LD: "the maximum size of an attribute is just under 64k"
MAX_PAGINATION_LIMIT = 1000
DEFAULT_PAGINATION_LIMIT = 20
# rest.cpp contentTypeCheck(), for a payload without a Content-Type
NO_CONTENT_TYPE = "Content-Type header not used, default application/octet-stream is not supported"
# errorMessages.h ERROR_DESC_NO_RESOURCES_AVAILABLE_GEOLOC since Orion 3.6 (functional tests
# 1038_ngsiv2_geo_location_entities/errors_*.test): a new entity with two locations and a second one
# appended later get this one text (src/lib/mongoBackend/location.cpp)
GEOLOC_413 = (
    "You cannot use more than one geo location attribute when creating an entity. Use ignoreType metadata if you "
    "want to add additional informative locations."
)

# "General syntax restrictions": forbidden in any request field (ids, types, names, string values)
FORBIDDEN = frozenset("<>\"'=;()")
# "Identifiers syntax restrictions": also & ? / # and anything outside printable, non-blank ASCII
ID_FORBIDDEN = FORBIDDEN | frozenset("&?/#")

ACTION_TYPES = frozenset({"append", "appendStrict", "update", "delete", "replace"})
BUILTIN_ATTRS = frozenset({"dateCreated", "dateModified", "dateExpires", "alterationType", "servicePath"})
RESERVED_ATTRS = frozenset({"id", "type", "geo:distance", "*"})
BUILTIN_METADATA = frozenset({"dateCreated", "dateModified", "previousValue", "actionType"})
RESERVED_METADATA = frozenset({"*"})
GEOJSON_GEOMETRIES = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"})
DEPRECATED_GEO = frozenset({"geo:point", "geo:line", "geo:box", "geo:polygon"})
UPDATE_OPERATORS = frozenset(
    {"$inc", "$mul", "$max", "$min", "$push", "$addToSet", "$pull", "$pullAll", "$set", "$unset"}
)

_SERVICE_RE = re.compile(r"[A-Za-z0-9_]+")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_]+")
_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME_RE = re.compile(
    r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d+))?)?)?"  # hh[:mm[:ss[.sss]]] or hhmmss.sss
)
_TZ_RE = re.compile(r"Z|[+-]\d{2}(?::?\d{2})?")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+")

V2Result = tuple[int, dict[str, Any] | None]


class Tolerance(enum.Enum):
    """A strict rule (one Orion does not have) switched off for a sender other than this gateway."""

    # a value whose JSON type contradicts its declared Number/Boolean/Text/TextUnrestricted/StructuredValue
    # type: Orion stores it as sent (the IoT Agents send `{"type": "Text", "value": 5}` for a measure
    # nobody provisioned)
    MISTYPED_VALUES = "mistyped-values"


Tolerances = frozenset[Tolerance]
NONE_TOLERATED: Tolerances = frozenset()


class _Refused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _v2_error(status: int, error: str, description: str) -> _Refused:
    return _Refused(status, {"error": error, "description": description})


def _bad(description: str) -> _Refused:
    return _v2_error(400, "BadRequest", description)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _no_constants(token: str) -> Any:
    # Python's json accepts NaN/Infinity; Orion's rapidjson and every JSON-LD parser do not
    raise ValueError(f"not JSON: {token}")


def _parse(body: bytes) -> Any:
    return json.loads(body.decode("utf-8"), parse_constant=_no_constants)


# --------------------------------------------------------------------------------------- headers


def _declared_length(headers: Mapping[str, str], body: bytes) -> int:
    """The Content-Length, 0 when absent as Orion reads it; one that lies about `body` is a caller's mistake
    no HTTP server would pass on, so it is refused before anything else."""
    length = _header(headers, "Content-Length")
    if length is None or length.strip() in ("", "0"):
        return 0
    if not length.strip().isdigit() or int(length) != len(body):
        raise _bad(f"Content-Length {length} does not match the body size {len(body)}")
    return len(body)


def _too_large(size: int) -> _Refused:
    return _v2_error(413, "RequestEntityTooLarge", f"payload size: {size}, max size supported: {MAX_BODY}")


def _check_ld_transport(headers: Mapping[str, str], body: bytes, *, media: tuple[str, ...]) -> str:
    """Orion-LD's Content-Length, size and Content-Type; returns the media type without parameters."""
    if not _declared_length(headers, body):
        raise _v2_error(411, "ContentLengthRequired", "Zero/No Content-Length in PUT/POST/PATCH request")
    if len(body) > MAX_BODY:
        raise _too_large(len(body))
    ctype = _header(headers, "Content-Type")
    if ctype is None:
        raise _v2_error(415, "UnsupportedMediaType", NO_CONTENT_TYPE)
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime not in media:
        raise _v2_error(415, "UnsupportedMediaType", f"not supported content type: {mime}")
    return mime


def _check_tenant(value: str | None, *, strict: bool) -> None:
    if value is None:
        return
    if len(value) > 50:
        raise _bad("bad length - a tenant name can be max 50 characters long")
    if value == "":
        if strict:
            raise _bad("empty tenant name (strict: leave the header out for the default tenant)")
        return
    if not _SERVICE_RE.fullmatch(value):
        raise _bad("bad character in tenant name - only underscore and alphanumeric characters are allowed")
    if strict and value != value.lower():
        raise _bad(f"tenant name must be lower case, got {value!r} (strict: Orion would silently lowercase it)")


def _check_service_path(value: str | None, *, strict: bool) -> None:
    if value is None:
        return
    paths = [p.strip() for p in value.split(",")]
    if any(not p.startswith("/") for p in paths):
        raise _bad("Only /absolute/ Service Paths allowed [a service path must begin with /]")
    if len(paths) > 1:
        raise _bad("more than one service path in context update request")
    path = paths[0]
    if path == "/":
        return
    if path.endswith("/"):
        if strict:
            raise _bad("trailing / in ServicePath (strict: Orion would drop it)")
        path = path.rstrip("/")
    if path.endswith("/#") or path == "/#" or "#" in path:
        raise _bad("service path with '#' not allowed in update request")
    parts = path[1:].split("/")
    if len(parts) > 10:
        raise _bad("too many components in ServicePath")
    for part in parts:
        if len(part) > 50:
            raise _bad("component-name too long in ServicePath")
        if not _SEGMENT_RE.fullmatch(part):
            raise _bad("a component of ServicePath contains an illegal character")


def _http_service_paths(value: str | None) -> tuple[str, ...]:
    """Orion's check of every request's service paths (rest.cpp servicePathSplit and servicePathCheck): up to
    ten, comma-separated, each may end in `/#`. Returns them as a query scopes by them, `/#` when none; an
    update's service checks its one path again (`_check_service_path`)."""
    if value is None or not value.strip():
        return ("/#",)
    paths = [p.strip() for p in value.split(",")]
    if len(paths) > 10:
        raise _bad("too many service paths - a maximum of ten service paths is allowed")
    out = []
    for path in paths:
        if path != "/" and path.endswith("/"):
            path = path.rstrip("/")
        if not path.startswith("/"):
            raise _bad("Only /absolute/ Service Paths allowed [a service path must begin with /]")
        parts = [c for c in path.split("/")[1:] if c]
        if len(parts) > 10:
            raise _bad("too many components in ServicePath")
        for ix, part in enumerate(parts):
            if len(part) > 50:
                raise _bad("component-name too long in ServicePath")
            if ix == len(parts) - 1 and part == "#":
                continue
            if not _SEGMENT_RE.fullmatch(part):
                raise _bad("a component of ServicePath contains an illegal character")
        out.append(path)
    return tuple(out)


# ---------------------------------------------------------------------------------- v2 payloads


def _id_problem(text: Any) -> str | None:
    """Why `text` breaks the v2 identifier rules, or None."""
    if not isinstance(text, str):
        return "type"
    if len(text) < 1:
        return "min"
    if len(text) > MAX_ID_LEN:
        return "max"
    for ch in text:
        if not ("!" <= ch <= "~") or ch in ID_FORBIDDEN:
            return "chars"
    return None


def _check_identifier(text: Any, what: str) -> None:
    problem = _id_problem(text)
    if problem == "type":
        raise _bad(f"Invalid JSON type for {what}")
    if problem == "min":
        raise _bad(f"{what} length: 0, min length supported: 1")
    if problem == "max":
        raise _bad(f"{what} length: {len(text)}, max length supported: {MAX_ID_LEN}")
    if problem == "chars":
        raise _bad(f"Invalid characters in {what}")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _has_forbidden_text(value: Any) -> bool:
    """Strings and object keys anywhere in a (compound) value."""
    if isinstance(value, str):
        return not FORBIDDEN.isdisjoint(value)
    if isinstance(value, dict):
        return any(not FORBIDDEN.isdisjoint(k) or _has_forbidden_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_forbidden_text(v) for v in value)
    return False


def _bad_key(value: Any) -> str | None:
    """An object key, anywhere in a value, that Orion or MongoDB cannot store."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("$"):
                return f"key {k} starts with $ (Orion's update operators; MongoDB refuses other $-keys)"
            if not k or "\x00" in k:
                return "empty key or NUL in a key (MongoDB refuses it)"
            found = _bad_key(v)
            if found:
                return found
    elif isinstance(value, list):
        for v in value:
            found = _bad_key(v)
            if found:
                return found
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_orion_datetime(text: str) -> datetime | None:
    """Orion's accepted ISO 8601 forms ("Datetime support"); None when Orion would refuse it."""
    m = _DATE_RE.match(text)
    if not m:
        return None
    try:
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    rest = text[m.end() :]
    if rest == "":
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    if not rest.startswith("T"):
        return None  # `<date><timezone>` is not allowed either
    rest = rest[1:]
    t = _TIME_RE.match(rest)
    if not t:
        return None
    tz_text = rest[t.end() :]
    if tz_text and not _TZ_RE.fullmatch(tz_text):
        return None
    hh, mm, ss = int(t.group(1)), int(t.group(2) or 0), int(t.group(3) or 0)
    if hh > 23 or mm > 59 or ss > 59:
        return None
    frac = t.group(4) or "0"
    micro = int((frac + "000000")[:6])
    offset = timedelta(0)
    if tz_text and tz_text != "Z":
        sign = -1 if tz_text[0] == "-" else 1
        digits = tz_text[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:4] or 0)
        if oh > 23 or om > 59:
            return None
        offset = sign * timedelta(hours=oh, minutes=om)
    return datetime(day.year, day.month, day.day, hh, mm, ss, micro, tzinfo=timezone(offset))


def _check_position(pos: Any, *, strict: bool) -> None:
    if not isinstance(pos, list) or not 2 <= len(pos) <= 3 or not all(_is_number(c) for c in pos):
        raise _bad("error parsing location attribute: coordinates must be arrays of 2 or 3 numbers")
    if strict and not (-180 <= pos[0] <= 180 and -90 <= pos[1] <= 90):
        raise _bad(f"error parsing location attribute: [lon, lat] out of range, got {pos} (strict)")


def _check_coordinates(kind: str, coords: Any, *, strict: bool) -> None:
    # nesting level of positions per geometry type (RFC 7946 section 3.1)
    levels = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
    level = levels[kind]

    def walk(node: Any, left: int) -> None:
        if left == 0:
            _check_position(node, strict=strict)
            return
        if not isinstance(node, list) or not node:
            raise _bad(f"error parsing location attribute: bad coordinates for {kind}")
        for child in node:
            walk(child, left - 1)

    walk(coords, level)
    if kind in ("LineString", "MultiLineString"):
        for line in [coords] if kind == "LineString" else coords:
            if len({(p[0], p[1]) for p in line}) < 2:
                raise _bad("error parsing location attribute: a LineString needs 2 distinct positions")
    if kind in ("Polygon", "MultiPolygon"):
        for polygon in [coords] if kind == "Polygon" else coords:
            for ring in polygon:
                _check_ring(ring)


def _segments_cross(p: Any, q: Any, r: Any, s: Any) -> bool:
    """Proper crossing of segments p-q and r-s (brute force; shares nothing with gateway.ngsi)."""

    def side(a: Any, b: Any, c: Any) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return side(p, q, r) * side(p, q, s) < 0 and side(r, s, p) * side(r, s, q) < 0


def _check_ring(ring: list[Any]) -> None:
    if len(ring) < 4:
        raise _bad("error parsing location attribute: a Polygon ring needs 4 positions")
    if ring[0] != ring[-1]:
        raise _bad("error parsing location attribute: a Polygon ring must be closed")
    corners: list[tuple[float, float]] = []
    for p in ring[:-1]:
        if not corners or corners[-1] != (p[0], p[1]):
            corners.append((p[0], p[1]))
    if len(set(corners)) < 3:
        raise _bad("error parsing location attribute: a Polygon ring needs 3 distinct corners")
    n = len(corners)
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue
            a, b = corners[i], corners[(i + 1) % n]
            c, d = corners[j], corners[(j + 1) % n]
            if _segments_cross(a, b, c, d):
                raise _bad("error parsing location attribute: Loop is not valid, edges cross")


def check_geojson(value: Any, *, strict: bool = True, indexed: bool = False) -> None:
    """A `geo:json` value Orion (and MongoDB's 2dsphere index) can take; `indexed` for the entity's location."""
    if strict and indexed and isinstance(value, dict) and value.get("type") in ("Feature", "FeatureCollection"):
        raise _bad(f"{value['type']} as a location (strict: Orion before 3.7 answers 500 Database Error)")
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise _bad("error parsing location attribute: geo:json value must be a GeoJSON object")
    kind = value["type"]
    if kind in GEOJSON_GEOMETRIES:
        if "coordinates" not in value:
            raise _bad("error parsing location attribute: missing coordinates")
        _check_coordinates(kind, value["coordinates"], strict=strict)
    elif kind == "Feature":
        check_geojson(value.get("geometry"), strict=strict)
    elif kind == "FeatureCollection":
        features = value.get("features")
        if not isinstance(features, list) or len(features) != 1:
            raise _bad("FeatureCollection with a number of features different from 1 is not supported")
        check_geojson(features[0], strict=strict)
    elif kind == "GeometryCollection":
        raise _bad("GeometryCollection is not supported (Orion answers 500 Database Error; strict)")
    else:
        raise _bad(f"error parsing location attribute: unknown GeoJSON type {kind}")


def _check_typed_value(atype: str, value: Any, what: str, *, strict: bool, tolerate: Tolerances) -> None:
    if value is None:
        return  # null is accepted for every type, including DateTime and geo:json
    if atype in ("DateTime", "ISO8601"):
        if not isinstance(value, str) or parse_orion_datetime(value) is None:
            raise _bad(f"date has invalid format in {what}")
        return
    if not strict or Tolerance.MISTYPED_VALUES in tolerate:
        return
    ok = {
        "Number": _is_number(value),
        "Boolean": isinstance(value, bool),
        "Text": isinstance(value, str),
        "TextUnrestricted": isinstance(value, str),
        "StructuredValue": isinstance(value, (dict, list)),
    }.get(atype, True)
    if not ok:
        raise _bad(f"{what} value of type {type(value).__name__} contradicts type {atype} (strict)")


def _check_metadata(name: str, md: Any, *, strict: bool, tolerate: Tolerances) -> bool:
    """Checks one metadata element; returns True when it is `ignoreType: true`."""
    _check_identifier(name, "metadata name")
    if strict and name.startswith("$"):
        raise _bad(f"metadata name {name} starts with $ (strict: Orion before 3.1 answers 500)")
    if name in RESERVED_METADATA or (strict and name in BUILTIN_METADATA):
        raise _bad(f"forbidden metadata name: {name}")
    if not isinstance(md, dict):
        raise _bad(f"metadata {name} must be a JSON object with value and type")
    extra = set(md) - {"value", "type"}
    if extra:
        raise _bad(f"unrecognized property for metadata {name}: {sorted(extra)[0]}")
    mtype = md.get("type")
    if mtype is None:
        if strict:
            raise _bad(f"metadata {name} has no type (strict: send explicit types)")
        mtype = ""
    else:
        _check_identifier(mtype, "metadata type")
    value = md.get("value")
    if _depth(value) > MAX_NESTING:
        raise _bad(f"max nesting level exceeded in metadata {name}")
    if _has_forbidden_text(value):
        raise _bad("Invalid characters in metadata value")
    if strict and _bad_key(value):
        raise _bad(f"metadata {name}: {_bad_key(value)} (strict)")
    _check_typed_value(mtype, value, f"metadata {name}", strict=strict, tolerate=tolerate)
    if name == "ignoreType":
        if not isinstance(value, bool):
            raise _bad("ignoreType metadata must be a Boolean")
        return value
    return False


def _check_attribute(name: str, attr: Any, *, strict: bool, tolerate: Tolerances) -> bool:
    """Checks one attribute; returns True when it is a location counting toward the limit of one."""
    _check_identifier(name, "attribute name")
    if strict and name.startswith("$"):
        raise _bad(f"attribute name {name} starts with $ (strict: Orion before 3.1 answers 500)")
    if name in RESERVED_ATTRS or (strict and name in BUILTIN_ATTRS):
        raise _bad(f"forbidden attribute name: {name}")
    if not isinstance(attr, dict):
        raise _bad("attribute must be a JSON object, unless keyValues option is used")
    extra = set(attr) - {"value", "type", "metadata"}
    if extra:
        raise _bad(f"unrecognized property for context attribute: {sorted(extra)[0]}")
    atype = attr.get("type")
    if atype is None:
        if strict:
            raise _bad(f"attribute {name} has no type (strict: send explicit types)")
        atype = ""
    else:
        _check_identifier(atype, "attribute type")
    if strict and atype in DEPRECATED_GEO:
        raise _bad(f"attribute {name}: {atype} is deprecated, use geo:json (strict)")
    value = attr.get("value")
    if _depth(value) > MAX_NESTING:
        raise _bad(f"max nesting level exceeded in attribute {name}")
    if atype != "TextUnrestricted" and _has_forbidden_text(value):
        raise _bad("Invalid characters in attribute value")
    if strict and isinstance(value, dict) and not UPDATE_OPERATORS.isdisjoint(value):
        raise _bad(f"attribute {name}: value would be taken as an update operator (strict)")
    if strict and _bad_key(value):
        raise _bad(f"attribute {name}: {_bad_key(value)} (strict)")
    _check_typed_value(atype, value, f"attribute {name}", strict=strict, tolerate=tolerate)
    metadata = attr.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _bad(f"metadata of attribute {name} must be a JSON object")
    ignored = False
    for mname, md in metadata.items():
        ignored |= _check_metadata(mname, md, strict=strict, tolerate=tolerate)
    if atype == "geo:json" and value is not None:
        if not ignored:
            check_geojson(value, strict=strict, indexed=True)
        return not ignored
    return atype in DEPRECATED_GEO and value is not None and not ignored


def _check_v2_entity(entity: Any, *, strict: bool, tolerate: Tolerances = NONE_TOLERATED) -> None:
    if not isinstance(entity, dict):
        raise _bad("entity must be a JSON object")
    if "id" not in entity:
        raise _bad("entity id is missing")
    _check_identifier(entity["id"], "entity id")
    if "type" in entity:
        _check_identifier(entity["type"], "entity type")
    elif strict:
        raise _bad("entity type is missing (strict: Orion would default it to Thing)")
    locations = 0
    for name, attr in entity.items():
        if name in ("id", "type"):
            continue
        if _check_attribute(name, attr, strict=strict, tolerate=tolerate):
            locations += 1
    if locations > 1:
        raise _v2_error(413, "NoResourcesAvailable", GEOLOC_413)


# --------------------------------------------------------------------------------- URI parameters
# src/lib/rest/rest.cpp uriArgumentGet and src/lib/rest/ConnectionInfo.cpp: Orion checks `options`
# against one list for every route, then each route reads the few it knows and ignores the rest.

ORION_OPTIONS = frozenset(
    {
        "count",
        "normalized",
        "values",
        "keyValues",
        "append",
        "unique",
        "dateCreated",
        "dateModified",
        "noAttrDetail",
        "upsert",
        "forcedUpdate",
        "overrideMetadata",
        "flowControl",
        "skipForwarding",
        "fullCounters",
        "libVersions",
        "skipInitialNotification",  # removed in Orion 3.2, still taken so old clients do not break
    }
)
_EXCLUSIVE_OPTIONS = (("keyValues", "values"), ("keyValues", "unique"), ("unique", "values"))
# URI params whose values Orion does not check for its forbidden characters (or checks with exceptions)
_FREE_PARAMS = {name: "".join(FORBIDDEN) for name in ("q", "mq", "idPattern", "typePattern")}
_FREE_PARAMS |= {"geometry": "=;", "georel": "=;", "coords": ";"}
# Orion's '0'..'9' loop; str.isdigit() would also take "３" (fullwidth) and "²", which int() cannot read
_DIGITS_RE = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteOptions:
    """What a route of the double does with Orion's `options`: `served` are acted on (or change nothing
    the double keeps, e.g. flowControl), `refused` are ones Orion acts on here and the double does not
    implement (501). Orion ignores the rest of its list on this route, and so does the double."""

    route: str
    served: frozenset[str]
    refused: frozenset[str] = frozenset()


# postUpdateContext.cpp reads forcedUpdate, overrideMetadata and flowControl; parseContextAttribute.cpp keyValues
V2_UPDATE_OPTIONS = RouteOptions(
    route="POST /v2/op/update",
    served=frozenset({"forcedUpdate", "flowControl"}),  # notifications and their pace: the double has neither
    refused=frozenset({"keyValues", "overrideMetadata"}),
)
V2_CREATE_OPTIONS = RouteOptions(
    route="POST /v2/entities",
    served=frozenset({"upsert", "forcedUpdate", "flowControl"}),
    refused=frozenset({"keyValues", "overrideMetadata"}),
)
# postQueryContext.cpp reads count and skipForwarding; the rendering keyValues, values and unique
V2_QUERY_OPTIONS = RouteOptions(
    route="POST /v2/op/query",
    served=frozenset({"count", "keyValues", "skipForwarding"}),  # the double forwards to no provider anyway
    refused=frozenset({"values", "unique"}),
)
V2_REGISTRATION_OPTIONS = RouteOptions(route="POST /v2/registrations", served=frozenset())


def _not_implemented(description: str) -> _Refused:
    return _v2_error(501, "NotImplemented", description)


def _uri_param_problem(key: str, value: str, options: set[str]) -> str | None:
    """uriArgumentGet() in rest.cpp for one URI param of any route: Orion's description of what is wrong
    with it, or None. `options` gathers the valid options seen so far, as Orion's uriParamOptions does."""
    if value == "":
        return f"Empty right-hand-side for URI param /{key}/"
    # Orion 3.7 and later (telefonicaid/fiware-orion#1492; rest.cpp lines 127-167 in 4.7): digits only, 0
    # included; both return before the forbidden-character check below, so `limit=a(b` is a pagination error
    if key == "offset" and not _DIGITS_RE.fullmatch(value):
        return f"Bad pagination offset: /{value}/ [must be a decimal number]"
    if key == "limit":
        if not _DIGITS_RE.fullmatch(value):
            return f"Bad pagination limit: /{value}/ [must be a positive integer number]"
        if int(value) > MAX_PAGINATION_LIMIT:
            return f"Bad pagination limit: /{value}/ [max: {MAX_PAGINATION_LIMIT}]"
    problem = None
    if key == "options":
        # stringSplit() skips leading commas; any other empty item is not a valid option
        items = value.lstrip(",").split(",")
        options.update(item for item in items if item in ORION_OPTIONS)
        if not set(items) <= ORION_OPTIONS or any(a in options and b in options for a, b in _EXCLUSIVE_OPTIONS):
            problem = "Invalid value for URI param /options/"  # Orion names no value
    checked = set(value) - set(_FREE_PARAMS.get(key, ""))
    if not FORBIDDEN.isdisjoint(checked | set(key)):
        problem = "invalid character in URI parameter"
    return problem


def _check_uri_params(query: Mapping[str, list[str]], route: RouteOptions) -> frozenset[str]:
    """Orion's checks of every URI param, then the route's: returns the options given."""
    options: set[str] = set()
    problem = None
    for key, values in query.items():
        for value in values:
            # each param's error overwrites the one before (ciP->answer), so the last one is answered
            problem = _uri_param_problem(key, value, options) or problem
    if problem is not None:
        raise _bad(problem)
    unimplemented = sorted(options & route.refused)
    if unimplemented:
        raise _not_implemented(f"the Orion double does not implement options={unimplemented[0]} on {route.route}")
    return frozenset(options)


def _orion_http_layer(
    headers: Mapping[str, str], body: bytes, query: Mapping[str, list[str]], route: RouteOptions
) -> tuple[frozenset[str], tuple[str, ...]]:
    """What Orion's HTTP layer refuses before any service sees the request, in the order of connectionTreat()
    in src/lib/rest/rest.cpp (4.7: lines 1280, 1401, 1407, 1418, 1533): a declared size over the limit (413,
    its first call), the service paths, the Content-Type (415 for a payload whose type, cut at its `;` and
    compared as it is, is missing or neither application/json nor text/plain: contentTypeCheck), the URI
    params, then a POST without a payload (411). text/plain gets through and the v2 services refuse it (415,
    textRequestTreat in src/lib/parse/textParse.cpp line 124). Returns the options given and the service paths."""
    declared = _declared_length(headers, body)
    if declared > MAX_BODY:
        raise _too_large(declared)
    paths = _http_service_paths(_header(headers, "Fiware-ServicePath"))
    mime = (_header(headers, "Content-Type") or "").strip().split(";", 1)[0]
    if declared and not mime:
        raise _v2_error(415, "UnsupportedMediaType", NO_CONTENT_TYPE)
    if declared and mime not in ("application/json", "text/plain"):
        raise _v2_error(415, "UnsupportedMediaType", f"not supported content type: {mime}")
    options = _check_uri_params(query, route)
    if not declared:
        raise _v2_error(411, "ContentLengthRequired", "Zero/No Content-Length in PUT/POST/PATCH request")
    if mime == "text/plain":
        raise _v2_error(415, "UnsupportedMediaType", "not supported content type: text/plain")
    return options, paths


def _validate_v2(
    headers: Mapping[str, str],
    body: bytes,
    query: Mapping[str, list[str]],
    *,
    strict: bool,
    tolerate: Tolerances,
) -> None:
    _orion_http_layer(headers, body, query, V2_UPDATE_OPTIONS)
    _check_tenant(_header(headers, "Fiware-Service"), strict=strict)
    _check_service_path(_header(headers, "Fiware-ServicePath"), strict=strict)
    try:
        doc = _parse(body)
    except ValueError:
        raise _v2_error(400, "ParseError", "Errors found in incoming JSON buffer") from None
    if not isinstance(doc, dict):
        raise _bad("not a JSON object")
    if not doc:
        raise _bad("empty payload")
    extra = set(doc) - {"actionType", "entities"}
    if extra:
        raise _bad(f"Unrecognized field in JSON payload: /{sorted(extra)[0]}/")
    if "actionType" not in doc:
        raise _bad("Invalid JSON payload, mandatory field /actionType/ not found")
    if doc["actionType"] not in ACTION_TYPES:
        raise _bad(f"invalid update action type: {doc['actionType']!r}")
    entities = doc.get("entities")
    if entities is None:
        raise _bad("Invalid JSON payload, mandatory field /entities/ not found")
    if not isinstance(entities, list):
        raise _bad("/entities/ must be a JSON array")
    if not entities:
        raise _bad("empty entities vector")
    # Orion validates the whole request before writing anything: the first bad entity fails it all
    for entity in entities:
        if isinstance(entity, dict) and "id" not in entity:
            if (
                "idPattern" in entity
            ):  # Orion runs update/delete/replace on every match (3427_batch_update_with_idPattern)
                raise _not_implemented("the Orion double does not implement idPattern in POST /v2/op/update")
            raise _bad("nor /id/ nor /idPattern/ present")
        _check_v2_entity(entity, strict=strict, tolerate=tolerate)


def validate_v2_update(
    headers: Mapping[str, str],
    body: bytes,
    *,
    query: Mapping[str, list[str]] | None = None,
    strict: bool = True,
    tolerate: Tolerances = NONE_TOLERATED,
) -> V2Result:
    """(204, None) when Orion would accept this `POST /v2/op/update` (URI params `query`), else (status,
    error body). Whether it then finds what it is told to update is the store's business (the double's)."""
    try:
        _validate_v2(headers, body, query or {}, strict=strict, tolerate=tolerate)
    except _Refused as refused:
        return refused.status, refused.body
    return 204, None


def validate_v2_create(
    headers: Mapping[str, str],
    body: bytes,
    *,
    query: Mapping[str, list[str]] | None = None,
    strict: bool = True,
    tolerate: Tolerances = NONE_TOLERATED,
) -> tuple[int, Any, frozenset[str]]:
    """(201, None, options) when Orion would take this `POST /v2/entities` (one entity, the rules of a
    batch), else (status, error body, options)."""
    options: frozenset[str] = frozenset()
    try:
        options, _ = _orion_http_layer(headers, body, query or {}, V2_CREATE_OPTIONS)
        _check_tenant(_header(headers, "Fiware-Service"), strict=strict)
        _check_service_path(_header(headers, "Fiware-ServicePath"), strict=strict)
        try:
            doc = _parse(body)
        except ValueError:
            raise _v2_error(400, "ParseError", "Errors found in incoming JSON buffer") from None
        _check_v2_entity(doc, strict=strict, tolerate=tolerate)
    except _Refused as refused:
        return refused.status, refused.body, options
    return 201, None, options


# ------------------------------------------------------------------------- v2 query, registrations
# From the manual ("Query operation", "Pagination", "Registration Operations") and Orion's source:
# src/lib/jsonParseV2/parseBatchQuery.cpp, parseEntityObject.cpp, parseStringList.cpp,
# parseRegistration.cpp, parseEntitiesVector.cpp, src/lib/rest/rest.cpp (URI params, service paths),
# and the functional tests 1080_batch_query_context/*.test and 2604_op_query_attrs/op_query_attrs.test.

MAX_DESCRIPTION_LENGTH = 1024
FORWARDING_MODES = frozenset({"all", "none", "query", "update"})


@dataclass(frozen=True, slots=True, kw_only=True)
class V2Query:
    """A `POST /v2/op/query` Orion would run: selectors, projection and page."""

    entities: tuple[dict[str, str], ...]  # each with id or idPattern, and type or typePattern (".*" if neither)
    attrs: tuple[str, ...] | None
    options: frozenset[str]
    limit: int
    offset: int
    service_paths: tuple[str, ...]  # "/#" when the header is absent


def _page(query: Mapping[str, list[str]]) -> tuple[int, int]:
    """limit and offset of a query URL whose params passed `_check_uri_params` (the last of each, as Orion
    keeps it); limit=0 is a page of nothing, still counted (functional tests 1492_limit_zero/*.test)."""
    if "orderBy" in query:
        raise _bad("the Orion double does not implement orderBy")
    limit = int(query["limit"][-1]) if "limit" in query else DEFAULT_PAGINATION_LIMIT
    return limit, int(query["offset"][-1]) if "offset" in query else 0


def _regex_ok(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _query_entity(item: Any) -> dict[str, str]:
    """One selector of `entities` (parseEntityObject.cpp, idPattern allowed, no attributes)."""
    if not isinstance(item, dict):
        raise _bad("entity is not a JSON object")
    if "id" in item and "idPattern" in item:
        raise _bad("both /id/ and /idPattern/ present")
    if "id" not in item and "idPattern" not in item:
        raise _bad("nor /id/ nor /idPattern/ present")
    selector: dict[str, str] = {}
    for name, value in item.items():
        if name == "id":
            if not isinstance(value, str):
                raise _bad("Invalid JSON type for entity id")
            problem = _id_problem(value)
            if problem == "max":
                raise _bad(f"entity id length: {len(value)}, max length supported: {MAX_ID_LEN}")
            if problem is not None:
                raise _bad("Invalid characters in entity id")
        elif name == "idPattern":
            if not isinstance(value, str):
                raise _bad("Invalid JSON type for entity idPattern")
            if not _regex_ok(value):
                raise _bad("Invalid regex for entity idPattern")
        elif name == "type":
            if not isinstance(value, str):
                raise _bad("Invalid JSON type for entity type")
            if value == "":
                raise _bad("entity type length: 0, min length supported: 1")
            if _id_problem(value) is not None:
                raise _bad("Invalid characters in entity type")
        elif name == "typePattern":
            if not isinstance(value, str):
                raise _bad("Invalid JSON type for entity typePattern")
            if not _regex_ok(value):
                raise _bad("Invalid regex for entity typePattern")
        else:
            raise _bad("no attributes allowed in Entity in this payload")
        selector[name] = value
    if "type" not in selector and "typePattern" not in selector:
        selector["typePattern"] = ".*"
    return selector


def _string_list(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _bad(f"the field /{field}/ must be a JSON array")
    if not all(isinstance(v, str) for v in value):
        raise _bad(f"only JSON Strings allowed in {field} list")
    return tuple(dict.fromkeys(value))


def validate_v2_query(
    headers: Mapping[str, str], body: bytes, query: Mapping[str, list[str]]
) -> tuple[int, Any, V2Query | None]:
    """(200, None, the query) when Orion would run this `POST /v2/op/query`, else (status, error body, None)."""
    try:
        options, paths = _orion_http_layer(headers, body, query, V2_QUERY_OPTIONS)
        limit, offset = _page(query)
        _check_tenant(_header(headers, "Fiware-Service"), strict=True)
        try:
            doc = _parse(body)
        except ValueError:
            raise _v2_error(400, "ParseError", "Errors found in incoming JSON buffer") from None
        if not isinstance(doc, dict):
            raise _v2_error(400, "ParseError", "Errors found in incoming JSON buffer")
        if not doc:
            raise _bad("empty payload")
        if not {"entities", "attributes", "attrs", "expression"} & set(doc):
            raise _bad("Invalid JSON payload, no relevant fields found")
        entities: tuple[dict[str, str], ...] = ()
        attrs: tuple[str, ...] | None = None
        for name, value in doc.items():
            if name == "entities":
                if not isinstance(value, list):
                    raise _bad("not a JSON array")
                entities = tuple(_query_entity(item) for item in value)
            elif name in ("attrs", "attributes", "metadata"):
                listed = _string_list(value, name)
                if name == "attrs":
                    attrs = listed
                elif name == "attributes":
                    raise _bad("the Orion double does not implement the deprecated attributes field")
            elif name == "expression":
                raise _bad("the Orion double does not implement expression")
            else:
                raise _bad(f"Unrecognized field in JSON payload: /{name}/")
    except _Refused as refused:
        return refused.status, refused.body, None
    return (
        200,
        None,
        V2Query(entities=entities, attrs=attrs, options=options, limit=limit, offset=offset, service_paths=paths),
    )


def _registration_entities(value: Any) -> None:
    """`dataProvided.entities` (parseEntitiesVector.cpp and the 501s of parseRegistration.cpp)."""
    if not isinstance(value, list):
        raise _bad("/entities/ is not an array")
    for item in value:
        if not isinstance(item, dict):
            raise _bad("/entities/ vector item is not an object")
        if "id" not in item and "idPattern" not in item:
            raise _bad("/entities/ vector item does not have /id/ nor /idPattern/")
        if "id" in item and "idPattern" in item:
            raise _bad("/entities/ vector item has both /id/ and /idPattern/")
        if "type" in item and "typePattern" in item:
            raise _bad("/entities/ element has both /type/ and /typePattern/")
        if "id" in item:
            eid = item["id"]
            if not isinstance(eid, str):
                raise _bad("/entities/ vector item /id/ is not a string")
            if eid == "":
                raise _bad("/entities/ element id is empty")
            if _id_problem(eid) == "max":
                raise _bad("max id length exceeded in /entities/ vector item /id/")
            if _id_problem(eid) is not None:
                raise _bad("forbidden characters in /entities/ vector item /id/")
        if "type" in item:
            etype = item["type"]
            if not isinstance(etype, str):
                raise _bad("/entities/ vector item type is not a string")
            if etype == "":
                raise _bad("entity type length: 0, min length supported: 1")
            if _id_problem(etype) is not None:
                raise _bad("forbidden characters in /entities/ vector item /type/")
        if "idPattern" in item and item["idPattern"] != ".*":
            raise _Refused(501, {"error": "NotImplemented", "description": "Unsupported idPattern"})
        if "typePattern" in item:
            raise _Refused(501, {"error": "NotImplemented", "description": "typePattern is not supported"})


def _registration_provider(value: Any) -> None:
    if not isinstance(value, dict):
        raise _bad("/provider/ must be a JSON object")
    if not value:
        raise _bad("/provider/ empty")
    if "http" not in value:
        raise _bad("/provider/ must contain a field /http/")
    http = value["http"]
    if not isinstance(http, dict):
        raise _bad("/http/ must be a JSON object")
    if "url" not in http:
        raise _bad("/http/ must contain a field /url/")
    url = http["url"]
    if not isinstance(url, str):
        raise _bad("/url/ field of /http/ must be a JSON string")
    if url == "":
        raise _bad("/url/ field of /http/ cannot be the empty string")
    if not re.fullmatch(r"https?://[^\s/:]+(:\d+)?(/\S*)?", url):
        raise _bad("/url/ field of /http/ is invalid")
    mode = value.get("supportedForwardingMode", "all")
    if not isinstance(mode, str):
        raise _bad("/supportedForwardingMode/ must be a JSON string")
    if mode not in FORWARDING_MODES:
        raise _bad("invalid value of /supportedForwardingMode/")
    if "legacyForwarding" in value and not isinstance(value["legacyForwarding"], bool):
        raise _bad("the field /legacyForwarding/ must be a boolean")


def validate_v2_registration(
    headers: Mapping[str, str], body: bytes, *, query: Mapping[str, list[str]] | None = None
) -> V2Result:
    """(201, None) when Orion would create this `POST /v2/registrations` (a context provider, e.g. an IoT Agent's commands)."""
    try:
        _orion_http_layer(headers, body, query or {}, V2_REGISTRATION_OPTIONS)
        _check_tenant(_header(headers, "Fiware-Service"), strict=True)
        _check_service_path(_header(headers, "Fiware-ServicePath"), strict=True)
        try:
            doc = _parse(body)
        except ValueError:
            raise _bad("Errors found in incoming JSON buffer") from None
        if not isinstance(doc, dict):
            raise _bad("not a JSON object")
        if not doc:
            raise _bad("empty payload")
        if "description" in doc:
            description = doc["description"]
            if not isinstance(description, str):
                raise _bad("invalid description")
            if len(description) > MAX_DESCRIPTION_LENGTH:
                raise _bad("max description length exceeded")
            if not FORBIDDEN.isdisjoint(description):
                raise _bad("forbidden characters in description")
        if "dataProvided" not in doc:
            raise _bad("the field /dataProvided/ is missing in payload")
        provided = doc["dataProvided"]
        if not isinstance(provided, dict):
            raise _bad("/dataProvided/ must be a JSON object")
        if not provided:
            raise _bad("/dataProvided/ is empty")
        if "entities" in provided:
            _registration_entities(provided["entities"])
        if "attrs" in provided:
            attrs = provided["attrs"]
            if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
                raise _bad("/attrs/ must be a JSON array of strings")
        if "provider" not in doc:
            raise _bad("the field /provider/ is missing in payload")
        _registration_provider(doc["provider"])
        if "expires" in doc:
            expires = doc["expires"]
            if not isinstance(expires, str):
                raise _bad("expires is not a string")
            if expires and parse_orion_datetime(expires) is None:
                raise _bad("the field /expires/ has an invalid format")
        if "status" in doc:
            if not isinstance(doc["status"], str):
                raise _bad("/status/ must be a string")
            if doc["status"] not in ("active", "inactive"):
                raise _bad("invalid value for /status/")
    except _Refused as refused:
        return refused.status, refused.body
    return 201, None


# ---------------------------------------------------------------------------------------- NGSI-LD

LD_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
# Orion-LD reads "@id" and "@type" as the entity's "id" and "type" (pCheckEntity.cpp compares each member's
# name with both spellings): an entity carrying both is refused, 400 BadRequestData "Both /id/ and /@id/
# field in an entity" (or /type/ and /@type/), with the first one's value as the detail. The double refuses
# them as sub-attribute names too, like the other reserved names.
LD_KEYWORD_TWINS = {"@id": "id", "@type": "type"}
LD_RESERVED_ATTRS = frozenset(
    {"id", "type", *LD_KEYWORD_TWINS, "@context", "scope", "createdAt", "modifiedAt", "deletedAt"}
)
LD_GEO_ATTRS = frozenset({"location", "observationSpace", "operationSpace"})
LD_ATTR_TYPES = frozenset({"Property", "Relationship", "GeoProperty", "LanguageProperty"})
LD_ATTR_KEYS = frozenset(
    {"type", "value", "object", "observedAt", "unitCode", "datasetId", "languageMap", "createdAt", "modifiedAt"}
)


def _problem(status: int, kind: str, title: str, detail: str) -> dict[str, Any]:
    return {"type": LD_ERRORS + kind, "title": title, "detail": detail, "status": status}


def _ld_bad(title: str, detail: str) -> _Refused:
    return _Refused(400, _problem(400, "BadRequestData", title, detail))


def _ld_name_ok(name: str) -> bool:
    # JSON-LD terms may be any Unicode (Japanese names are fine) but no blanks, controls or Orion's set
    return bool(name) and all(ch.isprintable() and not ch.isspace() for ch in name) and FORBIDDEN.isdisjoint(name)


def _check_ld_attribute(name: str, attr: Any, *, strict: bool) -> None:
    if not _ld_name_ok(name):
        raise _ld_bad("Invalid characters in attribute name", name)
    if name in LD_RESERVED_ATTRS:
        raise _ld_bad("Reserved attribute name", name)
    items = attr if isinstance(attr, list) else [attr]  # a multi-attribute: one instance per datasetId
    for item in items:
        if not isinstance(item, dict):
            raise _ld_bad("Attribute must be a JSON object", name)
        atype = item.get("type")
        if atype not in LD_ATTR_TYPES:
            raise _ld_bad("Invalid attribute type", f"{name}: {atype!r}")
        if name in LD_GEO_ATTRS and atype != "GeoProperty":
            raise _ld_bad("Invalid attribute type", f"{name} must be a GeoProperty")
        if atype in ("Property", "GeoProperty") and "value" not in item:
            raise _ld_bad("Attribute value missing", name)
        if atype == "Property" and item["value"] is None:
            raise _ld_bad("Attribute value null", f"{name}: null is not a valid Property value")
        if atype == "Relationship":
            obj = item.get("object")
            objs = obj if isinstance(obj, list) else [obj]
            if not objs or not all(isinstance(o, str) and _URI_RE.fullmatch(o) for o in objs):
                raise _ld_bad("Relationship object must be a URI", name)
        if atype == "GeoProperty":
            value = item["value"]
            if not isinstance(value, dict) or value.get("type") not in GEOJSON_GEOMETRIES:
                raise _ld_bad("Invalid GeoJSON", name)
            try:
                _check_coordinates(value["type"], value.get("coordinates"), strict=strict)
            except _Refused:
                raise _ld_bad("Invalid GeoJSON", f"{name}: bad coordinates") from None
        if atype == "LanguageProperty" and not isinstance(item.get("languageMap"), dict):
            raise _ld_bad("languageMap missing", name)
        if "observedAt" in item:
            seen = item["observedAt"]
            if not isinstance(seen, str) or parse_orion_datetime(seen) is None or "T" not in seen:
                raise _ld_bad("Invalid DateTime", f"{name}.observedAt: {seen!r}")
        if "unitCode" in item and not isinstance(item["unitCode"], str):
            raise _ld_bad("unitCode must be a string", name)
        if _depth(item.get("value")) > MAX_NESTING:
            raise _ld_bad("Max nesting level exceeded", name)
        size = len(json.dumps(item.get("value"), ensure_ascii=False).encode("utf-8"))
        if strict and size >= MAX_LD_ATTRIBUTE:
            raise _ld_bad("Attribute too large", f"{name}: {size} bytes of JSON (strict: Orion-LD's limit)")
        for key, sub in item.items():
            if key in LD_ATTR_KEYS:
                continue
            if strict and not isinstance(sub, (dict, list)):
                raise _ld_bad("Invalid sub-attribute", f"{name}.{key} must be a Property or Relationship")
            _check_ld_attribute(key, sub, strict=strict)


def _check_ld_entity(entity: Any, *, ld_json: bool, strict: bool) -> None:
    if not isinstance(entity, dict):
        raise _ld_bad("Entity must be a JSON object", "")
    eid = entity.get("id")
    if not isinstance(eid, str) or not _URI_RE.fullmatch(eid) or len(eid) > MAX_ID_LEN:
        raise _ld_bad("Invalid Entity ID", f"not a URI: {eid!r}")
    etype = entity.get("type")
    types = etype if isinstance(etype, list) else [etype]
    if not types or not all(isinstance(t, str) and _ld_name_ok(t) for t in types):
        raise _ld_bad("Invalid Entity Type", repr(etype))
    if ld_json and "@context" not in entity:
        raise _ld_bad("@context missing", "Content-Type is application/ld+json but the entity has no @context")
    if not ld_json and "@context" in entity:
        raise _ld_bad("@context in payload", "Content-Type is application/json: the @context goes in a Link header")
    for twin, member in LD_KEYWORD_TWINS.items():
        if twin in entity:
            raise _ld_bad(f"Both /{member}/ and /{twin}/ field in an entity", str(entity[member]))
    for name, attr in entity.items():
        if name in ("id", "type", "@context"):
            continue
        _check_ld_attribute(name, attr, strict=strict)


def _ld_transport(headers: Mapping[str, str], body: bytes, *, strict: bool) -> Any:
    try:
        mime = _check_ld_transport(headers, body, media=("application/json", "application/ld+json"))
    except _Refused as refused:
        desc = refused.body["description"] if isinstance(refused.body, dict) else ""
        kind = {411: "BadRequestData", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType"}.get(
            refused.status, "BadRequestData"
        )
        raise _Refused(refused.status, _problem(refused.status, kind, desc, desc)) from None
    tenant = _header(headers, "NGSILD-Tenant")
    try:
        _check_tenant(tenant, strict=strict)
    except _Refused as refused:
        raise _ld_bad("Invalid Tenant", refused.body["description"]) from None
    link = _header(headers, "Link")
    if mime == "application/ld+json" and link is not None:
        raise _ld_bad("Link header with application/ld+json", "the @context goes in the body, not a Link header")
    if link is not None and 'rel="http://www.w3.org/ns/json-ld#context"' not in link:
        raise _ld_bad("Invalid Link header", 'Link must have rel="http://www.w3.org/ns/json-ld#context"')
    try:
        doc = _parse(body)
    except ValueError:
        raise _Refused(400, _problem(400, "InvalidRequest", "JSON Parse Error", "invalid JSON")) from None
    if not isinstance(doc, list):
        raise _ld_bad("Invalid payload", "entityOperations take a JSON array of entities")
    if not doc:
        raise _ld_bad("Invalid payload", "empty array of entities")
    if len(doc) > MAX_LD_BATCH:
        raise _ld_bad("Too many entities", f"{len(doc)} entities, max {MAX_LD_BATCH} per batch")
    return doc, mime == "application/ld+json"


# Orion-LD's `options` (src/lib/orionld/mhd/mhdConnectionInit.cpp optionsParse): anything else is a 400
LD_OPTIONS = frozenset(
    {"update", "replace", "noOverwrite", "keyValues", "simplified", "concise", "normalized", "sysAttrs", "fromDb"}
    | {"append", "count", "values", "unique", "dateCreated", "dateModified", "noAttrDetail", "upsert"}
)
LD_UPSERT_MODES = frozenset({"update", "replace"})
# an upsert acts on these; the double implements neither (noOverwrite keeps what exists, keyValues
# takes simplified entities)
LD_UPSERT_UNIMPLEMENTED = frozenset({"noOverwrite", "keyValues", "simplified", "concise"})


def ld_upsert_mode(query: Mapping[str, list[str]]) -> tuple[int, object | None, str]:
    """(200, None, "update" or "replace") for the URI params of an upsert (replace, the default, overwrites an
    existing entity; update appends to it: orionldPostBatchUpsert.cpp), else (status, problem details, "")."""
    options: set[str] = set()
    for key, values in query.items():
        if any(v == "" for v in values):
            return 400, _problem(400, "BadRequestData", "Empty right-hand-side for a URI parameter", key), ""
    for value in query.get("options", []):
        for item in value.split(","):
            if item not in LD_OPTIONS:
                return 400, _problem(400, "BadRequestData", "Invalid value for URI param /options/", item), ""
            options.add(item)
    if options >= LD_UPSERT_MODES:
        return (
            400,
            _problem(400, "BadRequestData", "URI Param Error", "options: both /update/ and /replace/ present"),
            "",
        )
    unimplemented = sorted(options & LD_UPSERT_UNIMPLEMENTED)
    if unimplemented:
        detail = f"the Orion double does not implement options={unimplemented[0]} on an upsert"
        return 501, _problem(501, "OperationNotSupported", "Not Implemented", detail), ""
    return 200, None, "update" if "update" in options else "replace"


def validate_ld_upsert(headers: Mapping[str, str], body: bytes, *, strict: bool = True) -> tuple[int, object | None]:
    """(204, None) when every entity would be upserted; a request-level problem gives (4xx, problem
    details); bad entities among good ones give (207, {"success": [ids], "errors": [...]}) as the
    NGSI-LD batch operations do (ETSI GS CIM 009, 5.6.8 / 6.15)."""
    try:
        doc, ld_json = _ld_transport(headers, body, strict=strict)
    except _Refused as refused:
        return refused.status, refused.body
    success: list[str] = []
    errors: list[dict[str, Any]] = []
    for entity in doc:
        eid = entity.get("id") if isinstance(entity, dict) else None
        try:
            _check_ld_entity(entity, ld_json=ld_json, strict=strict)
        except _Refused as refused:
            errors.append({"entityId": eid if isinstance(eid, str) else "", "error": refused.body})
        else:
            success.append(eid)  # type: ignore[arg-type]
    if errors:
        return 207, {"success": success, "errors": errors}
    return 204, None
