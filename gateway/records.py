"""Canonical, NGSI-neutral records that flow from adapters to uplinks: Reading and Command.

A Reading is what an adapter observed; the buffer stores it as compact JSON bytes
(`encode_reading` / `decode_reading`) and gives it a gateway-wide sequence number.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from gateway.errors import ReadingError


class Lane(enum.IntEnum):
    """Priority lanes; a lower value is delivered first. A lane belongs to an entity."""

    ALERT = 0
    NORMAL = 1
    BULK = 2


class TimeSource(enum.Enum):
    """Who stamped `observed_at`: the device's own clock or the gateway on arrival."""

    DEVICE = "device"
    GATEWAY = "gateway"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attribute:
    """One measured or descriptive value of an entity.

    `type` is the NGSI type (`Number`, `Text`, `Boolean`, `DateTime`, `geo:json`,
    `StructuredValue`, `Relationship`); empty means "infer from the value".
    `unit` is a UN/CEFACT common code (`MTR`, `CEL`, `P1`).
    """

    value: Any
    type: str = ""
    unit: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where a reading came from: the adapter instance and, if it has several, the device."""

    adapter: str
    device: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One observation of one entity. Events (a scan, a Wi-Fi session) are entities of their own."""

    entity_id: str
    entity_type: str
    attributes: Mapping[str, Attribute]
    observed_at: datetime
    time_source: TimeSource = TimeSource.GATEWAY
    source: Source
    lane: Lane = Lane.NORMAL
    seq: int | None = None  # assigned by the buffer, never by an adapter


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A request from the platform to a device (unlock a locker, set an interval)."""

    command_id: str
    entity_id: str
    name: str
    value: Any = None
    uplink: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    command_id: str
    ok: bool
    info: str = ""


# An adapter calls emit(reading); the awaitable completes once the reading is durably committed.
# Sources that can acknowledge (MQTT QoS1, RADIUS) await it before acknowledging.
Emit = Callable[[Reading], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_epoch_us(t: datetime) -> int:
    if t.tzinfo is None:
        raise ReadingError(f"observed_at: must carry a time zone, got naive {t.isoformat()}", value=t.isoformat())
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).replace(microsecond=us % 1_000_000)


def iso_utc(t: datetime) -> str:
    """`YYYY-MM-DDThh:mm:ss.sssZ`, the DateTime form Orion and the history stores expect."""
    t = t.astimezone(timezone.utc)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond // 1000:03d}Z"


def _check_value(path: str, value: Any, depth: int = 0) -> None:
    if depth > 50:
        raise ReadingError(f"{path}: nesting deeper than 50 levels, Orion refuses it", path=path)
    if isinstance(value, float) and not math.isfinite(value):
        raise ReadingError(f"{path}: must be a finite number, got {value!r}", path=path, value=repr(value))
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ReadingError(f"{path}: object keys must be strings, got {k!r}", path=path, value=repr(k))
            _check_value(f"{path}.{k}", v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_value(f"{path}[{i}]", v, depth + 1)
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise ReadingError(
            f"{path}: must be JSON data (str, number, bool, null, list, object), got {type(value).__name__}",
            path=path,
            value=type(value).__name__,
        )


def check_values(reading: Reading) -> None:
    """Reject values no NGSI broker can hold (NaN, Infinity, objects, absurd nesting)."""
    for name, attr in reading.attributes.items():
        _check_value(f"{reading.entity_id}.{name}", attr.value)
        for mname, mval in attr.metadata.items():
            _check_value(f"{reading.entity_id}.{name}.metadata.{mname}", mval)


def encode_reading(r: Reading) -> bytes:
    """Compact JSON for the buffer; `seq` is not part of it (the buffer's row id is)."""
    attrs: dict[str, list[Any]] = {}
    for name, a in r.attributes.items():
        item: list[Any] = [a.value, a.type]
        if a.unit is not None or a.metadata:
            item.append(a.unit)
        if a.metadata:
            item.append(dict(a.metadata))
        attrs[name] = item
    doc = {
        "i": r.entity_id,
        "t": r.entity_type,
        "a": attrs,
        "o": to_epoch_us(r.observed_at),
        "d": r.time_source is TimeSource.DEVICE,
        "s": r.source.adapter,
        "v": r.source.device,
        "l": int(r.lane),
    }
    try:
        return orjson.dumps(doc)
    except TypeError as exc:
        raise ReadingError(f"{r.entity_id}: value cannot be stored, {exc}", entity_id=r.entity_id) from exc


def decode_reading(data: bytes, seq: int | None = None) -> Reading:
    doc = orjson.loads(data)
    attrs = {}
    for name, item in doc["a"].items():
        n = len(item)
        attrs[name] = Attribute(
            value=item[0],
            type=item[1],
            unit=item[2] if n > 2 else None,
            metadata=item[3] if n > 3 else {},
        )
    return Reading(
        entity_id=doc["i"],
        entity_type=doc["t"],
        attributes=attrs,
        observed_at=from_epoch_us(doc["o"]),
        time_source=TimeSource.DEVICE if doc["d"] else TimeSource.GATEWAY,
        source=Source(adapter=doc["s"], device=doc["v"]),
        lane=Lane(doc["l"]),
        seq=seq,
    )
