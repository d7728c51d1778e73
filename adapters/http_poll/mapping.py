"""Sans-I/O: a polled document's bytes and `now` in; Readings and typed per-item errors out, plus duplicate filtering."""

from __future__ import annotations

import enum
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from adapters.http_poll.config import (
    ROOT,
    AttributeMapping,
    FieldRef,
    ItemMapping,
    NgsiType,
    PathPart,
    TemplatePart,
    TimeFormat,
    TimestampSection,
    WhenAttributeMissing,
    WhenTimeMissing,
    parse_path,
    parse_template,
)
from gateway.errors import DeviceProtocolError, ReadingError
from gateway.ngsi.identifiers import check_entity_id
from gateway.records import Attribute, Lane, Reading, Source, TimeSource, check_values, iso_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# A system whose clock was never set reports 1970; such a time would roll the platform's entity back
# decades, so it is refused rather than stored.
_EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MAX_FUTURE = timedelta(days=1)
_ISO_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$", re.ASCII)
# Japanese systems write local time without an offset, in several spellings; full-width digits occur too.
_LOCAL_RE = re.compile(
    r"^\s*(\d{4})\s*[/.\-年]\s*(\d{1,2})\s*[/.\-月]\s*(\d{1,2})\s*日?\s*[T\s]?\s*"
    r"(\d{1,2})\s*[:時]\s*(\d{1,2})\s*分?\s*(?::\s*(\d{1,2})|(\d{1,2})\s*秒)?\s*$"
)
_EXCERPT = 60


class MalformedReason(enum.Enum):
    """Why a document or an item was dropped; the adapter counts per reason."""

    NOT_JSON = "not_json"
    WRONG_SHAPE = "wrong_shape"  # the document or the items path is not what the mapping expects
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_ID = "bad_id"  # a rendered entity id breaks Orion's identifier rules
    BAD_VALUE = "bad_value"  # a value no NGSI broker can hold (infinite after scaling, too deep)


class MappingError(DeviceProtocolError):
    """A document or item that cannot become a Reading; `where` is its path in the document."""

    code = "http_document_malformed"

    def __init__(self, message: str, *, reason: MalformedReason, where: str) -> None:
        super().__init__(message, reason=reason.value, where=where)
        self.reason = reason
        self.where = where


@dataclass(frozen=True, slots=True, kw_only=True)
class MapResult:
    """Readings of the items that mapped, and one error per item that did not."""

    readings: list[Reading]
    errors: list[MappingError]


