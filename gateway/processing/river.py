"""Sans-I/O river-gauge logic: flood-fighting threshold states and crossings, rate of rise, stage.

A water-level point carries its station's datum and its flood-fighting threshold levels
(水防団待機水位 → 氾濫注意水位 → 避難判断水位 → 氾濫危険水位 by default). `RiverLevelTracker`
turns timestamped levels into the current state, the crossings since the last sample (with
hysteresis, so noise around a threshold does not flap) and the rate of rise. `alert_readings`
makes one `Alert` entity per crossing on the alert lane; `level_attributes` the attributes added
to the gauge's own reading. `RiverProcessor` is the stage's processor; `RiverStateStore` keeps each
gauge's last state in the data directory, so that a crossing while the gateway was restarting is
alerted at the first sample after it. See docs/quality-and-river.md.
"""

from __future__ import annotations

import atexit
import enum
import itertools
import logging
import math
import sqlite3
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway.configbase import ConfigProblems, Field, Section
from gateway.errors import GatewayError, ReadingError
from gateway.ngsi.identifiers import BANNED_CHARS, check_attribute_name
from gateway.processing.api import ProcessorConfig, ProcessorContext
from gateway.records import Attribute, Lane, Reading, Source, TimeSource, iso_utc
from gateway.storage.files import immediate, open_store
from gateway.storage.schema import migrate

__all__ = [
    "ALERT_TYPE",
    "DEFAULT_THRESHOLD_NAMES",
    "LEVEL_FACTORS",
    "LEVEL_UNIT",
    "NORMAL",
    "RATE_UNIT",
    "STATE_FILE",
    "AlertCategory",
    "Crossing",
    "Datum",
    "Direction",
    "RiverConfig",
    "RiverLevelTracker",
    "RiverProcessor",
    "RiverProcessorConfig",
    "RiverStateStore",
    "RiverUpdate",
    "Severity",
    "StageConfig",
    "Threshold",
    "alert_id",
    "alert_readings",
    "level_attributes",
    "stage_from_distance",
]

# 水防団待機水位, 氾濫注意水位, 避難判断水位, 氾濫危険水位: the names MLIT and the prefectures publish
DEFAULT_THRESHOLD_NAMES = ("水防団待機水位", "氾濫注意水位", "避難判断水位", "氾濫危険水位")
NORMAL = "normal"  # the state below the first threshold
LEVEL_UNIT = "MTR"  # UN/CEFACT metre
RATE_UNIT = "M60"  # UN/CEFACT metre per hour
ALERT_TYPE = "Alert"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAME_MAX = 64

log = logging.getLogger(__name__)

Finite = Annotated[float, Field(allow_inf_nan=False)]


class Severity(enum.Enum):
    """The Smart Data Model Alert's `severity` values."""

    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


# severity of each state by default: normal, then one step per threshold, critical from the fourth on
_DEFAULT_SEVERITY = (Severity.INFORMATIONAL, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


class AlertCategory(enum.Enum):
    """The Smart Data Model Alert's `category` values."""

    TRAFFIC = "traffic"
    NATURAL_DISASTER = "naturalDisaster"
    WEATHER = "weather"
    ENVIRONMENT = "environment"
    HEALTH = "health"
    SECURITY = "security"
    AGRICULTURE = "agriculture"


class Direction(enum.Enum):
    UP = "up"
    DOWN = "down"


def _check_text_name(value: str) -> str:
    """A name shown in NGSI values: printable, short, and free of what Orion refuses in values."""
    if not value.strip() or len(value) > _NAME_MAX or not value.isprintable():
        raise ValueError(f"must be 1-{_NAME_MAX} printable characters")
    banned = next((ch for ch in value if ch in BANNED_CHARS), None)
    if banned is not None:
        raise ValueError(
            f"must not contain {banned!r} (Orion refuses < > \" ' = ; ( ) in values); use full-width （） instead"
        )
    return value


class Datum(Section):
    """The station's datum: the reference its levels are measured from (零点高)."""

    name: str  # "T.P." (Tokyo Peil), "Y.P." (Yedogawa Peil), "A.P." (Arakawa Peil), ...
    elevation_m: Finite | None = None  # the gauge zero's elevation above that reference

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return _check_text_name(v)


class Threshold(Section):
    """One flood-fighting level; `name` defaults to the standard Japanese name at its position."""

    name: str | None = None
    level: Finite
    severity: Severity | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str | None) -> str | None:
        if v is not None:
            _check_text_name(v)
            if v == NORMAL:
                raise ValueError(f"must not be {NORMAL!r}, the name of the state below every threshold")
        return v


