"""Refuse, before it is stored, any Reading that Orion or an NGSI-LD broker would refuse.

`check_reading` runs on every reading on its way into the buffer, so the parts that rarely change
(entity id, type and attribute names) are validated once per combination and remembered in a
bounded cache; values are checked every time with a fast path for scalars.

It also owns the NGSI value typing the converters share: `ngsi_type` (explicit, else inferred from
the value) and `canonical_datetime` (any ISO 8601 with a zone → `YYYY-MM-DDThh:mm:ss.sssZ` UTC).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateway.errors import ReadingError
from gateway.ngsi import identifiers as ids
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.values import first_banned
from gateway.records import Attribute, Reading, check_values, iso_utc

MAX_NESTING = 50
# orjson's integer range: beyond it a value cannot even be serialized
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# Written by the converters themselves, so a reading must not bring its own
CONVERTER_ATTRIBUTES = frozenset({"TimeInstant", "timeSource"})
# NGSI-LD entity members and system attributes; refused so that one reading fits every uplink
LD_RESERVED_ATTRIBUTES = frozenset({"@context", "scope", "createdAt", "modifiedAt", "deletedAt"})
# NGSI-LD insists these are GeoProperties
LD_GEO_NAMES = frozenset({"location", "observationSpace", "operationSpace"})
DEPRECATED_GEO_TYPES = frozenset({"geo:point", "geo:line", "geo:box", "geo:polygon"})
_GEOMETRY_LEVELS = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
# Orion would execute these instead of storing them (orion-api.md, "Update operators")
UPDATE_OPERATORS = frozenset({"$inc", "$mul", "$max", "$min", "$push", "$addToSet", "$pull", "$pullAll", "$set", "$unset"})
_URN_PREFIX = "urn:ngsi-ld:"


_INFERRED: dict[type, str] = {
    bool: "Boolean", int: "Number", float: "Number", str: "Text", type(None): "None", dict: "StructuredValue", list: "StructuredValue"
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


def canonical_datetime(text: str) -> str:
    """ISO 8601 with a zone → Orion's `YYYY-MM-DDThh:mm:ss.sssZ`; ValueError when that is impossible."""
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError("must carry a time zone (Z or +09:00)")
    return iso_utc(t)


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
    "geo:json": ("a GeoJSON object", lambda v: isinstance(v, Mapping)),
    "Relationship": ("an entity id string", lambda v: isinstance(v, str)),
}


