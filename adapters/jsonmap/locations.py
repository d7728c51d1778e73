"""An entity's `location` from a mapping: a fixed point, two lat/lon fields, or a GeoJSON field; checked as Orion indexes it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from adapters.jsonmap.config import LocationSection, WhenAttributeMissing
from adapters.jsonmap.errors import FieldError, Problem, describe, type_name
from adapters.jsonmap.numbers import LargeNumber, number_text
from adapters.jsonmap.paths import MISSING, JsonPath, lookup, parse_path
from gateway.location import point
from gateway.ngsi import geojson
from gateway.records import Attribute

_SUBJECT = "location"
_GEO_JSON = "geo:json"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationRule:
    """A location section compiled for the hot path: `fixed`, or the paths it reads."""

    fixed: Attribute | None  # lat and lon given in the configuration: one shared attribute
    lat: JsonPath | None
    lat_text: str
    lon: JsonPath | None
    lon_text: str
    geometry: JsonPath | None  # a field holding a GeoJSON object
    geometry_text: str
    skip_if_missing: bool


def compile_location(s: LocationSection) -> LocationRule:
    fixed = None
    if s.lat is not None and s.lon is not None:
        fixed = Attribute(value=point(s.lat, s.lon), type=_GEO_JSON)
    return LocationRule(
        fixed=fixed,
        lat=parse_path(s.lat_path) if s.lat_path else None,
        lat_text=s.lat_path or "",
        lon=parse_path(s.lon_path) if s.lon_path else None,
        lon_text=s.lon_path or "",
        geometry=parse_path(s.path) if s.path else None,
        geometry_text=s.path or "",
        skip_if_missing=s.missing is WhenAttributeMissing.SKIP,
    )


def _fail(what: str, problem: Problem, path: JsonPath, path_text: str) -> FieldError:
    return FieldError(what, problem=problem, path=path, path_text=path_text, subject=_SUBJECT)


def _present(rule: LocationRule, path: JsonPath, text: str, item: Any, nulls: frozenset[str]) -> Any:
    """The field's value; MISSING when it is absent, null or a null string and the rule says skip."""
    raw = lookup(item, path)
    if raw is MISSING or raw is None or (nulls and raw.__class__ is str and raw in nulls):
        if rule.skip_if_missing:
            return MISSING
        # not absent, not null: one of the configured null strings, quoted as it is (configuration, not data)
        got = "no such field" if raw is MISSING else "null" if raw is None else repr(raw)
        raise _fail(f"is missing, got {got}", Problem.MISSING_FIELD, path, text)
    return raw


def _degrees(raw: Any, path: JsonPath, text: str, low: float, high: float, name: str) -> float:
    t = raw.__class__
    if t is int or t is float:
        value = float(raw)
    elif t is str and (d := number_text(raw)) is not None:
        value = float(d)
    elif t is LargeNumber:  # a number, just far out of range (adapters.jsonmap.decode)
        value = raw.as_float()
    else:
        raise _fail(
            f"must be a {name} in degrees (a number), got {type_name(raw)} {describe(raw)}",
            Problem.WRONG_TYPE,
            path,
            text,
        )
    if not (math.isfinite(value) and low <= value <= high):
        swapped = "; are lat_path and lon_path swapped?" if name == "latitude" else ""
        raise _fail(f"must be a {name} {low:g}..{high:g}, got {describe(raw)}{swapped}", Problem.BAD_VALUE, path, text)
    return value


def read_location(rule: LocationRule, item: Any, nulls: frozenset[str]) -> Attribute | None:
    """The `location` attribute of `item`; None when it has none and the rule says skip; FieldError otherwise."""
    if rule.fixed is not None:
        return rule.fixed
    if rule.geometry is not None:
        raw = _present(rule, rule.geometry, rule.geometry_text, item, nulls)
        if raw is MISSING:
            return None
        if raw.__class__ is not dict:
            raise _fail(
                f"must be a GeoJSON object, got {type_name(raw)} {describe(raw)}",
                Problem.WRONG_TYPE,
                rule.geometry,
                rule.geometry_text,
            )
        problem = geojson.problem(raw)
        if problem is not None:
            what, fix = problem
            raise _fail(
                f"{what}, got {describe(raw)}" + (f"; {fix}" if fix else ""),
                Problem.BAD_VALUE,
                rule.geometry,
                rule.geometry_text,
            )
        return Attribute(value=raw, type=_GEO_JSON)
    assert rule.lat is not None and rule.lon is not None  # the section requires one of the three forms
    raw_lat = _present(rule, rule.lat, rule.lat_text, item, nulls)
    raw_lon = _present(rule, rule.lon, rule.lon_text, item, nulls)
    if raw_lat is MISSING or raw_lon is MISSING:
        return None
    lat = _degrees(raw_lat, rule.lat, rule.lat_text, -90, 90, "latitude")
    lon = _degrees(raw_lon, rule.lon, rule.lon_text, -180, 180, "longitude")
    return Attribute(value=point(lat, lon), type=_GEO_JSON)
