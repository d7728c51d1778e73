"""Sans-I/O data quality checks for one measured point: values and `now` in, flags out.

Checks, in order of precedence (a sample failing an earlier one gets only that flag, because its
value means nothing to the later ones):

1. `no_data`      the value is missing (None) or not a finite number
2. `sentinel`     the raw value (before scale/offset; the value itself when no raw is given) is
                  one of `sentinels` (-9999, 9999, 0x7FFF, 0xFFFF, ...)
3. `loop_fault`   4-20 mA loop current outside NAMUR NE43's healthy band (< 3.6 mA or > 21 mA)
4. `out_of_range` the value is below `valid_min` or above `valid_max` (both bounds are valid)
5. `spike`        a jump from the last accepted sample larger than `spike_max_delta` or faster than
                  `spike_max_rate_per_s`, not confirmed by the next sample
6. `stuck`        the value stayed within `stuck_tolerance` for `stuck_samples` samples and/or
                  `stuck_window_s` seconds (both must hold when both are set)

A failing sample is kept and flagged (`on_fail = "flag"`, the default) or dropped (`"drop"`).
`quality_metadata` renders the flags as the NGSI attribute metadata `quality`. See
docs/quality-and-river.md.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ValidationInfo, field_validator

from gateway.configbase import Field, Section
from gateway.date_observed import DATE_OBSERVED
from gateway.errors import ReadingError
from gateway.processing.api import (
    LOOP_METADATA,
    RAW_METADATA,
    VALUE_METADATA,
    ProcessorConfig,
    ProcessorContext,
    with_attributes,
)
from gateway.records import Reading, make_attribute

__all__ = [
    "LOOP_METADATA",
    "NAMUR_HIGH_MA",
    "NAMUR_LOW_MA",
    "QUALITY_METADATA",
    "RAW_METADATA",
    "VALUE_METADATA",
    "LoopCheck",
    "OnFail",
    "PointQuality",
    "QualityConfig",
    "QualityFlag",
    "QualityProcessor",
    "QualityProcessorConfig",
    "QualityResult",
    "quality_metadata",
]

# NAMUR NE43: a 4-20 mA transmitter signals a fault by driving the loop below 3.6 mA or above 21 mA
NAMUR_LOW_MA = 3.6
NAMUR_HIGH_MA = 21.0
# The metadata name the flags travel under (checked by gateway.ngsi.identifiers.check_metadata_name)
QUALITY_METADATA = "quality"

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class QualityFlag(enum.Enum):
    """Stable codes: they are API (metadata values, counters, UI keys) and never renamed."""

    NO_DATA = "no_data"
    SENTINEL = "sentinel"
    LOOP_FAULT = "loop_fault"
    OUT_OF_RANGE = "out_of_range"
    SPIKE = "spike"
    STUCK = "stuck"


class OnFail(enum.Enum):
    FLAG = "flag"  # keep the sample and send it with its flags
    DROP = "drop"  # the adapter does not emit the sample


class LoopCheck(enum.Enum):
    OFF = "off"
    NAMUR_NE43 = "namur-ne43"


class QualityConfig(Section):
    """The `[quality]` sub-table of a point: every check is off until its key is set."""

    valid_min: Finite | None = None
    valid_max: Finite | None = None
    sentinels: tuple[Finite, ...] = ()
    loop_check: LoopCheck = LoopCheck.OFF
    loop_low_ma: Positive = NAMUR_LOW_MA
    loop_high_ma: Positive = NAMUR_HIGH_MA
    spike_max_delta: Positive | None = None
    spike_max_rate_per_s: Positive | None = None
    stuck_samples: Annotated[int, Field(ge=2)] | None = None
    stuck_window_s: Positive | None = None
    stuck_tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    on_fail: OnFail = OnFail.FLAG

    # fields are validated in declaration order, so each check below sees the keys before it
    @field_validator("valid_max")
    @classmethod
    def _max_above_min(cls, v: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("valid_min")
        if v is not None and low is not None and v < low:
            raise ValueError(f"must not be below valid_min ({low:g})")
        return v

    @field_validator("loop_high_ma")
    @classmethod
    def _high_above_low(cls, v: float, info: ValidationInfo) -> float:
        low = info.data.get("loop_low_ma")
        if low is not None and v <= low:
            raise ValueError(f"must be above loop_low_ma ({low:g})")
        return v

    @field_validator("stuck_tolerance")
    @classmethod
    def _tolerance_needs_stuck(cls, v: float, info: ValidationInfo) -> float:
        if v and info.data.get("stuck_samples") is None and info.data.get("stuck_window_s") is None:
            raise ValueError("has no effect without stuck_samples or stuck_window_s; set one of them or remove it")
        return v


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityResult:
    """`keep` False only when a check failed and `on_fail = "drop"`; `flags` in QualityFlag order."""

    keep: bool
    flags: tuple[QualityFlag, ...]

    @property
    def ok(self) -> bool:
        """No check failed: the value may drive thresholds and alerts."""
        return not self.flags


_GOOD = QualityResult(keep=True, flags=())


def quality_metadata(result: QualityResult) -> dict[str, Any]:
    """`{"quality": {"type": "StructuredValue", "value": [codes]}}`, an empty list when good.

    Always present, even when good: Orion keeps metadata an update does not mention, so leaving
    it out would leave an old `spike` on a good value.
    """
    return {QUALITY_METADATA: {"type": "StructuredValue", "value": [f.value for f in result.flags]}}


class PointQuality:
    """The checks of one point, with the history they need (last samples and times)."""

    def __init__(self, config: QualityConfig, *, name: str = "") -> None:
        self.config = config
        self.name = name
        self._sentinels = frozenset(config.sentinels)
        self._ref: tuple[float, datetime] | None = None  # last sample accepted by the spike check
        self._pending: tuple[float, datetime] | None = None  # last sample flagged as a spike
        self._run_low = self._run_high = 0.0
        self._run_start: datetime | None = None
        self._run_count = 0

    def reset(self) -> None:
        """Forget the history (after a device was replaced or recalibrated)."""
        self._ref = self._pending = None
        self._run_start = None
        self._run_count = 0

    def check(
        self,
        value: float | None,
        now: datetime,
        *,
        raw: float | None = None,
        loop_ma: float | None = None,
    ) -> QualityResult:
        """Check one sample taken at `now` (an aware datetime).

        `raw` is the value as read, before scale and offset (sentinels compare against it);
        `loop_ma` the loop current in mA (for `loop_check`; the value itself when not given).
        """
        if now.tzinfo is None:
            where = f"quality {self.name}" if self.name else "quality"
            raise ReadingError(f"{where}: now must carry a time zone, got naive {now.isoformat()}")
        flag = self._invalid(value, raw, loop_ma)
        if flag is not None:
            return self._result((flag,))
        assert value is not None  # _invalid flags None as no_data
        v = float(value)
        flags: list[QualityFlag] = []
        if self._spike(v, now):
            flags.append(QualityFlag.SPIKE)
        if self._stuck(v, now):
            flags.append(QualityFlag.STUCK)
        return self._result(tuple(flags)) if flags else _GOOD

    def _result(self, flags: tuple[QualityFlag, ...]) -> QualityResult:
        return QualityResult(keep=self.config.on_fail is OnFail.FLAG, flags=flags)

    def _invalid(self, value: float | None, raw: float | None, loop_ma: float | None) -> QualityFlag | None:
        """The flag of a sample whose value cannot be used at all; such samples leave no history."""
        c = self.config
        if value is None or not math.isfinite(value):
            return QualityFlag.NO_DATA
        if (value if raw is None else raw) in self._sentinels:
            return QualityFlag.SENTINEL
        if c.loop_check is LoopCheck.NAMUR_NE43:
            current = value if loop_ma is None else loop_ma
            # a NaN current is a broken reading of the loop, i.e. a fault too
            if not c.loop_low_ma <= current <= c.loop_high_ma:
                return QualityFlag.LOOP_FAULT
        if (c.valid_min is not None and value < c.valid_min) or (c.valid_max is not None and value > c.valid_max):
            return QualityFlag.OUT_OF_RANGE
        return None

    def _jump(self, base: tuple[float, datetime], v: float, now: datetime) -> bool:
        c = self.config
        delta = abs(v - base[0])
        if c.spike_max_delta is not None and delta > c.spike_max_delta:
            return True
        if c.spike_max_rate_per_s is not None:
            dt = (now - base[1]).total_seconds()
            # a repeated or backwards timestamp says nothing about a rate
            if dt > 0 and delta / dt > c.spike_max_rate_per_s:
                return True
        return False

    def _spike(self, v: float, now: datetime) -> bool:
        # A jump the next sample confirms is a real step (a gate opened, a sensor re-zeroed): the
        # first sample of the step is flagged, the rest are accepted. A lone outlier is flagged
        # alone: the sample after it is compared with the last accepted one, not with the outlier.
        if self.config.spike_max_delta is None and self.config.spike_max_rate_per_s is None:
            return False
        if self._ref is None or not self._jump(self._ref, v, now):
            self._ref, self._pending = (v, now), None
            return False
        if self._pending is not None and not self._jump(self._pending, v, now):
            self._ref, self._pending = (v, now), None
            return False
        self._pending = (v, now)
        return True

    def _stuck(self, v: float, now: datetime) -> bool:
        c = self.config
        if c.stuck_samples is None and c.stuck_window_s is None:
            return False
        # a run is the latest samples that all fit in a band `stuck_tolerance` wide
        start = self._run_start
        low, high = min(self._run_low, v), max(self._run_high, v)
        if start is not None and high - low <= c.stuck_tolerance:
            self._run_low, self._run_high = low, high
            self._run_count += 1
        else:
            self._run_low = self._run_high = v
            self._run_start = start = now
            self._run_count = 1
        if c.stuck_samples is not None and self._run_count < c.stuck_samples:
            return False
        return c.stuck_window_s is None or (now - start).total_seconds() >= c.stuck_window_s


# --- the `quality` processor ---------------------------------------------------------------------------

# RAW_METADATA, LOOP_METADATA and VALUE_METADATA (gateway.processing.api) are the hints an adapter sends
# with a value; the processor reads and removes them (the stage removes any it did not reach)
STATE_LIMIT = 100_000  # (entity, attribute) histories kept; the oldest is forgotten first


# shared by every good sample: nothing downstream mutates metadata (the buffer encodes it, NGSI renders it)
_GOOD_QUALITY: dict[str, Any] = quality_metadata(_GOOD)[QUALITY_METADATA]


def _quality_value(result: QualityResult) -> dict[str, Any]:
    value: dict[str, Any] = quality_metadata(result)[QUALITY_METADATA]
    return value


_CODES = {f.value: f for f in QualityFlag}


def _earlier_flags(item: Any) -> frozenset[QualityFlag]:
    """The flags an earlier quality processor put on the attribute (a device's own checks run first); none
    for metadata of another origin that happens to be called `quality`, which is replaced as before."""
    codes = item.get("value") if isinstance(item, Mapping) else None
    if not isinstance(codes, list) or not all(isinstance(c, str) and c in _CODES for c in codes):
        return frozenset()
    return frozenset(_CODES[c] for c in codes)


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _hint(metadata: dict[str, Any], name: str) -> float | int | None:
    item = metadata.pop(name, None)
    return _number(item.get("value")) if isinstance(item, dict) else _number(item)


class QualityProcessor:
    """`gateway.processing.quality` checks on one attribute (or every numeric one), per entity.

    The spike and stuck checks compare a sample with the same entity's earlier samples of the same
    attribute, so each (entity id, attribute) has a `PointQuality` of its own. Samples are timed by
    the reading's `observed_at`: the device's clock where it has one, so a late delivery is no spike.
    """

    kind = "quality"  # shown in status beside the name of an adapter's entry

    def __init__(self, config: QualityConfig, *, attribute: str | None, name: str = "") -> None:
        self.config = config
        self.attribute = attribute
        self.name = name
        self._checks: dict[tuple[str, str], PointQuality] = {}
        self.flagged = 0
        self.dropped = 0

    def _check(self, entity_id: str, attribute: str) -> PointQuality:
        key = (entity_id, attribute)
        check = self._checks.get(key)
        if check is None:
            if len(self._checks) >= STATE_LIMIT:
                del self._checks[next(iter(self._checks))]
            check = self._checks[key] = PointQuality(self.config, name=self.name or attribute)
        return check

    def process(self, reading: Reading, now: datetime) -> Sequence[Reading]:
        attrs = dict(reading.attributes)
        if self.attribute is not None:
            names: Iterable[str] = (self.attribute,) if self.attribute in attrs else ()
        else:
            names = [
                n
                for n, a in attrs.items()
                if n != DATE_OBSERVED and a.type in ("", "Number") and _number(a.value) is not None
            ]
        at = reading.observed_at
        for name in names:
            attribute = attrs[name]
            metadata = dict(attribute.metadata)
            value = _number(attribute.value)
            raw = loop_ma = None
            if metadata:  # the hints an adapter may send (most attributes carry no metadata at all)
                raw, loop_ma = _hint(metadata, RAW_METADATA), _hint(metadata, LOOP_METADATA)
                if VALUE_METADATA in metadata:
                    value = _hint(metadata, VALUE_METADATA)
            result = self._check(reading.entity_id, name).check(value, at, raw=raw, loop_ma=loop_ma)
            if result.flags:
                self.flagged += 1
                if not result.keep:
                    self.dropped += 1
                    del attrs[name]
                    continue
            earlier = _earlier_flags(metadata.get(QUALITY_METADATA))
            if earlier:
                # a value an earlier check flagged stays flagged: a later, laxer check must not clear it
                merged = QualityResult(
                    keep=True, flags=tuple(f for f in QualityFlag if f in earlier or f in result.flags)
                )
                metadata[QUALITY_METADATA] = _quality_value(merged)
            else:
                metadata[QUALITY_METADATA] = _GOOD_QUALITY if result is _GOOD else _quality_value(result)
            attrs[name] = make_attribute(attribute.value, attribute.type, attribute.unit, metadata)
        if not any(n != DATE_OBSERVED for n in attrs):
            return []  # nothing measured is left: a bare dateObserved says nothing
        return [with_attributes(reading, attrs)]

    def diagnostics(self) -> dict[str, int]:
        return {"flagged": self.flagged, "dropped": self.dropped}


class QualityProcessorConfig(ProcessorConfig, QualityConfig):
    """`[[processing]] type = "quality"`: the `[quality]` keys, on `match.attribute` or every numeric attribute."""

    type: Literal["quality"]

    def build(self, context: ProcessorContext) -> QualityProcessor:
        return QualityProcessor(self, attribute=self.match.attribute)
