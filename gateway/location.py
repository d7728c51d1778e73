"""A fixed place for an adapter's entities: `location = { lat = …, lon = … }` → a GeoJSON Point `geo:json` attribute.

The Smart Data Models' observation types require `location` (a GeoJSON geometry); Orion indexes
one `geo:json` attribute per entity, and GeoJSON orders a position `[longitude, latitude]` — the
reverse of how people write a place, so the configuration names both and this module orders them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import field_validator

from gateway.configbase import Field, Section
from gateway.records import Attribute

__all__ = ["LOCATION", "Degrees", "Location", "check_latitude", "check_longitude", "point"]

LOCATION = "location"  # the attribute name the Smart Data Models (and NGSI-LD) use for the entity's place


def check_latitude(v: float) -> float:
    if not (math.isfinite(v) and -90 <= v <= 90):
        raise ValueError(
            f"must be a latitude in degrees -90..90 (north positive), got {v:.10g}; are lat and lon swapped?"
        )
    return v


def check_longitude(v: float) -> float:
    if not (math.isfinite(v) and -180 <= v <= 180):
        raise ValueError(f"must be a longitude in degrees -180..180 (east positive), got {v:.10g}")
    return v


def point(lat: float, lon: float) -> dict[str, Any]:
    """A GeoJSON Point: `{"type": "Point", "coordinates": [lon, lat]}` (RFC 7946 order)."""
    return {"type": "Point", "coordinates": [lon, lat]}


# strict: a TOML `true` or "32.2" is a mistake, not a coordinate
Degrees = Annotated[float, Field(strict=True)]


class Location(Section):
    """WGS 84 degrees, e.g. `{ lat = 32.2148, lon = 130.7621 }` for 人吉 (Hitoyoshi)."""

    lat: Degrees
    lon: Degrees

    @field_validator("lat")
    @classmethod
    def _latitude(cls, v: float) -> float:
        return check_latitude(v)

    @field_validator("lon")
    @classmethod
    def _longitude(cls, v: float) -> float:
        return check_longitude(v)

    def attribute(self) -> Attribute:
        """The `location` attribute; immutable by convention, so every reading may share one."""
        return Attribute(value=point(self.lat, self.lon), type="geo:json")
