"""Config shared by the JSON-mapping adapters: attributes (path → name, type, unit, scale), timestamp, location, lane."""

from __future__ import annotations

import enum
import math
import re
from datetime import UTC, datetime
from typing import Annotated, ClassVar, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from adapters.jsonmap.paths import parse_path
from gateway.configbase import ConfigProblems, Field, Section
from gateway.location import LOCATION, Degrees, check_latitude, check_longitude
from gateway.ngsi.identifiers import check_attribute_name, check_attribute_type
from gateway.profiles.schema import ControlledProperties
from gateway.records import Lane


class NgsiType(enum.Enum):
    NUMBER = "Number"  # JSON numbers and numeric strings ("2.35": many systems quote their values)
    TEXT = "Text"  # strings; numbers become their text
    BOOLEAN = "Boolean"
    DATETIME = "DateTime"  # ISO 8601, normalised to UTC
    STRUCTURED_VALUE = "StructuredValue"


class TimeFormat(enum.Enum):
    ISO8601 = "iso8601"  # 2026-07-01T09:10:00+09:00; without an offset the `zone` applies
    EPOCH_S = "epoch_s"  # numbers or numeric strings
    EPOCH_MS = "epoch_ms"
    STRPTIME = "strptime"  # `pattern` such as "%Y%m%d%H%M"; without %z the `zone` applies
    LOCAL = "local"  # 2026/07/01 09:10, 2026年7月1日 9時10分 (24:00 = next day 0:00) in `zone`


class WhenAttributeMissing(enum.Enum):
    REJECT = "reject"  # the message or item is malformed
    SKIP = "skip"  # the reading carries the attributes that are present


class WhenTimeMissing(enum.Enum):
    REJECT = "reject"
    ARRIVAL = "arrival"  # stamp the gateway's time of arrival or poll (time_source = gateway)


class LaneName(enum.Enum):
    ALERT = "alert"
    NORMAL = "normal"
    BULK = "bulk"

    @property
    def lane(self) -> Lane:
        return Lane[self.name]


DEFAULT_ZONE = "Asia/Tokyo"
CONTROLLED_PROPERTY = "controlledProperty"  # the Device model's list of what a device senses or switches
_UNIT_RE = re.compile(r"^[A-Z0-9]{2,3}$", re.ASCII)
_SAMPLE_TIME = datetime(2026, 7, 1, 9, 10, 30, tzinfo=UTC)


def _check_unit(v: str | None) -> str | None:
    if v is not None and not _UNIT_RE.match(v):
        raise ValueError("must be a UN/CEFACT common code of 2-3 capitals/digits (CEL, MTR, P1, KWH)")
    return v


def _check_zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone name like Asia/Tokyo or UTC") from None
    return v


def _check_path(v: str) -> str:
    parse_path(v)
    return v


FieldPath = Annotated[str, AfterValidator(_check_path)]
Zone = Annotated[str, AfterValidator(_check_zone)]


class AttributeMapping(Section):
    path: FieldPath = Field(description="JSON path of the value, e.g. object.temperature or 水位")
    name: str = Field(description="NGSI attribute name")
    type: NgsiType = NgsiType.NUMBER
    unit: Annotated[str | None, AfterValidator(_check_unit)] = None
    scale: float | None = Field(default=None, description="multiply Number values by this (0.1 for tenths)")
    missing: WhenAttributeMissing = WhenAttributeMissing.REJECT

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_attribute_name(v)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v == 0):
            raise ValueError("must be a finite, non-zero number")
        return v

    @model_validator(mode="after")
    def _number_only(self) -> AttributeMapping:
        check_attribute_type(self.type.value)
        if self.scale is not None and self.type is not NgsiType.NUMBER:
            raise ConfigProblems([("scale", f"applies to Number attributes only, got type {self.type.value!r}")])
        return self


class TimestampSection(Section):
    path: FieldPath = Field(description="JSON path of the observation time, e.g. time or 観測時刻")
    format: TimeFormat = TimeFormat.ISO8601
    pattern: str | None = Field(default=None, description='strptime pattern for format = "strptime"')
    zone: Zone = Field(default=DEFAULT_ZONE, description="zone of times written without an offset")
    missing: WhenTimeMissing = WhenTimeMissing.REJECT

    @model_validator(mode="after")
    def _pattern(self) -> TimestampSection:
        if self.format is TimeFormat.STRPTIME:
            if not self.pattern:
                raise ConfigProblems(
                    [("pattern", ('is needed with format = "strptime", got none; e.g. pattern = "%Y%m%d%H%M"'))]
                )
            try:
                datetime.strptime(_SAMPLE_TIME.strftime(self.pattern), self.pattern)
            except ValueError:
                raise ConfigProblems(
                    [
                        (
                            "pattern",
                            (
                                "must be a strptime pattern that reads back what it writes, like "
                                f"%Y/%m/%d %H:%M, got {self.pattern!r}"
                            ),
                        )
                    ]
                ) from None
            if "%Y" not in self.pattern and "%y" not in self.pattern:
                raise ConfigProblems([("pattern", f"must contain the year (%Y), got {self.pattern!r}")])
        elif self.pattern is not None:
            raise ConfigProblems(
                [("pattern", (f'applies to format = "strptime" only, got format {self.format.value!r}'))]
            )
        return self


