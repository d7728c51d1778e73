"""The small attribute mappings every deployment needs without a new adapter: rename, unit, drop.

- `rename`: `match.attribute` becomes `to` (same value, type, unit and metadata, same position); an
  attribute the reading already carries under `to` is replaced, counted (`collisions`) and logged once
  per entity type. A `to` the Orion-rule check refuses is refused by the config check.
- `unit`: `match.attribute`'s value becomes `value * factor + offset` and its unit `to_unit`
  (a UN/CEFACT code); `from_unit` instead of `factor`/`offset` picks a known pair (CMT→MTR, …).
- `drop`: removes `attributes` from the reading (a reading left with nothing measured is dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, field_validator, model_validator

from gateway.configbase import ConfigProblems, Field
from gateway.date_observed import DATE_OBSERVED, has_date_observed
from gateway.errors import ReadingError
from gateway.ngsi.check import CONVERTER_ATTRIBUTES, LD_GEO_NAMES, LD_RESERVED_ATTRIBUTES
from gateway.ngsi.identifiers import check_attribute_name
from gateway.processing.api import ProcessorConfig, ProcessorContext
from gateway.records import Attribute, Reading

__all__ = [
    "KNOWN_CONVERSIONS",
    "DropConfig",
    "DropProcessor",
    "RenameConfig",
    "RenameProcessor",
    "UnitConfig",
    "UnitProcessor",
]

log = logging.getLogger(__name__)

AttributeName = Annotated[str, AfterValidator(check_attribute_name)]
_WARNED_LIMIT = 1_000  # (entity type, attribute) collisions logged; beyond, counted only
Finite = Annotated[float, Field(allow_inf_nan=False)]

# (from, to) UN/CEFACT codes → (factor, offset): value_to = value_from * factor + offset
KNOWN_CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("CMT", "MTR"): (0.01, 0.0),
    ("MMT", "MTR"): (0.001, 0.0),
    ("MMT", "CMT"): (0.1, 0.0),
    ("MTR", "CMT"): (100.0, 0.0),
    ("MTR", "MMT"): (1000.0, 0.0),
    ("KMT", "MTR"): (1000.0, 0.0),
    ("FAH", "CEL"): (5.0 / 9.0, -32.0 * 5.0 / 9.0),
    ("KEL", "CEL"): (1.0, -273.15),
    ("HP", "KPA"): (0.1, 0.0),  # hectopascal → kilopascal
    ("KPA", "HP"): (10.0, 0.0),
    ("LTR", "MTQ"): (0.001, 0.0),
}


def _needs_attribute(match_attribute: str | None, kind: str, example: str) -> None:
    if match_attribute is None:
        message = f'required for {kind}, got none; name the attribute to {example}, e.g. attribute = "level_cm"'
        raise ConfigProblems([("match.attribute", message)])


class RenameProcessor:
    def __init__(self, *, source: str, target: str) -> None:
        self.source, self.target = source, target
        self.renamed = 0
        self.collisions = 0
        self._warned: set[str] = set()  # entity types whose collision was logged

    def process(self, reading: Reading, now: datetime) -> Sequence[Reading]:
        attrs = reading.attributes
        if self.source not in attrs:
            return (reading,)
        self.renamed += 1
        if self.target in attrs:
            self._collided(reading.entity_type)
        # rebuilt in order (the renamed one where the old one was); an attribute already named `to` is
        # replaced: the rename is what the entry asks for (docs/quality-and-river.md, the kinds' table)
        renamed = {(self.target if n == self.source else n): a for n, a in attrs.items() if n != self.target}
        return (replace(reading, attributes=renamed),)

    def _collided(self, entity_type: str) -> None:
        self.collisions += 1
        if entity_type in self._warned or len(self._warned) >= _WARNED_LIMIT:
            return
        self._warned.add(entity_type)
        log.warning(
            "rename %s → %s: a %s reading carries %s already; it is replaced by %s's value (counted as collisions); "
            "rename to another name, or drop one of them first",
            self.source,
            self.target,
            entity_type,
            self.target,
            self.source,
        )

    def diagnostics(self) -> dict[str, int]:
        counters = {"renamed": self.renamed}
        if self.collisions:
            counters["collisions"] = self.collisions
        return counters


# Why the Orion-rule check (gateway.ngsi.check) refuses a reading carrying an attribute of each name
_REFUSED_TARGETS = {
    **dict.fromkeys(
        CONVERTER_ATTRIBUTES,
        "the converters write it from the reading's time, so every reading renamed would be dropped",
    ),
    **dict.fromkeys(LD_RESERVED_ATTRIBUTES, "NGSI-LD reserves it, so every reading renamed would be dropped"),
    **dict.fromkeys(
        LD_GEO_NAMES,
        "NGSI-LD requires a geo:json GeoProperty there, which a rename cannot check, so a reading renamed with any "
        "other value would be dropped",
    ),
}


def _refused_target(to: str, entity_type: str | None) -> str | None:
    """Why `to` cannot be a rename's target, known from the config alone; None when it can."""
    why = _REFUSED_TARGETS.get(to)
    if why is not None:
        return f'must not be "{to}": {why}, got "{to}"; pick another name'
    if to == DATE_OBSERVED and entity_type is not None and has_date_observed(entity_type):
        return (
            f'must not be "{to}" for {entity_type} readings: the adapters add it to every one from its time, so every '
            f'reading renamed would collide, got "{to}"; pick another name'
        )
    return None


