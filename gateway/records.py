"""Canonical, NGSI-neutral records that flow from adapters to uplinks: Reading and Command.

A Reading is what an adapter observed; the buffer stores it as compact JSON bytes
(`encode_row` / `encode_reading` / `decode_reading`) and gives it a gateway-wide sequence number.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

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
EmitMany = Callable[[Sequence[Reading]], Awaitable[None]]
# The gateway's emit also has `flush()`: "commit what I emitted now, I send nothing more until it is"
# (a source whose acknowledgement window is full); other emits may lack it.
EmitFlush = Callable[[], None]


def emit_many(emit: Emit, readings: Sequence[Reading]) -> Awaitable[None]:
    """Hand a burst of readings over at once; the awaitable completes once all are durably committed.

    The gateway's emit (see gateway.supervisor) takes a burst in one call, ~2 µs a reading less
    than one call each at full speed; any other emit (a test's collector) gets one call per reading.
    """
    many: EmitMany | None = getattr(emit, "many", None)
    if many is not None:
        return many(readings)
    # a future, not a coroutine: a caller that never awaits it gets no "never awaited" warning
    return cast(Awaitable[None], asyncio.gather(*(emit(r) for r in readings)))


def utc_now() -> datetime:
    return datetime.now(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC = UTC

# One-entry caches of the last conversion. Readings of one adapter burst (and of one stored chunk)
# share their observation time, so at 50,000 readings/s most conversions repeat the previous one.
# Each cache is one tuple replaced by a single assignment, so the loop thread and the buffer's
# writer thread may share it without a lock: a reader sees an old or a new pair, never half of one.
# The epoch cache holds its datetime, so an `is` match can never be a new object at a reused address.
_last_epoch: tuple[datetime | None, int] = (None, 0)
_last_from_us: tuple[int, datetime] = (0, _EPOCH)
_last_iso: tuple[datetime | None, str] = (None, "")


def to_epoch_us(t: datetime) -> int:
    global _last_epoch
    last = _last_epoch
    if t is last[0]:
        return last[1]
    if t.tzinfo is None:
        raise ReadingError(f"observed_at: must carry a time zone, got naive {t.isoformat()}", value=t.isoformat())
    delta = t - _EPOCH
    us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    _last_epoch = (t, us)
    return us


def from_epoch_us(us: int) -> datetime:
    global _last_from_us
    last = _last_from_us
    if us == last[0]:
        return last[1]  # datetimes are immutable: sharing one between readings is safe
    # epoch + timedelta is exact (integer microseconds) and 4x cheaper than fromtimestamp().replace()
    t = _EPOCH + timedelta(microseconds=us)
    _last_from_us = (us, t)
    return t


def iso_utc(t: datetime) -> str:
    """`YYYY-MM-DDThh:mm:ss.sssZ`, the DateTime form Orion and the history stores expect."""
    global _last_iso
    last = _last_iso
    if t is last[0]:
        return last[1]
    if t.tzinfo is _UTC:
        # isoformat() is C: `YYYY-MM-DDThh:mm:ss[.ffffff]+00:00`, cut to milliseconds (truncated, not rounded)
        iso = t.isoformat()
        text = iso[:23] + "Z" if t.microsecond else iso[:19] + ".000Z"
    else:
        u = t.astimezone(_UTC)
        text = f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond // 1000:03d}Z"
    _last_iso = (t, text)
    return text


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


# exact types that need no walk: the check of a plain scalar is at most isfinite()
_PLAIN = frozenset({str, int, bool, type(None)})
_isfinite = math.isfinite


def check_values(reading: Reading) -> None:
    """Reject values no NGSI broker can hold (NaN, Infinity, objects, absurd nesting)."""
    for name, attr in reading.attributes.items():
        value = attr.value
        kind = type(value)
        # fast path for the common sensor value; anything else takes the full walk (and its error text)
        if not (kind in _PLAIN or (kind is float and _isfinite(value))):
            _check_value(f"{reading.entity_id}.{name}", value)
        if attr.metadata:
            for mname, mval in attr.metadata.items():
                _check_value(f"{reading.entity_id}.{name}.metadata.{mname}", mval)


# Attribute values stored bare (see encode_reading): the value's exact type -> the NGSI type it implies.
_BARE = {float: "Number", int: "Number", str: "Text", bool: "Boolean"}


def encode_reading(r: Reading) -> bytes:
    """Compact JSON of the whole reading; `seq` is not part of it (the buffer's row id is).

    `{"i": entity id, "t": type, "a": {name: [value, type, unit, metadata]}, "o": observed (epoch µs),
    "s": adapter, "d": 1 if the device's clock, "v": device, "l": lane}`, what every reading would
    repeat left out:
    - the most common attribute, a number of type Number, a text of type Text or a bool of type
      Boolean without unit or metadata, is its bare value (`"level":0.5`, not `"level":[0.5,"Number"]`);
    - any other attribute's list stops after its last non-default item (type "", unit None, no metadata);
    - "d" (false), "v" ("") and "l" (normal) are left out at their defaults.
    decode_reading reads both this form and the longer one of files written before, which spelled
    every item (`"d":false`, `[1.5,"Number"]`). Dead letters keep this form; an outbox row, whose
    columns hold the entity id and the observed time, takes `encode_row`'s.
    """
    return _encode(r, True)


def encode_row(r: Reading) -> bytes:
    """`encode_reading` without "i" and "o", for a buffer row that keeps them in its own columns.

    Each row is written to the -wal and again at a checkpoint, and a 1 KiB page holds whole rows
    only: 3 rows of ~260 bytes but 4 of ~210 (the race workload's rows, ~50 bytes of entity id and
    time in each). `decode_reading(body, seq, entity_id, observed_us)` takes them from the columns.
    """
    return _encode(r, False)


def _encode(r: Reading, whole: bool) -> bytes:
    attrs: dict[str, Any] = {}
    for name, a in r.attributes.items():
        value, kind = a.value, a.type
        if a.metadata:
            attrs[name] = [value, kind, a.unit, dict(a.metadata)]
        elif a.unit is not None:
            attrs[name] = [value, kind, a.unit]
        elif _BARE.get(type(value)) == kind:  # bool is not int here: type() is exact
            attrs[name] = value
        elif kind:
            attrs[name] = [value, kind]
        else:
            attrs[name] = [value]
    if whole:
        doc: dict[str, Any] = {
            "i": r.entity_id,
            "t": r.entity_type,
            "a": attrs,
            "o": to_epoch_us(r.observed_at),
            "s": r.source.adapter,
        }
    else:
        to_epoch_us(r.observed_at)  # the same check of the time (a naive one is refused) as the whole form's
        doc = {"t": r.entity_type, "a": attrs, "s": r.source.adapter}
    if r.time_source is TimeSource.DEVICE:
        doc["d"] = 1
    if r.source.device:
        doc["v"] = r.source.device
    if r.lane is not Lane.NORMAL:
        doc["l"] = int(r.lane)
    try:
        # A copy of exactly its length: orjson returns its 4 KiB working buffer as the bytes object,
        # and a commit group or a batch holds thousands of these (4 MiB per 1,000 rows of ~200 bytes).
        return memoryview(orjson.dumps(doc)).tobytes()
    except TypeError as exc:
        raise ReadingError(f"{r.entity_id}: value cannot be stored, {exc}", entity_id=r.entity_id) from exc


# --- building records without the dataclass __init__ ----------------------------------------------
# A frozen dataclass's __init__ parses keywords, calls default factories and sets each field through
# object.__setattr__ by name: 1.3 µs for a Reading, 1.4 µs for an Attribute (measured). The hot paths
# (the simulated source, decoding a stored row, stamping a seq) build millions of them, so they set
# the slots through their descriptors directly (0.6 / 0.5 µs). The result is the same object the
# __init__ builds: these classes have no __post_init__ and no validation to skip.
_new = object.__new__
_set_value, _set_type, _set_unit, _set_metadata = (
    Attribute.__dict__[f].__set__ for f in ("value", "type", "unit", "metadata")
)
(
    _set_entity_id,
    _set_entity_type,
    _set_attributes,
    _set_observed_at,
    _set_time_source,
    _set_source,
    _set_lane,
    _set_seq,
) = (Reading.__dict__[f].__set__ for f in Reading.__slots__)
assert Reading.__slots__ == (
    "entity_id",
    "entity_type",
    "attributes",
    "observed_at",
    "time_source",
    "source",
    "lane",
    "seq",
)


def make_attribute(
    value: Any, type: str = "", unit: str | None = None, metadata: Mapping[str, Any] | None = None
) -> Attribute:
    """`Attribute(value=…, type=…, unit=…, metadata=…)`, built faster (metadata None means a new empty dict)."""
    a = _new(Attribute)
    _set_value(a, value)
    _set_type(a, type)
    _set_unit(a, unit)
    _set_metadata(a, {} if metadata is None else metadata)
    return a


def make_reading(
    entity_id: str,
    entity_type: str,
    attributes: Mapping[str, Attribute],
    observed_at: datetime,
    time_source: TimeSource,
    source: Source,
    lane: Lane,
    seq: int | None = None,
) -> Reading:
    """`Reading(...)` with every field given, built faster; the hot paths' constructor."""
    r = _new(Reading)
    _set_entity_id(r, entity_id)
    _set_entity_type(r, entity_type)
    _set_attributes(r, attributes)
    _set_observed_at(r, observed_at)
    _set_time_source(r, time_source)
    _set_source(r, source)
    _set_lane(r, lane)
    _set_seq(r, seq)
    return r


def with_seq(r: Reading, seq: int, attributes: Mapping[str, Attribute] | None = None) -> Reading:
    """A copy of `r` carrying the buffer's `seq` (and, if given, its own attributes mapping)."""
    return make_reading(
        r.entity_id,
        r.entity_type,
        r.attributes if attributes is None else attributes,
        r.observed_at,
        r.time_source,
        r.source,
        r.lane,
        seq,
    )


_LANES = {int(lane): lane for lane in Lane}  # stored lane number -> Lane (a KeyError on a bad number)
_SOURCES: dict[tuple[str, str], Source] = {}  # a gateway has a handful of (adapter, device) pairs
_SOURCES_MAX = 4096
_loads = orjson.loads
_DEVICE, _GATEWAY = TimeSource.DEVICE, TimeSource.GATEWAY


def decode_reading(
    data: bytes, seq: int | None = None, entity_id: str | None = None, observed_us: int | None = None
) -> Reading:
    """The Reading `encode_reading` or `encode_row` stored (any form, see there), with the buffer's `seq`.

    A body without "i" or "o" (encode_row's) takes them from `entity_id` and `observed_us`, its row's
    columns; KeyError when it lacks one and the column is not given."""
    doc = _loads(data)
    eid = doc["i"] if entity_id is None else doc.get("i", entity_id)
    observed = doc["o"] if observed_us is None else doc.get("o", observed_us)
    attrs = {}
    for name, item in doc["a"].items():
        a = _new(Attribute)
        if type(item) is list:
            n = len(item)
            _set_value(a, item[0])
            _set_type(a, item[1] if n > 1 else "")
            _set_unit(a, item[2] if n > 2 else None)
            _set_metadata(a, item[3] if n > 3 else {})
        else:  # a bare value (see encode_reading)
            _set_value(a, item)
            _set_type(a, _BARE[type(item)])
            _set_unit(a, None)
            _set_metadata(a, {})
        attrs[name] = a
    key = (doc["s"], doc.get("v", ""))
    source = _SOURCES.get(key)
    if source is None:
        if len(_SOURCES) >= _SOURCES_MAX:
            _SOURCES.clear()
        # Source is frozen, so one instance per pair can be shared by every decoded reading
        source = _SOURCES[key] = Source(adapter=key[0], device=key[1])
    return make_reading(
        eid,
        doc["t"],
        attrs,
        from_epoch_us(observed),
        _DEVICE if doc.get("d") else _GATEWAY,
        source,
        _LANES[doc.get("l", 1)],
        seq,
    )