def describe(value: Any, limit: int = _EXCERPT) -> str:
    """A short rendering of a document value for messages (never the whole document)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def path_text(path: Sequence[PathPart]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


_MISSING = object()


def lookup(node: Any, path: Sequence[PathPart]) -> Any:
    for key in path:
        if isinstance(key, int):
            if not isinstance(node, list) or key >= len(node):
                return _MISSING
        elif not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


@dataclass(frozen=True, slots=True, kw_only=True)
class _Attr:
    path: tuple[PathPart, ...]
    name: str
    type: NgsiType
    unit: str | None
    scale: Decimal | None
    skip_if_missing: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class _Time:
    path: tuple[PathPart, ...]
    format: TimeFormat
    pattern: str | None
    zone: tzinfo
    arrival_if_missing: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rule:
    items: tuple[PathPart, ...] | None  # None: the document is one item; (): the document is the list
    items_text: str
    entity_id: tuple[TemplatePart, ...]
    entity_type: str
    attributes: tuple[_Attr, ...]
    timestamp: _Time | None
    zone: tzinfo
    null_values: frozenset[str]
    lane: Lane
    structured: bool


def _compile_attr(a: AttributeMapping) -> _Attr:
    return _Attr(
        path=parse_path(a.path),
        name=a.name,
        type=a.type,
        unit=a.unit,
        scale=Decimal(repr(a.scale)) if a.scale is not None else None,
        skip_if_missing=a.missing is WhenAttributeMissing.SKIP,
    )


def _compile_time(t: TimestampSection) -> _Time:
    return _Time(
        path=parse_path(t.path),
        format=t.format,
        pattern=t.pattern,
        zone=ZoneInfo(t.zone),
        arrival_if_missing=t.missing is WhenTimeMissing.ARRIVAL,
    )


def _compile(m: ItemMapping) -> _Rule:
    items: tuple[PathPart, ...] | None
    if m.items is None:
        items, items_text = None, "document"
    elif m.items == ROOT:
        items, items_text = (), ""
    else:
        items, items_text = parse_path(m.items), m.items
    return _Rule(
        items=items,
        items_text=items_text,
        entity_id=parse_template(m.entity_id),
        entity_type=m.entity_type,
        attributes=tuple(_compile_attr(a) for a in m.attributes),
        timestamp=_compile_time(m.timestamp) if m.timestamp else None,
        zone=ZoneInfo(m.timestamp.zone) if m.timestamp else ZoneInfo("Asia/Tokyo"),
        null_values=frozenset(m.null_values),
        lane=m.lane.lane,
        structured=any(a.type is NgsiType.STRUCTURED_VALUE for a in m.attributes),
    )


def decode_document(body: bytes, charset: str | None) -> Any:
    """JSON from bytes; a UTF-8 BOM and non-UTF-8 charsets (Shift_JIS systems exist) are handled."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    data: bytes | str = body
    if charset is not None and charset.replace("-", "").replace("_", "").lower() not in ("utf8", "ascii", "usascii"):
        try:
            data = body.decode(charset)
        except (UnicodeDecodeError, LookupError) as exc:
            raise MappingError(
                f"document: cannot be decoded as {charset}, got {describe(body[:40])} ({exc.__class__.__name__})",
                reason=MalformedReason.NOT_JSON,
                where="document",
            ) from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        head = data[:40] if isinstance(data, str) else data[:120].decode("utf-8", errors="replace")[:40]
        raise MappingError(
            f"document: is not JSON (invalid at character {exc.pos}), got {describe(head)}",
            reason=MalformedReason.NOT_JSON,
            where="document",
        ) from None


class Mapper:
    """Maps documents by the adapter's mappings; pure, so tests feed it bytes and a clock value."""

    def __init__(self, mappings: Sequence[ItemMapping], *, adapter: str, device: str = "") -> None:
        self.source = Source(adapter=adapter, device=device)
        self._rules = tuple(_compile(m) for m in mappings)

    def map(self, body: bytes, now: datetime, charset: str | None = None) -> MapResult:
        """Document-level problems raise MappingError; item-level ones drop that item only."""
        doc = decode_document(body, charset)
        readings: list[Reading] = []
        errors: list[MappingError] = []
        for rule in self._rules:
            for where, item in self._items(rule, doc):
                try:
                    readings.append(self._reading(rule, where, item, now))
                except MappingError as exc:
                    errors.append(exc)
        return MapResult(readings=readings, errors=errors)

    def _items(self, rule: _Rule, doc: Any) -> Iterable[tuple[str, Any]]:
        if rule.items is None:
            if not isinstance(doc, dict):
                raise MappingError(
                    f"document: must be a JSON object (one item), got {type(doc).__name__} {describe(doc)}",
                    reason=MalformedReason.WRONG_SHAPE,
                    where="document",
                )
            return [("document", doc)]
        node = lookup(doc, rule.items)
        where = rule.items_text or "document"
        if node is _MISSING:
            raise MappingError(
                f"{where}: the list of items is missing, got a document with "
                f"{'keys ' + describe(sorted(doc)) if isinstance(doc, dict) else type(doc).__name__}",
                reason=MalformedReason.WRONG_SHAPE,
                where=where,
            )
        if not isinstance(node, list):
            raise MappingError(
                f"{where}: must be a list of items, got {type(node).__name__} {describe(node)}",
                reason=MalformedReason.WRONG_SHAPE,
                where=where,
            )
        return [(f"{rule.items_text}[{i}]", item) for i, item in enumerate(node)]

    def _reading(self, rule: _Rule, where: str, item: Any, now: datetime) -> Reading:
        if not isinstance(item, dict):
            raise MappingError(
                f"{where}: must be a JSON object, got {type(item).__name__} {describe(item)}",
                reason=MalformedReason.WRONG_SHAPE,
                where=where,
            )
        entity_id = _render(rule.entity_id, where, item)
        attributes: dict[str, Attribute] = {}
        for a in rule.attributes:
            at = _join(where, a.path)
            raw = lookup(item, a.path)
            if raw is _MISSING or raw is None or (isinstance(raw, str) and raw in rule.null_values):
                if a.skip_if_missing:
                    continue
                got = "no such field" if raw is _MISSING else describe(raw)
                raise MappingError(
                    f"{at} (attribute {a.name}): is missing, got {got}",
                    reason=MalformedReason.MISSING_FIELD,
                    where=at,
                )
            attributes[a.name] = Attribute(value=_convert(a, at, raw, rule.zone), type=a.type.value, unit=a.unit)
        if not attributes:
            raise MappingError(
                f"{where}: none of the mapped attributes has a value, got keys {describe(sorted(item))}",
                reason=MalformedReason.MISSING_FIELD,
                where=where,
            )
        observed_at, time_source = _observed_at(rule, where, item, now)
        reading = Reading(
            entity_id=entity_id,
            entity_type=rule.entity_type,
            attributes=attributes,
            observed_at=observed_at,
            time_source=time_source,
            source=self.source,
            lane=rule.lane,
        )
        if rule.structured:  # numbers were checked on conversion; only nested values need the full walk
            try:
                check_values(reading)
            except ReadingError as exc:
                raise MappingError(f"{where}: {exc}", reason=MalformedReason.BAD_VALUE, where=where) from None
        return reading