class LocationSection(Section):
    """`location`: a fixed place, or where each object holds its place (two fields, or one GeoJSON field)."""

    lat: Degrees | None = Field(default=None, description="a fixed place: latitude in degrees (with lon)")
    lon: Degrees | None = Field(default=None, description="a fixed place: longitude in degrees (with lat)")
    lat_path: FieldPath | None = Field(default=None, description="JSON path of the latitude (with lon_path)")
    lon_path: FieldPath | None = Field(default=None, description="JSON path of the longitude (with lat_path)")
    path: FieldPath | None = Field(default=None, description="JSON path of a GeoJSON object (Point, Feature, ...)")
    missing: WhenAttributeMissing = WhenAttributeMissing.REJECT

    @field_validator("lat")
    @classmethod
    def _latitude(cls, v: float | None) -> float | None:
        return None if v is None else check_latitude(v)

    @field_validator("lon")
    @classmethod
    def _longitude(cls, v: float | None) -> float | None:
        return None if v is None else check_longitude(v)

    @model_validator(mode="after")
    def _one_form(self) -> LocationSection:
        forms = [
            keys
            for keys in (("lat", "lon"), ("lat_path", "lon_path"), ("path",))
            if any(getattr(self, k) is not None for k in keys)
        ]
        given = [k for keys in forms for k in keys if getattr(self, k) is not None]
        if len(forms) != 1 or len(given) != len(forms[0]):
            raise ValueError(
                "needs lat and lon (a fixed place), lat_path and lon_path (two fields of each object) or path "
                f"(a GeoJSON field of each object), got {', '.join(given) or 'none of them'}"
            )
        if forms[0] == ("lat", "lon") and "missing" in self.model_fields_set:
            raise ConfigProblems(
                [
                    (
                        "missing",
                        (
                            "applies to a location read from the JSON, not to a fixed lat and lon, "
                            f"got missing = {self.missing.value!r}; remove it"
                        ),
                    )
                ]
            )
        return self


class MappingSection(Section):
    """What every JSON → Reading mapping has; an adapter's section adds where the JSON comes from and the ids."""

    # the TOML table an attribute is written in, for the "at least one" message
    attributes_table: ClassVar[str] = "[[adapters.mappings.attributes]]"

    attributes: tuple[AttributeMapping, ...]
    timestamp: TimestampSection | None = Field(default=None, description="unset: the arrival or poll time is used")
    null_values: tuple[str, ...] = Field(
        default=(), description='strings that mean "no value" (欠測, 閉局, -): treated like a missing field'
    )
    lane: LaneName = LaneName.NORMAL
    location: LocationSection | None = Field(
        default=None, description="the entity's place, sent as the geo:json attribute location"
    )
    controlled_property: ControlledProperties | None = Field(
        default=None, description="Device entities: what the device senses, sent as controlledProperty"
    )

    @field_validator("attributes")
    @classmethod
    def _unique(cls, v: tuple[AttributeMapping, ...]) -> tuple[AttributeMapping, ...]:
        if not v:
            raise ValueError(f"must map at least one attribute ({cls.attributes_table}), got none")
        seen: set[str] = set()
        for a in v:
            if a.name in seen:
                raise ValueError(f"must name each attribute once, got {a.name!r} twice")
            seen.add(a.name)
        return v

    @model_validator(mode="after")
    def _set_once(self) -> MappingSection:
        # location and controlled_property add attributes of their own: a mapped one of that name would clash
        errors: list[InitErrorDetails] = []
        for key, name in (("location", LOCATION), ("controlled_property", CONTROLLED_PROPERTY)):
            named = next((i for i, a in enumerate(self.attributes) if a.name == name), None)
            if getattr(self, key) is not None and named is not None:
                message = f"is set and attributes[{named}] is named {name!r} too, got both; keep one of them"
                # raised at the key itself, so the message names it rather than the whole mapping
                errors.append(
                    InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(key,), input=None)
                )
        if errors:
            raise ValidationError.from_exception_data("mapping", errors)
        return self


M = TypeVar("M", bound=MappingSection)


def at_least_one(table: str) -> AfterValidator:
    """For an adapter's list of mapping sections: an empty list maps nothing and is refused, naming `table`."""

    def check(v: tuple[M, ...]) -> tuple[M, ...]:
        # not Field(min_length=1): pydantic would also report "too short" when an item is merely invalid
        if not v:
            raise ValueError(f"must list at least one {table} entry, got none")
        return v

    return AfterValidator(check)