def _geojson_problem(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "must be a GeoJSON object"
    kind = value.get("type")
    if kind == "Feature":
        return _geojson_problem(value.get("geometry"))
    if kind == "FeatureCollection":
        features = value.get("features")
        if not isinstance(features, (list, tuple)) or len(features) != 1:
            return "a FeatureCollection must hold exactly one Feature"
        return _geojson_problem(features[0])
    if kind not in _GEOMETRY_LEVELS:
        return "must be a Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon or Feature"

    def positions(node: Any, level: int) -> bool:
        if level == 0:
            return (
                isinstance(node, (list, tuple))
                and len(node) >= 2
                and all(_is_number(c) and math.isfinite(c) for c in node)
                and -180 <= node[0] <= 180
                and -90 <= node[1] <= 90
            )
        return isinstance(node, (list, tuple)) and len(node) > 0 and all(positions(n, level - 1) for n in node)

    if not positions(value.get("coordinates"), _GEOMETRY_LEVELS[kind]):
        return f"coordinates must be [longitude, latitude] positions (-180..180, -90..90) for a {kind}"
    return None


def _depth(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _walk_problem(value: Any) -> str | None:
    """Problems `records.check_values` leaves to us: big ints, lone surrogates, non-str keys."""
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "text must be valid Unicode (it holds a lone surrogate)"
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return None if _INT_MIN <= value <= _INT_MAX else f"integer {value} is out of the 64-bit range"
    if isinstance(value, Mapping):
        for k, v in value.items():
            problem = _walk_problem(k) or _walk_problem(v)
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for v in value:
            problem = _walk_problem(v)
            if problem:
                return problem
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ReadingChecker:
    """Validates readings; remembers up to `cache_size` (id, type, attribute names) combinations."""

    def __init__(self, *, cache_size: int = 4096) -> None:
        self._cache_size = cache_size
        self._identities: dict[tuple[str, str, tuple[str, ...]], None] = {}
        self._types: set[str] = {"Number", "Boolean", "Text", "StructuredValue", "DateTime", "geo:json", "Relationship", "TextUnrestricted", "None"}
        self._units: set[str] = set()

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
                why = "written by the converter (set observed_at instead)" if name in CONVERTER_ATTRIBUTES else "reserved by NGSI-LD"
                raise ReadingError(
                    f"{r.entity_id}: attribute name must not be {name!r}, it is {why}, got {name!r}",
                    entity_id=r.entity_id,
                    attribute=name,
                )

    # -------------------------------------------------------------------------------- values

    def _fail(self, r: Reading, name: str, what: str, value: Any, fix: str = "", **params: Any) -> ReadingError:
        tail = f"; {fix}" if fix else ""
        return ReadingError(
            f"{r.entity_id}.{name}: {what}, got {_shown(value)}{tail}",
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
            raise self._fail(r, name, f"type {atype} needs {wanted}", value)
        if atype == "DateTime":
            try:
                canonical_datetime(value)
            except (ValueError, OverflowError) as exc:
                raise self._fail(r, name, f"DateTime {exc}", value, "send ISO 8601 such as 2024-05-01T09:00:00+09:00") from None
        elif atype == "geo:json":
            problem = _geojson_problem(value)
            if problem:
                raise self._fail(r, name, f"geo:json {problem}", value)
        elif atype == "Relationship":
            try:
                ids.check_entity_id(value)
            except ValueError as exc:
                raise self._fail(r, name, f"Relationship target {exc}", value) from None

    def _check_structure(self, r: Reading, name: str, value: Any, *, top: bool) -> None:
        if _depth(value) > MAX_NESTING:
            raise self._fail(r, name, f"nesting deeper than {MAX_NESTING} levels, Orion refuses it", value)
        problem = _walk_problem(value)
        if problem:
            raise self._fail(r, name, problem, value)
        if top and isinstance(value, Mapping) and not UPDATE_OPERATORS.isdisjoint(value):
            raise self._fail(r, name, "an object with update-operator keys ($inc, $set, ...) would be executed by Orion", value)

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

    def _check_metadata(self, r: Reading, name: str, attr: Attribute, reject: bool) -> bool:
        """Checks an attribute's metadata; True when it carries `ignoreType: true`."""
        ignore = False
        for mname, mvalue in attr.metadata.items():
            where = f"{name}.metadata.{mname}"
            try:
                ids.check_metadata_name(mname)
            except ValueError as exc:
                raise self._fail(r, where, str(exc), mname) from None
            if mname == "TimeInstant" or (mname == "unitCode" and attr.unit is not None):
                raise self._fail(r, where, "metadata is written by the converter (from observed_at / unit)", mname)
            typed = isinstance(mvalue, Mapping) and "value" in mvalue and set(mvalue) <= {"type", "value"}
            value = mvalue["value"] if typed else mvalue
            mtype = ngsi_type(str(mvalue.get("type") or "") if typed else "", value)
            self._check_type_name(r, where, mtype)
            self._check_structure(r, where, value, top=False)
            self._check_typed(r, where, mtype, value)
            if reject:
                self._check_banned(r, where, value)
            if mname == "ignoreType":
                if not isinstance(value, bool):
                    raise self._fail(r, where, "ignoreType must be true or false", value)
                ignore = value
        return ignore

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
        if seen.tzinfo is None or not 2 <= seen.year <= 9998:
            what = "must carry a time zone" if seen.tzinfo is None else "must be a year between 2 and 9998"
            raise ReadingError(
                f"{r.entity_id}: observed_at {what}, got {seen.isoformat()}", entity_id=r.entity_id
            )
        reject = encoding is ValueEncoding.REJECT
        structured_seen = False
        locations = 0
        for name, attr in attrs.items():
            value = attr.value
            atype = attr.type
            tv = type(value)
            if tv is float:
                if not math.isfinite(value):
                    raise self._fail(r, name, "must be a finite number", value)
            elif tv is str:
                if reject and atype != "TextUnrestricted":
                    self._check_banned(r, name, value)
                if not value.isascii():
                    self._check_structure(r, name, value, top=True)
            elif tv is int:
                if not _INT_MIN <= value <= _INT_MAX:
                    raise self._fail(r, name, "integer is out of the 64-bit range", value)
            elif not (tv is bool or value is None):
                if not structured_seen:
                    check_values(r)  # non-JSON types, NaN/Infinity deep inside
                    structured_seen = True
                self._check_structure(r, name, value, top=True)
                if reject:
                    self._check_banned(r, name, value)
            if atype:
                self._check_type_name(r, name, atype)
                self._check_typed(r, name, atype, value)
            if name in LD_GEO_NAMES and value is not None and atype != "geo:json":
                raise self._fail(r, name, f"{name} must be of type geo:json (NGSI-LD requires a GeoProperty)", value)
            if attr.unit is not None and attr.unit not in self._units:
                self._check_unit(r, name, attr.unit)
            ignore = False
            if attr.metadata:
                if not structured_seen:
                    check_values(r)
                    structured_seen = True
                ignore = self._check_metadata(r, name, attr, reject)
            if atype == "geo:json" and value is not None and not ignore:
                locations += 1
        if locations > 1:
            raise ReadingError(
                f"{r.entity_id}: more than one geo:json location, got {locations};"
                " mark the informative ones with metadata ignoreType = true (Orion answers 413 otherwise)",
                entity_id=r.entity_id,
                entity_type=r.entity_type,
            )

    def _check_unit(self, r: Reading, name: str, unit: Any) -> None:
        try:
            ids.check_attribute_type(unit)
        except ValueError:
            raise self._fail(
                r, name, "unit must be a UN/CEFACT common code such as MTR, CEL or P1", unit
            ) from None
        if len(self._units) < self._cache_size:
            self._units.add(unit)


_default = ReadingChecker()


def check_reading(reading: Reading, *, encoding: ValueEncoding) -> None:
    """Raise ReadingError if any uplink's broker would refuse this reading (shared, cached checker)."""
    _default.check(reading, encoding=encoding)