class StageConfig(Section):
    """A gauge measuring the distance down to the water (radar, ultrasonic)."""

    mounting_height_m: Finite  # the sensor's height above the gauge zero
    offset_m: Finite = 0.0  # a correction found when calibrating against a staff gauge


def _error(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)


class RiverConfig(Section):
    """The `[river]` sub-table of a water-level point."""

    datum: Datum | None = None
    thresholds: tuple[Threshold, ...] = ()
    hysteresis_m: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.02
    rate_window_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 600.0
    stage: StageConfig | None = None
    alert_category: AlertCategory = AlertCategory.NATURAL_DISASTER
    alert_sub_category: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z/]{0,63}$")] = "flood"

    @field_validator("thresholds")
    @classmethod
    def _ascending_named(cls, v: tuple[Threshold, ...]) -> tuple[Threshold, ...]:
        # Raising a ValidationError with its own locations makes the message name the exact entry
        # (river.thresholds[2].level) instead of the whole list.
        problems: list[InitErrorDetails] = []
        named: list[Threshold] = []
        seen: dict[str, int] = {}
        for i, t in enumerate(v):
            if t.name is None:
                if i >= len(DEFAULT_THRESHOLD_NAMES):
                    problems.append(
                        _error((i, "name"), f"required beyond the {len(DEFAULT_THRESHOLD_NAMES)} standard levels", None)
                    )
                    named.append(t)
                    continue
                t = t.model_copy(update={"name": DEFAULT_THRESHOLD_NAMES[i]})
            assert t.name is not None
            if t.name in seen:
                problems.append(
                    _error((i, "name"), f"must be unique, thresholds[{seen[t.name]}] has the same name", t.name)
                )
            seen.setdefault(t.name, i)
            if named and t.level <= named[-1].level:
                problems.append(
                    _error(
                        (i, "level"),
                        f"must be above thresholds[{i - 1}].level ({named[-1].level:g}): levels ascend",
                        t.level,
                    )
                )
            named.append(t)
        if problems:
            raise ValidationError.from_exception_data("thresholds", problems)
        return tuple(named)

    @model_validator(mode="after")
    def _hysteresis_below_gaps(self) -> RiverConfig:
        levels = [t.level for t in self.thresholds]
        gaps = [b - a for a, b in itertools.pairwise(levels)]
        if gaps and self.hysteresis_m >= min(gaps):
            i = gaps.index(min(gaps))
            message = (
                f"must be smaller than the smallest gap between thresholds ({min(gaps):g} m between"
                f" thresholds[{i}] and thresholds[{i + 1}])"
            )
            raise ValidationError.from_exception_data("river", [_error(("hysteresis_m",), message, self.hysteresis_m)])
        return self

    def severity_of(self, state_index: int) -> Severity:
        """The severity of being in a state: the threshold's own, else one step per level."""
        if state_index > 0:
            own = self.thresholds[state_index - 1].severity
            if own is not None:
                return own
        return _DEFAULT_SEVERITY[min(state_index, len(_DEFAULT_SEVERITY) - 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Crossing:
    """A threshold crossed by one sample: up at `level >= threshold`, down at `< threshold − hysteresis`."""

    direction: Direction
    threshold_index: int  # 1-based: 1 = 水防団待機水位 with the default names
    threshold_name: str
    threshold_level: float
    level_m: float
    at: datetime
    severity: Severity  # of the state the river is in after this crossing


@dataclass(frozen=True, slots=True, kw_only=True)
class RiverUpdate:
    at: datetime
    level_m: float
    state: str  # the highest threshold name reached, or "normal"
    state_index: int  # 0 = normal, 1.. = thresholds
    crossings: tuple[Crossing, ...]
    rate_of_rise_m_per_h: float | None  # None until the window holds two samples
    datum: Datum | None = None


def _decimal(x: float) -> Decimal:
    """The decimal a float was written as (its shortest repr reads back as it): 6.2, not 6.20000000000000017…"""
    return Decimal(repr(float(x)))


def stage_from_distance(distance_m: float, stage: StageConfig) -> float:
    """The water level from a downward-looking gauge: mounting height − distance + offset."""
    if not math.isfinite(distance_m):
        raise ReadingError(f"river stage: distance must be a finite number, got {distance_m!r}")
    # rounded to micrometres to drop binary noise (5.0 - 3.21 = 1.7899999999999998)
    return round(stage.mounting_height_m - distance_m + stage.offset_m, 6)


class RiverLevelTracker:
    """The threshold state and rate of rise of one gauge, fed with its levels in time order.

    `previous` is the state the gauge was in before (kept across a restart): the first sample's
    crossings are those from it, so a crossing while the gateway was down is reported and crossings of
    one threshold alternate up and down. Without it the first sample sets the state without crossings
    (a gauge never seen before). Samples not newer than the previous one update the state but not the
    rate of rise.
    """

    def __init__(self, config: RiverConfig, *, previous: int | None = None) -> None:
        self.config = config
        self._levels = tuple(t.level for t in config.thresholds)
        # Strictly below threshold − hysteresis however that is computed: as written in decimal (6.20 − 0.02 is
        # 6.180000000000001 in binary, and a level of 6.18 is not below 6.18) and in binary (0.0625 − 0.02 is
        # 0.042499999999999996, a level computed so is not below it either): the lower of the two, once.
        h = config.hysteresis_m
        self._down = tuple(min(float(_decimal(t) - _decimal(h)), t - h) for t in self._levels)
        self._names = tuple(t.name or "" for t in config.thresholds)
        if previous is not None and not 0 <= previous <= len(self._levels):
            raise ValueError(f"river level: previous state must be 0..{len(self._levels)}, got {previous}")
        self._state: int | None = previous
        self._origin: datetime | None = None
        self._samples: deque[tuple[float, float]] = deque()  # (seconds since origin, level)

    @property
    def state_index(self) -> int | None:
        return self._state

    def update(self, level_m: float, now: datetime) -> RiverUpdate:
        if not math.isfinite(level_m):
            raise ReadingError(f"river level: must be a finite number, got {level_m!r}; check its quality first")
        if now.tzinfo is None:
            raise ReadingError(f"river level: now must carry a time zone, got naive {now.isoformat()}")
        levels, down, n = self._levels, self._down, len(self._levels)
        crossings: list[Crossing] = []
        s = self._state
        if s is None:
            s = sum(1 for threshold in levels if level_m >= threshold)
        else:
            while s < n and level_m >= levels[s]:
                s += 1
                crossings.append(self._crossing(Direction.UP, s, s, level_m, now))
            while s > 0 and level_m < down[s - 1]:
                crossings.append(self._crossing(Direction.DOWN, s, s - 1, level_m, now))
                s -= 1
        self._state = s
        return RiverUpdate(
            at=now,
            level_m=level_m,
            state=self._names[s - 1] if s else NORMAL,
            state_index=s,
            crossings=tuple(crossings),
            rate_of_rise_m_per_h=self._rate(level_m, now),
            datum=self.config.datum,
        )

    def _crossing(self, direction: Direction, index: int, after: int, level_m: float, now: datetime) -> Crossing:
        return Crossing(
            direction=direction,
            threshold_index=index,
            threshold_name=self._names[index - 1],
            threshold_level=self._levels[index - 1],
            level_m=level_m,
            at=now,
            severity=self.config.severity_of(after),
        )

    def _rate(self, level_m: float, now: datetime) -> float | None:
        """Least-squares slope over the window: one noisy sample moves it far less than end-to-end."""
        if self._origin is None:
            self._origin = now
        t = (now - self._origin).total_seconds()
        samples = self._samples
        if not samples or t > samples[-1][0]:
            samples.append((t, level_m))
        while samples[0][0] < t - self.config.rate_window_s:
            samples.popleft()
        if len(samples) < 2:
            return None
        count = len(samples)
        mean_t = sum(x for x, _ in samples) / count
        mean_y = sum(y for _, y in samples) / count
        sxx = sum((x - mean_t) ** 2 for x, _ in samples)
        sxy = sum((x - mean_t) * (y - mean_y) for x, y in samples)
        # rounded to µm/h: the binary noise of the sums is not a rate
        return round(sxy / sxx * 3600.0, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def _local_id(entity_id: str, entity_type: str) -> str:
    prefix = f"urn:ngsi-ld:{entity_type}:"
    return entity_id[len(prefix) :] if entity_id.startswith(prefix) and len(entity_id) > len(prefix) else entity_id


def alert_id(crossing: Crossing, *, station_entity_id: str, station_entity_type: str) -> str:
    """`urn:ngsi-ld:Alert:<station local id>-<threshold index>-<up|down>-<epoch s>`: a replay is idempotent."""
    epoch_s = (crossing.at - _EPOCH) // timedelta(seconds=1)
    local = _local_id(station_entity_id, station_entity_type)
    return f"urn:ngsi-ld:{ALERT_TYPE}:{local}-{crossing.threshold_index}-{crossing.direction.value}-{epoch_s}"


def _description(c: Crossing) -> str:
    # full-width parentheses: ASCII ones are refused by Orion in values
    verb = "に達しました" if c.direction is Direction.UP else "を下回りました"
    return f"{c.threshold_name} {c.threshold_level:.2f} m {verb}（水位 {c.level_m:.2f} m）"


def alert_readings(
    update: RiverUpdate,
    *,
    station_entity_id: str,
    station_entity_type: str,
    source: Source,
    config: RiverConfig | None = None,
    time_source: TimeSource = TimeSource.GATEWAY,
) -> list[Reading]:
    """One Smart Data Model `Alert` per crossing, on the alert lane, in crossing order."""
    category = (config.alert_category if config else AlertCategory.NATURAL_DISASTER).value
    sub_category = config.alert_sub_category if config else "flood"
    readings = []
    for c in update.crossings:
        attributes: dict[str, Attribute] = {
            "category": Attribute(value=category, type="Text"),
            "subCategory": Attribute(value=sub_category, type="Text"),
            "severity": Attribute(value=c.severity.value, type="Text"),
            "alertSource": Attribute(value=station_entity_id, type="Relationship"),
            "description": Attribute(value=_description(c), type="Text"),
            "dateIssued": Attribute(value=iso_utc(c.at), type="DateTime"),
            "thresholdName": Attribute(value=c.threshold_name, type="Text"),
            "thresholdLevel": Attribute(value=c.threshold_level, type="Number", unit=LEVEL_UNIT),
            "waterLevel": Attribute(value=c.level_m, type="Number", unit=LEVEL_UNIT),
            "direction": Attribute(value=c.direction.value, type="Text"),
        }
        readings.append(
            Reading(
                entity_id=alert_id(c, station_entity_id=station_entity_id, station_entity_type=station_entity_type),
                entity_type=ALERT_TYPE,
                attributes=attributes,
                observed_at=c.at,
                time_source=time_source,
                source=source,
                lane=Lane.ALERT,
            )
        )
    return readings


def level_attributes(
    update: RiverUpdate, *, level_name: str | None = None, level_metadata: Mapping[str, Any] | None = None
) -> dict[str, Attribute]:
    """Attributes for the gauge's own reading: the level (when `level_name` is given), its state,
    state index, rate of rise (m/h) and datum (when configured)."""
    out: dict[str, Attribute] = {}
    if level_name is not None:
        out[level_name] = Attribute(
            value=update.level_m, type="Number", unit=LEVEL_UNIT, metadata=dict(level_metadata or {})
        )
    out["levelState"] = Attribute(value=update.state, type="Text")
    out["levelStateIndex"] = Attribute(value=update.state_index, type="Number")
    out["rateOfRise"] = Attribute(value=update.rate_of_rise_m_per_h, type="Number", unit=RATE_UNIT)
    if update.datum is not None:
        out["levelDatum"] = Attribute(value=update.datum.name, type="Text")
        if update.datum.elevation_m is not None:
            out["levelDatumElevation"] = Attribute(value=update.datum.elevation_m, type="Number", unit=LEVEL_UNIT)
    return out


# --- the `river` processor -----------------------------------------------------------------------------

# the tracker works in metres; a gauge may publish its level or distance in centimetres or millimetres
LEVEL_FACTORS = {"MTR": 1.0, "CMT": 0.01, "MMT": 0.001}
_DECIMAL_FACTORS = {unit: _decimal(factor) for unit, factor in LEVEL_FACTORS.items()}
STATE_LIMIT = 10_000  # gauges whose state is kept; the oldest is forgotten first


def _flagged(attribute: Attribute) -> bool:
    """The quality stage flagged this value: it must not drive thresholds or alerts."""
    quality = attribute.metadata.get("quality")
    return isinstance(quality, Mapping) and bool(quality.get("value"))


class RiverProcessor:
    """`RiverLevelTracker` per gauge entity on one attribute: state and rate added, crossings as `Alert`s.

    The attribute is the water level, or with `stage` the distance down to the water (the computed
    level is added as `level_attribute`, with the distance's metadata). A value the quality stage
    flagged, or one that is not a number, passes unchanged and moves no state. Samples are timed by
    the reading's `observed_at`, so the rate of rise follows the gauge's clock, not the delivery's.
    """

    kind = "river"  # shown in status beside the name of an adapter's entry

    def __init__(
        self,
        config: RiverConfig,
        *,
        attribute: str,
        level_attribute: str = "waterLevel",
        name: str = "",
        remove_source: bool = False,
    ) -> None:
        self.config = config
        self.attribute = attribute
        self.level_attribute = level_attribute
        self.name = name or attribute
        # an adapter's unpublished distance point travels under an internal name this processor removes
        self.remove_source = remove_source
        self._trackers: dict[str, RiverLevelTracker] = {}
        self._names = tuple(t.name or "" for t in config.thresholds)
        self._store: RiverStateStore | None = None
        self._store_missing = False
        self.alerts = 0
        self.skipped = 0

    def keep_state(self, store: RiverStateStore | None) -> None:
        """Keep each gauge's state in `store` across restarts; None when the store could not be opened
        (the gauges then start silently after a restart, as before, and `state_errors` says so)."""
        self._store = store
        self._store_missing = store is None

    def _tracker(self, entity_id: str) -> RiverLevelTracker:
        tracker = self._trackers.get(entity_id)
        if tracker is None:
            if len(self._trackers) >= STATE_LIMIT:
                del self._trackers[next(iter(self._trackers))]
            previous = None if self._store is None else self._state_index(self._store.get((entity_id, self.attribute)))
            tracker = self._trackers[entity_id] = RiverLevelTracker(self.config, previous=previous)
        return tracker

    def _state_index(self, state: str | None) -> int | None:
        """The index of a kept state in this config; None (start silently) when no threshold has its name now."""
        if state == NORMAL:
            return 0
        return self._names.index(state) + 1 if state in self._names else None

    def process(self, reading: Reading, now: datetime) -> Sequence[Reading]:
        attribute = reading.attributes.get(self.attribute)
        if attribute is None:
            return (reading,)
        value = attribute.value
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
            or _flagged(attribute)
        ):
            self.skipped += 1
            return (self._without_source(reading),)
        unit = attribute.unit or "MTR"
        factor = LEVEL_FACTORS.get(unit)
        if factor is None:
            raise ReadingError(
                f"river {self.name}: {self.attribute} must be in MTR, CMT or MMT, got unit {unit!r}; "
                "convert it first with a `unit` processor",
                value=unit,
            )
        # in decimal, as the thresholds are: -9 mm × 0.001 is -0.009000000000000001 in binary, below -0.009
        metres = float(value) if factor == 1.0 else float(_decimal(value) * _DECIMAL_FACTORS[unit])
        tracker = self._tracker(reading.entity_id)
        before = tracker.state_index
        if self.config.stage is not None:
            update = tracker.update(stage_from_distance(metres, self.config.stage), reading.observed_at)
            added = level_attributes(update, level_name=self.level_attribute, level_metadata=attribute.metadata)
        else:
            update = tracker.update(metres, reading.observed_at)
            added = level_attributes(update)
        if self._store is not None and update.state_index != before:
            self._store.put((reading.entity_id, self.attribute), update.state, update.state_index, update.at)
        alerts = alert_readings(
            update,
            station_entity_id=reading.entity_id,
            station_entity_type=reading.entity_type,
            source=reading.source,
            config=self.config,
            time_source=reading.time_source,
        )
        self.alerts += len(alerts)
        return [self._without_source(replace(reading, attributes={**reading.attributes, **added})), *alerts]

    def refused(self, reading: Reading) -> Reading:
        """The stage's `Refusing`: a reading refused (a distance the stage overflows) still loses the internal source."""
        return self._without_source(reading)

    def _without_source(self, reading: Reading) -> Reading:
        if not self.remove_source:
            return reading
        return replace(reading, attributes={n: a for n, a in reading.attributes.items() if n != self.attribute})

    def diagnostics(self) -> dict[str, int]:
        out = {"alerts": self.alerts, "skipped": self.skipped}
        errors = 1 if self._store_missing else 0 if self._store is None else self._store.errors
        if errors:
            out["state_errors"] = errors
        return out


class RiverProcessorConfig(ProcessorConfig, RiverConfig):
    """`[[processing]] type = "river"`: the `[river]` keys on the level (or distance) `match.attribute`."""

    type: Literal["river"]
    level_attribute: Annotated[str, AfterValidator(check_attribute_name)] = (
        "waterLevel"  # the level computed with `stage`
    )

    @model_validator(mode="after")
    def _needs_attribute(self) -> RiverProcessorConfig:
        if self.match.attribute is None:
            message = (
                "required for river, got none; name the attribute holding the water level (or the distance "
                'with `stage`), e.g. attribute = "waterLevel"'
            )
            raise ConfigProblems([("match.attribute", message)])
        return self

    def build(self, context: ProcessorContext) -> RiverProcessor:
        assert self.match.attribute is not None  # checked by _needs_attribute
        return RiverProcessor(self, attribute=self.match.attribute, level_attribute=self.level_attribute)


# --- the gauges' state across restarts -----------------------------------------------------------------

STATE_FILE = "river_state.db"  # in the data directory, picked up by the backup like every sqlite file there
_STORE = "river state"  # how errors name it
_TABLES = ("gauges",)
# _MIGRATIONS[i] takes the file from version i to i + 1. A state is kept by its name ("normal" or the
# threshold's), which survives a change of the levels; state_index is for whoever reads the file.
_MIGRATIONS = (
    "CREATE TABLE gauges (entity_id TEXT NOT NULL, attribute TEXT NOT NULL, state TEXT NOT NULL,"
    " state_index INTEGER NOT NULL, changed_at TEXT NOT NULL, PRIMARY KEY (entity_id, attribute)) WITHOUT ROWID",
)
_UPSERT = (
    "INSERT INTO gauges (entity_id, attribute, state, state_index, changed_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (entity_id, attribute) DO UPDATE SET state = excluded.state,"
    " state_index = excluded.state_index, changed_at = excluded.changed_at"
)
_RETRY_S = 5.0  # after a failed write (a full disk, a lock held too long), the next try
_CLOSE_WAIT_S = 5.0
_WITHOUT = "flood alerts go on without it: after a restart, the first sample of each gauge sets its state silently"

GaugeKey = tuple[str, str]  # (entity id, the attribute the river reads)


class RiverStateStore:
    """The last threshold state of every gauge: opened and read whole by a thread of its own, which then writes it.

    Theory of operation. The thread opens the file (made, checked, migrated: on a slow SD card, a big file
    or one another process holds, seconds) and reads every state into memory, so the event loop that made
    the store never waits for the disk; `get` waits for that read, once, and answers from memory after it.
    `put` changes memory and queues the row, and the thread writes what is queued in one transaction (a
    gauge changed twice meanwhile is written once), so a reading whose gauge stays in its state costs no
    write at all. A failed write is counted (`errors`), logged once, and tried again with whatever was
    queued since. A file that cannot be opened is logged, counted, and the store then keeps nothing: the
    gauges start silently after a restart, as before the store. There is one store per file in the
    process (`shared`): a reload builds a new stage while the old one's last write may still be queued,
    and the new one must see it. The process's exit writes what is left (an `atexit` hook; `close` does it
    too). A crash may lose the last change: the next start then alerts that crossing again rather than never.
    """

    _open: ClassVar[dict[Path, RiverStateStore]] = {}
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path) -> None:
        """Returns at once: the file is opened and read by the store's thread (`wait_open`)."""
        self.path = path
        self._states: dict[GaugeKey, str] = {}
        self._pending: dict[GaugeKey, tuple[str, int, str]] = {}
        self._cond = threading.Condition()
        self._opened = threading.Event()  # set once the open ended, whichever way
        self._unusable = False  # the file could not be opened: nothing is kept
        self._writing = False
        self._closing = False
        self.written = 0  # rows written since opened
        self.errors = 0  # failed writes since opened, or 1 when the file could not be opened
        self._thread = threading.Thread(target=self._run, name=f"river-state:{path}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @classmethod
    def shared(cls, data_dir: Path | str, *, create: bool = True, wait: bool = True) -> RiverStateStore | None:
        """The store of `data_dir` in this process, opened when `create` and not open yet; with `wait`, once its
        file is open and read, and None when it cannot be (a damaged file, one of a newer edgegw, no permission:
        logged, and the rivers run without it). Without `wait` (the event loop) it may still be opening."""
        path = (Path(data_dir) / STATE_FILE).absolute()
        with cls._open_lock:
            store = cls._open.get(path)
            if store is None:
                if not create:
                    return None
                store = cls._open[path] = cls(path)
        if wait and not store.wait_open():
            return None
        return store

    def wait_open(self, timeout: float | None = None) -> bool:
        """Wait until the file is open and read; False when it could not be, or `timeout` passed first."""
        return self._opened.wait(timeout) and not self._unusable

    def get(self, key: GaugeKey) -> str | None:
        """The gauge's last state ("normal" or a threshold's name), None for a gauge never seen; waits for the
        file to be read, as a gauge judged without its kept state would miss a crossing during the restart."""
        if not self._opened.is_set():
            self._opened.wait()
        return self._states.get(key)

    def put(self, key: GaugeKey, state: str, state_index: int, at: datetime) -> None:
        """Keep the gauge's new state; returns at once, the writer thread writes it."""
        with self._cond:
            if self._states.get(key) == state:
                return
            self._states[key] = state
            if self._unusable:
                return
            self._pending[key] = (state, state_index, iso_utc(at))
            self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait until everything put so far is written; False when `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._writing, timeout)

    def close(self) -> None:
        """Write what is queued, then stop the thread and close the file (at the process's exit by itself)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(_CLOSE_WAIT_S)
        atexit.unregister(self.close)
        with self._open_lock:
            if self._open.get(self.path) is self:
                del self._open[self.path]

    def _connect(self) -> sqlite3.Connection | None:
        """The file opened, migrated and read into memory; None, logged, when it cannot be."""
        path = self.path
        try:
            db = open_store(path, _STORE, tables=_TABLES, pragmas=("synchronous=FULL",))
            try:
                migrate(db, path, _MIGRATIONS, store=_STORE)
                found = db.execute("SELECT entity_id, attribute, state FROM gauges").fetchall()
            except BaseException:
                db.close()
                raise
        except GatewayError as exc:  # StoreUnreadable, SchemaTooNew, MigrationFailed: they name the file
            log.error("%s; %s", exc, _WITHOUT)
        except (sqlite3.Error, OSError) as exc:
            log.error("%s %s: cannot be opened, got %s: %s; %s", _STORE, path, type(exc).__name__, exc, _WITHOUT)
        except Exception:
            log.exception("%s %s: cannot be opened; %s", _STORE, path, _WITHOUT)
        else:
            with self._cond:
                # a state put while the file was read is the newer one
                self._states = {**{(e, a): state for e, a, state in found}, **self._states}
            return db
        with self._cond:
            self._unusable = True
            self.errors = 1
            self._pending.clear()
            self._cond.notify_all()
        with self._open_lock:  # the next `shared` (a reload) tries the file again, as a restart would
            if self._open.get(path) is self:
                del self._open[path]
        return None

    def _run(self) -> None:
        try:
            db = self._connect()
        finally:
            self._opened.set()  # whatever happened: `get` must never wait for ever
        if db is None:
            return
        failing = False
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        return
                    batch, self._pending = self._pending, {}
                    self._writing = True
                try:
                    with immediate(db):
                        db.executemany(_UPSERT, [(e, a, *row) for (e, a), row in batch.items()])
                except sqlite3.Error as exc:
                    with self._cond:
                        self._pending = {**batch, **self._pending}  # a state put meanwhile is the newer one
                        self._writing = False
                        self.errors += 1
                        self._cond.notify_all()
                        if self._closing:
                            log.error(
                                "%s %s: %d gauge states not written, got %s", _STORE, self.path, len(self._pending), exc
                            )
                            return
                        if not failing:
                            log.warning(
                                "%s %s: cannot write, got %s; trying again every %g s", _STORE, self.path, exc, _RETRY_S
                            )
                        failing = True
                        self._cond.wait(_RETRY_S)
                    continue
                with self._cond:
                    self._writing = False
                    self.written += len(batch)
                    self._cond.notify_all()
                if failing:
                    failing = False
                    log.info("%s %s: written again", _STORE, self.path)
        finally:
            db.close()