class RenameConfig(ProcessorConfig):
    """`[[processing]] type = "rename"`: `match.attribute` → `to`."""

    type: Literal["rename"]
    to: AttributeName

    @model_validator(mode="after")
    def _check(self) -> RenameConfig:
        _needs_attribute(self.match.attribute, "rename", "rename")
        if self.match.attribute == self.to:
            raise ConfigProblems([("to", f'must differ from match.attribute, got "{self.to}"')])
        refused = _refused_target(self.to, self.match.entity_type)
        if refused is not None:
            raise ConfigProblems([("to", refused)])
        return self

    def build(self, context: ProcessorContext) -> RenameProcessor:
        assert self.match.attribute is not None
        return RenameProcessor(source=self.match.attribute, target=self.to)


def _tidy(x: float) -> float:
    # 12 significant digits: 0.1 * 3 is 0.30000000000000004 in binary, and no sensor is that precise
    return float(f"{x:.12g}")


class UnitProcessor:
    def __init__(self, *, attribute: str, factor: float, offset: float, to_unit: str, from_unit: str | None) -> None:
        self.attribute, self.factor, self.offset = attribute, factor, offset
        self.to_unit, self.from_unit = to_unit, from_unit
        self.converted = 0

    def process(self, reading: Reading, now: datetime) -> Sequence[Reading]:
        attribute = reading.attributes.get(self.attribute)
        if attribute is None:
            return (reading,)
        value = attribute.value
        if attribute.unit == self.to_unit or value is None:
            return (reading,)  # already converted (an adapter set the unit) or nothing to convert
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ReadingError(f"unit {self.attribute}: must be a number to convert, got {value!r}", value=value)
        if self.from_unit is not None and attribute.unit not in (None, self.from_unit):
            raise ReadingError(
                f"unit {self.attribute}: must be in {self.from_unit} to convert to {self.to_unit}, "
                f"got unit {attribute.unit!r}",
                value=attribute.unit,
            )
        self.converted += 1
        converted = Attribute(
            value=_tidy(value * self.factor + self.offset),
            type=attribute.type or "Number",
            unit=self.to_unit,
            metadata=attribute.metadata,
        )
        return (replace(reading, attributes={**reading.attributes, self.attribute: converted}),)

    def diagnostics(self) -> dict[str, int]:
        return {"converted": self.converted}


class UnitConfig(ProcessorConfig):
    """`[[processing]] type = "unit"`: `from_unit` (a known pair) or `factor`/`offset`, and `to_unit`."""

    type: Literal["unit"]
    to_unit: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,3}$")]
    from_unit: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,3}$")] | None = None
    factor: Finite | None = None
    offset: Finite | None = None

    @model_validator(mode="after")
    def _check(self) -> UnitConfig:
        _needs_attribute(self.match.attribute, "unit", "convert")
        problems: list[tuple[str, str]] = []
        if self.from_unit is not None:
            if self.factor is not None or self.offset is not None:
                message = (
                    f'must not be set together with factor or offset, got "{self.from_unit}"; use one or the other'
                )
                problems.append(("from_unit", message))
            elif (self.from_unit, self.to_unit) not in KNOWN_CONVERSIONS:
                known = ", ".join(f"{a}→{b}" for a, b in KNOWN_CONVERSIONS)
                message = (
                    f'no known conversion to {self.to_unit}, got "{self.from_unit}"; '
                    f"known: {known}, or give factor and offset"
                )
                problems.append(("from_unit", message))
        elif self.factor is None and self.offset is None:
            message = "required without from_unit, got none; set factor (and offset), or from_unit for a known pair"
            problems.append(("factor", message + " such as CMT→MTR"))
        if problems:
            raise ConfigProblems(problems)
        return self

    def build(self, context: ProcessorContext) -> UnitProcessor:
        assert self.match.attribute is not None
        if self.from_unit is not None:
            factor, offset = KNOWN_CONVERSIONS[(self.from_unit, self.to_unit)]
        else:
            factor = 1.0 if self.factor is None else self.factor
            offset = 0.0 if self.offset is None else self.offset
        return UnitProcessor(
            attribute=self.match.attribute, factor=factor, offset=offset, to_unit=self.to_unit, from_unit=self.from_unit
        )


class DropProcessor:
    def __init__(self, attributes: Sequence[str]) -> None:
        self.attributes = frozenset(attributes)
        self.dropped = 0

    def process(self, reading: Reading, now: datetime) -> Sequence[Reading]:
        attrs = reading.attributes
        if self.attributes.isdisjoint(attrs):
            return (reading,)
        kept = {n: a for n, a in attrs.items() if n not in self.attributes}
        self.dropped += len(attrs) - len(kept)
        if not any(n != DATE_OBSERVED for n in kept):
            return ()  # nothing measured is left
        return (replace(reading, attributes=kept),)

    def diagnostics(self) -> dict[str, int]:
        return {"dropped": self.dropped}


class DropConfig(ProcessorConfig):
    """`[[processing]] type = "drop"`: the attributes removed from matching readings."""

    type: Literal["drop"]
    attributes: tuple[AttributeName, ...]

    @field_validator("attributes")
    @classmethod
    def _some(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError('must name at least one attribute, got none; e.g. attributes = ["rssi"]')
        return v

    def build(self, context: ProcessorContext) -> DropProcessor:
        return DropProcessor(self.attributes)