def _join(where: str, path: Sequence[PathPart]) -> str:
    tail = path_text(path)
    if where == "document":
        return tail
    return f"{where}{tail}" if tail.startswith("[") else f"{where}.{tail}" if where else tail


def _render(parts: tuple[TemplatePart, ...], where: str, item: dict[str, Any]) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = lookup(item, part.path)
        at = _join(where, part.path)
        if value is _MISSING or value is None:
            raise MappingError(
                f"{at} (entity_id {{{part.text}}}): is missing, got {'no such field' if value is _MISSING else 'null'}",
                reason=MalformedReason.MISSING_FIELD,
                where=at,
            )
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            out.append(str(value))
        else:
            raise MappingError(
                f"{at} (entity_id {{{part.text}}}): must be a string or an integer, got {type(value).__name__} "
                f"{describe(value)}",
                reason=MalformedReason.WRONG_TYPE,
                where=at,
            )
    text = "".join(out)
    try:
        check_entity_id(text)
    except ValueError as exc:
        raise MappingError(
            f"{where}: entity_id renders to an invalid identifier: {exc}, got {describe(text)}",
            reason=MalformedReason.BAD_ID,
            where=where,
        ) from None
    return text


def _wrong_type(at: str, a: _Attr, want: str, raw: Any) -> MappingError:
    return MappingError(
        f"{at} (attribute {a.name}): must be {want}, got {type(raw).__name__} {describe(raw)}",
        reason=MalformedReason.WRONG_TYPE,
        where=at,
    )


