"""A mapping section compiled once; turns one JSON object into a Reading by it (the per-message hot path).

Besides the mapped attributes, a reading gets `location` and `controlledProperty` when the mapping
sets them, and `dateObserved` (its observation time) when its entity type is a Smart Data Models
observation type (WaterObserved, …) and the mapping does not map a `dateObserved` of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from adapters.jsonmap.config import CONTROLLED_PROPERTY, DEFAULT_ZONE, MappingSection, NgsiType
from adapters.jsonmap.errors import FieldError, Problem, describe, describe_keys
from adapters.jsonmap.locations import LocationRule, compile_location, read_location
from adapters.jsonmap.numbers import LargeNumber
from adapters.jsonmap.paths import MISSING, JsonPath, lookup, path_text
from adapters.jsonmap.timestamps import TimeRule, compile_timestamp, observed_at
from adapters.jsonmap.values import AttributeRule, compile_attribute
from gateway.date_observed import DATE_OBSERVED, date_observed, has_date_observed
from gateway.errors import ReadingError
from gateway.location import LOCATION
from gateway.records import Attribute, Lane, Reading, Source, check_values, make_attribute, make_reading


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRules:
    """Attributes, time, null strings and lane of one mapping, ready for `read_reading`."""

    attributes: tuple[AttributeRule, ...]
    timestamp: TimeRule | None
    zone: tzinfo  # for DateTime attributes without an offset too
    null_values: frozenset[str]
    lane: Lane
    structured: bool  # a StructuredValue needs the full NGSI value walk once the Reading is built
    location: LocationRule | None
    controlled: Attribute | None  # controlledProperty, the same on every reading


def compile_fields(m: MappingSection, *, arrival: str) -> FieldRules:
    """`arrival` names what timestamp.missing = "arrival" stamps: "the arrival time", "the poll time"."""
    return FieldRules(
        attributes=tuple(compile_attribute(a) for a in m.attributes),
        timestamp=compile_timestamp(m.timestamp, arrival=arrival) if m.timestamp else None,
        zone=ZoneInfo(m.timestamp.zone if m.timestamp else DEFAULT_ZONE),
        null_values=frozenset(m.null_values),
        lane=m.lane.lane,
        # a GeoJSON object taken from the JSON may carry anything besides its geometry (a Feature's properties)
        structured=any(a.type is NgsiType.STRUCTURED_VALUE for a in m.attributes)
        or (m.location is not None and m.location.path is not None),
        location=compile_location(m.location) if m.location is not None else None,
        controlled=None
        if m.controlled_property is None
        else Attribute(value=list(m.controlled_property), type="StructuredValue"),
    )


def read_attributes(rules: FieldRules, item: dict[str, Any]) -> dict[str, Attribute]:
    """The mapped attributes present in `item` (skipped ones left out; maybe none); FieldError on the first bad one."""
    attributes: dict[str, Attribute] = {}
    nulls, zone = rules.null_values, rules.zone
    for a in rules.attributes:
        raw = item.get(a.key, MISSING) if a.key is not None else lookup(item, a.path)
        if raw is MISSING or raw is None or (nulls and raw.__class__ is str and raw in nulls):
            if a.skip_if_missing:
                continue
            # not absent, not null: one of the configured null strings, quoted as it is (configuration, not data)
            got = "no such field" if raw is MISSING else "null" if raw is None else repr(raw)
            raise FieldError(
                f"is missing, got {got}",
                problem=Problem.MISSING_FIELD,
                path=a.path,
                path_text=a.path_text,
                subject=a.subject,
            )
        attributes[a.name] = make_attribute(a.coerce(a, raw, zone), a.type_text, a.unit)
    return attributes


def read_reading(
    rules: FieldRules,
    item: dict[str, Any],
    now: datetime,
    *,
    entity_id: str,
    entity_type: str,
    source: Source,
    dated: bool | None = None,
) -> Reading:
    """The Reading `item` makes (ids already rendered by the adapter), or FieldError; the path is empty for a
    problem of the whole object (no mapped attribute has a value, a value Orion refuses).

    `dated`: whether the entity type carries dateObserved, when the adapter knows it from its configuration
    (a literal type); None decides by `entity_type` (a type rendered from the message)."""
    attributes = read_attributes(rules, item)
    if not attributes:
        raise FieldError(
            f"none of the mapped attributes has a value, got keys {describe_keys(sorted(item))}",
            problem=Problem.MISSING_FIELD,
        )
    when, time_source = observed_at(rules.timestamp, item, now, rules.null_values)
    if rules.location is not None:
        location = read_location(rules.location, item, rules.null_values)
        if location is not None:
            attributes[LOCATION] = location
    if rules.controlled is not None:
        attributes[CONTROLLED_PROPERTY] = rules.controlled
    if (has_date_observed(entity_type) if dated is None else dated) and DATE_OBSERVED not in attributes:
        attributes[DATE_OBSERVED] = date_observed(when)
    reading = make_reading(entity_id, entity_type, attributes, when, time_source, source, rules.lane)
    if rules.structured:  # numbers were checked on conversion; only nested values need the full walk
        try:
            check_values(reading)
        except ReadingError as exc:
            # a LargeNumber is no JSON data to check_values: only now, off the hot path, are they looked for
            if not _settle_large_numbers(rules, attributes):
                raise FieldError(str(exc), problem=Problem.BAD_VALUE) from None
            reading = make_reading(entity_id, entity_type, attributes, when, time_source, source, rules.lane)
            try:
                check_values(reading)
            except ReadingError as again:
                raise FieldError(str(again), problem=Problem.BAD_VALUE) from None
    return reading


_MAX_NESTING = 51  # one past what check_values accepts


def _settle_large_numbers(rules: FieldRules, attributes: dict[str, Attribute]) -> bool:
    """Inside StructuredValue and GeoJSON values, each LargeNumber as the float orjson would have given;
    FieldError (bad_value, at its place) for one beyond a double. Whether there was any."""
    found = False
    for name, attr in attributes.items():
        rule = next((a for a in rules.attributes if a.name == name), None)
        if rule is not None:
            base, subject = rule.path, rule.subject
        elif rules.location is not None and rules.location.geometry is not None and name == LOCATION:
            base, subject = rules.location.geometry, "location"
        else:
            continue  # not from the document (controlledProperty, dateObserved, a fixed location)
        value, changed = _plain(attr.value, base, subject)
        if changed:
            attributes[name] = make_attribute(value, attr.type, attr.unit)
            found = True
    return found


def _plain(value: Any, path: JsonPath, subject: str, depth: int = 0) -> tuple[Any, bool]:
    """`value` with its LargeNumbers as floats, and whether it had any; FieldError for one beyond a double."""
    if depth > _MAX_NESTING:
        return value, False  # check_values refuses it for its nesting anyway; no recursion that deep here
    t = value.__class__
    if t is LargeNumber:
        if not value.is_finite():
            raise FieldError(
                f"is out of range, got {describe(value)}",
                problem=Problem.BAD_VALUE,
                path=path,
                path_text=path_text(path),
                subject=subject,
            )
        return value.as_float(), True
    if t is dict:
        pairs = [(k, _plain(v, (*path, k), subject, depth + 1)) for k, v in value.items()]
        if any(changed for _, (_, changed) in pairs):
            return {k: v for k, (v, _) in pairs}, True
    elif t is list:
        items = [_plain(v, (*path, i), subject, depth + 1) for i, v in enumerate(value)]
        if any(changed for _, changed in items):
            return [v for v, _ in items], True
    return value, False