def _decimal(raw: Any) -> Decimal | None:
    """A finite number from a JSON number or a numeric string ("1.23": many systems quote their values)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(repr(raw)) if math.isfinite(raw) else None
    if isinstance(raw, str) and len(raw) <= 64:
        try:
            d = Decimal(raw.strip())
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


def _convert(a: _Attr, at: str, raw: Any, zone: tzinfo) -> Any:
    if a.type is NgsiType.NUMBER:
        d = _decimal(raw)
        if d is None:
            raise _wrong_type(at, a, "a number", raw)
        if a.scale is None and not isinstance(raw, str):
            return raw
        # Decimal keeps 235 × 0.01 at 2.35 instead of 2.3500000000000001
        scaled = d * a.scale if a.scale is not None else d
        try:
            value = float(scaled)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise MappingError(
                f"{at} (attribute {a.name}): is out of range, got {describe(raw)}",
                reason=MalformedReason.BAD_VALUE,
                where=at,
            )
        if scaled == scaled.to_integral_value() and abs(scaled) < 2**53 and (
            isinstance(raw, int) or (isinstance(raw, str) and "." not in raw and "e" not in raw.lower())
        ):
            return int(scaled)
        return value
    if a.type is NgsiType.TEXT:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise _wrong_type(at, a, "a string", raw)
        return raw if isinstance(raw, str) else str(raw)
    if a.type is NgsiType.BOOLEAN:
        if not isinstance(raw, bool):
            raise _wrong_type(at, a, "true or false", raw)
        return raw
    if a.type is NgsiType.DATETIME:
        t = _parse_iso(raw, zone) if isinstance(raw, str) else None
        if t is None:
            raise MappingError(
                f"{at} (attribute {a.name}): must be an ISO 8601 time, got {describe(raw)}",
                reason=MalformedReason.BAD_TIMESTAMP,
                where=at,
            )
        return iso_utc(t)
    if not isinstance(raw, (dict, list)):
        raise _wrong_type(at, a, "an object or a list", raw)
    return raw


def _utc(t: datetime, zone: tzinfo) -> datetime | None:
    if t.tzinfo is None:
        t = t.replace(tzinfo=zone)
    try:
        return t.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None


def _parse_iso(text: str, zone: tzinfo) -> datetime | None:
    m = _ISO_RE.match(text)
    if m is None:
        return None
    base, fraction, offset = m.groups()
    normalised = base.replace(" ", "T") + (f".{fraction[:6].ljust(6, '0')}" if fraction else "")
    if offset:
        normalised += "+00:00" if offset in ("Z", "z") else offset
    try:
        return _utc(datetime.fromisoformat(normalised), zone)
    except ValueError:
        return None


def _parse_local(text: str, zone: tzinfo) -> datetime | None:
    m = _LOCAL_RE.match(text)
    if m is None:
        return None
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m.group(6) or m.group(7) or 0)
    # Japanese hydrological tables count hours 1-24: "24:00" closes the day and is the next day's 0:00
    extra = timedelta(0)
    if hour == 24 and minute == 0 and second == 0:
        hour, extra = 0, timedelta(days=1)
    try:
        return _utc(datetime(year, month, day, hour, minute, second) + extra, zone)
    except (ValueError, OverflowError):
        return None


def _parse_strptime(text: str, pattern: str, zone: tzinfo) -> datetime | None:
    try:
        return _utc(datetime.strptime(text, pattern), zone)
    except (ValueError, OverflowError):
        return None


def _parse_epoch(raw: Any, millis: bool) -> datetime | None:
    d = _decimal(raw)
    if d is None:
        return None
    try:
        return _EPOCH + timedelta(milliseconds=float(d)) if millis else _EPOCH + timedelta(seconds=float(d))
    except (OverflowError, ValueError):
        return None


_FORMAT_HELP = {
    TimeFormat.ISO8601: "an ISO 8601 time like 2026-07-01T09:10:00+09:00",
    TimeFormat.EPOCH_S: "a number of seconds since 1970",
    TimeFormat.EPOCH_MS: "a number of milliseconds since 1970",
    TimeFormat.LOCAL: "a local time like 2026/07/01 09:10",
}


def _observed_at(rule: _Rule, where: str, item: dict[str, Any], now: datetime) -> tuple[datetime, TimeSource]:
    spec = rule.timestamp
    if spec is None:
        return now, TimeSource.GATEWAY
    at = _join(where, spec.path)
    raw = lookup(item, spec.path)
    if raw is _MISSING or raw is None or (isinstance(raw, str) and raw in rule.null_values):
        if spec.arrival_if_missing:
            return now, TimeSource.GATEWAY
        raise MappingError(
            f"{at} (timestamp): is missing, got {'no such field' if raw is _MISSING else describe(raw)}; "
            'set timestamp.missing = "arrival" to stamp the poll time instead',
            reason=MalformedReason.MISSING_FIELD,
            where=at,
        )
    t: datetime | None = None
    if spec.format in (TimeFormat.EPOCH_S, TimeFormat.EPOCH_MS):
        t = _parse_epoch(raw, spec.format is TimeFormat.EPOCH_MS)
    elif isinstance(raw, str):
        if spec.format is TimeFormat.ISO8601:
            t = _parse_iso(raw, spec.zone)
        elif spec.format is TimeFormat.LOCAL:
            t = _parse_local(raw, spec.zone)
        else:
            assert spec.pattern is not None  # the config requires it for strptime
            t = _parse_strptime(raw, spec.pattern, spec.zone)
    if t is None:
        want = _FORMAT_HELP.get(spec.format) or f"a time matching {spec.pattern!r}"
        raise MappingError(
            f"{at} (timestamp): must be {want}, got {describe(raw)}",
            reason=MalformedReason.BAD_TIMESTAMP,
            where=at,
        )
    if t < _EARLIEST or t > now + _MAX_FUTURE:
        raise MappingError(
            f"{at} (timestamp): must be after 2000-01-01 and at most a day ahead, got {describe(raw)}; "
            "check the timestamp format and zone, or the source's clock",
            reason=MalformedReason.BAD_TIMESTAMP,
            where=at,
        )
    return t, TimeSource.DEVICE


# --- duplicate filtering -----------------------------------------------------------------------------


def _values_key(r: Reading) -> tuple[Any, ...]:
    return tuple(sorted((n, orjson.dumps(a.value, option=orjson.OPT_SORT_KEYS), a.type, a.unit) for n, a in r.attributes.items()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    fresh: list[Reading]
    duplicates: int
    stale: int


@dataclass(slots=True, kw_only=True)
class LastSeen:
    """Per entity, the last committed (observed time, values); decides what a new document adds.

    A device-timed reading is new if its time is later, or the same time with other values (a
    correction); an older one is stale (a cached document must not roll the platform back). A
    reading stamped with the poll time is new only if its values changed.
    """

    capacity: int = 100_000
    _last: OrderedDict[str, tuple[datetime, TimeSource, tuple[Any, ...]]] = field(default_factory=OrderedDict)

    def select(self, readings: Sequence[Reading]) -> Selection:
        # One entity twice at one time in one document: the later item is the document's last word.
        # Sending both would flip the entity between them on every poll.
        last_word: dict[tuple[str, datetime], Reading] = {}
        for r in readings:
            last_word.pop((r.entity_id, r.observed_at), None)
            last_word[(r.entity_id, r.observed_at)] = r
        duplicates = len(readings) - len(last_word)
        stale = 0
        # oldest first, so a document listing several observations of one station sends them all in order
        ordered = sorted(last_word.values(), key=lambda r: r.observed_at)
        pending: dict[str, tuple[datetime, TimeSource, tuple[Any, ...]]] = {}
        fresh: list[Reading] = []
        for r in ordered:
            key = _values_key(r)
            prev = pending.get(r.entity_id) or self._last.get(r.entity_id)
            if prev is not None:
                t, source, values = prev
                if r.time_source is TimeSource.DEVICE and source is TimeSource.DEVICE:
                    if r.observed_at < t:
                        stale += 1
                        continue
                    if r.observed_at == t and key == values:
                        duplicates += 1
                        continue
                elif key == values:
                    duplicates += 1
                    continue
            pending[r.entity_id] = (r.observed_at, r.time_source, key)
            fresh.append(r)
        return Selection(fresh=fresh, duplicates=duplicates, stale=stale)

    def remember(self, r: Reading) -> None:
        self._last[r.entity_id] = (r.observed_at, r.time_source, _values_key(r))
        self._last.move_to_end(r.entity_id)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)

    def __len__(self) -> int:
        return len(self._last)
