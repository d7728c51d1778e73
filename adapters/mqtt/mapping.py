"""Sans-I/O: an MQTT topic, its payload bytes and `now` in; Readings or a MappingError out."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from adapters.mqtt.config import (
    AttributeMapping,
    NgsiType,
    PayloadRef,
    Subscription,
    TemplatePart,
    TimeFormat,
    TimestampSection,
    TopicRef,
    WhenAttributeMissing,
    WhenTimeMissing,
    describe,
    parse_path,
    parse_template,
    template_text,
)
from gateway.errors import DeviceProtocolError, ReadingError
from gateway.ngsi.identifiers import check_entity_id, check_entity_type
from gateway.records import Attribute, Lane, Reading, Source, TimeSource, check_values, iso_utc

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# A device whose clock was never set reports 1970 (Tasmota without NTP); such a time would roll the
# platform's entity back decades, so it is refused rather than stored.
_EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MAX_FUTURE = timedelta(days=1)
# Per-topic plans and already-checked identifiers are cached; bounded because a wildcard subscription
# can see unbounded topics (emptied when full: refilling costs one message's worth of work per topic).
_CACHE_LIMIT = 4096
_ISO_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$", re.ASCII
)


class MalformedReason(enum.Enum):
    """Why a message was dropped; the adapter counts per reason."""

    BAD_TOPIC = "bad_topic"  # topic is not UTF-8 or matches no subscription
    NOT_JSON = "not_json"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_ID = "bad_id"  # a rendered entity id/type breaks Orion's identifier rules
    BAD_VALUE = "bad_value"  # a value no NGSI broker can hold (infinite after scaling, too deep)


class MappingError(DeviceProtocolError):
    """A message that cannot become a Reading; carries the reason the counters use."""

    code = "mqtt_payload_malformed"

    def __init__(self, message: str, *, reason: MalformedReason, topic: str) -> None:
        super().__init__(message, reason=reason.value, topic=topic)
        self.reason = reason
        self.topic = topic


@dataclass(frozen=True, slots=True, kw_only=True)
class _Attr:
    path: tuple[str | int, ...]
    key: str | None  # the path when it is a single top-level key: one dict lookup on the hot path
    path_text: str
    name: str
    type: NgsiType
    type_text: str  # type.value, read once (an enum's .value is a descriptor call)
    unit: str | None
    scale: Decimal | None
    scale_integral: bool  # an integer times an integral scale stays an integer
    skip_if_missing: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class _Time:
    path: tuple[str | int, ...]
    path_text: str
    format: TimeFormat
    zone: tzinfo
    arrival_if_missing: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rule:
    filter: tuple[str, ...]
    entity_id: tuple[TemplatePart, ...]
    entity_type: tuple[TemplatePart, ...]
    attributes: tuple[_Attr, ...]
    timestamp: _Time | None
    zone: tzinfo
    lane: Lane
    structured: bool


_MISSING = object()


def topic_matches(filter_levels: Sequence[str], topic: str) -> bool:
    """MQTT topic matching; wildcards at the first level never match `$SYS`-style topics."""
    levels = topic.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for i, f in enumerate(filter_levels):
        if f == "#":
            return True
        if i >= len(levels):
            return False
        if f != "+" and f != levels[i]:
            return False
    return len(levels) == len(filter_levels)


def _compile_attr(a: AttributeMapping) -> _Attr:
    path = parse_path(a.path)
    return _Attr(
        path=path,
        key=path[0] if len(path) == 1 and isinstance(path[0], str) else None,
        path_text=a.path,
        name=a.name,
        type=a.type,
        type_text=a.type.value,
        unit=a.unit,
        scale=Decimal(repr(a.scale)) if a.scale is not None else None,
        scale_integral=a.scale is not None and float(a.scale).is_integer(),
        skip_if_missing=a.missing is WhenAttributeMissing.SKIP,
    )


def _compile_time(t: TimestampSection) -> _Time:
    return _Time(
        path=parse_path(t.path),
        path_text=t.path,
        format=t.format,
        zone=ZoneInfo(t.zone),
        arrival_if_missing=t.missing is WhenTimeMissing.ARRIVAL,
    )


class Mapper:
    """Maps messages by the adapter's subscriptions; pure, so tests feed it bytes and a clock value."""

    def __init__(self, subscriptions: Sequence[Subscription], *, adapter: str) -> None:
        self.adapter = adapter
        self._rules = tuple(
            _Rule(
                filter=tuple(s.topic.split("/")),
                entity_id=parse_template(s.entity_id),
                entity_type=parse_template(s.entity_type),
                attributes=tuple(_compile_attr(a) for a in s.attributes),
                timestamp=_compile_time(s.timestamp) if s.timestamp else None,
                zone=ZoneInfo(s.timestamp.zone) if s.timestamp else ZoneInfo("Asia/Tokyo"),
                lane=s.lane.lane,
                structured=any(a.type is NgsiType.STRUCTURED_VALUE for a in s.attributes),
            )
            for s in subscriptions
        )
        # topic → (matching rules, topic levels, Source): devices publish on a few topics again and again
        self._plans: dict[str, tuple[tuple[_Rule, ...], list[str], Source]] = {}
        self._checked: dict[str, set[str]] = {"entity_id": set(), "entity_type": set()}

    def _plan(self, topic: str) -> tuple[tuple[_Rule, ...], list[str], Source]:
        plan = self._plans.get(topic)
        if plan is None:
            rules = tuple(r for r in self._rules if topic_matches(r.filter, topic))
            plan = (rules, topic.split("/"), Source(adapter=self.adapter, device=topic))
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            self._plans[topic] = plan
        return plan

    def map(self, topic: str, payload: bytes, now: datetime) -> list[Reading]:
        """One Reading per matching subscription; any problem makes the whole message a MappingError."""
        rules, levels, source = self._plan(topic)
        if not rules:
            raise MappingError(
                f"{topic}: matches no subscription of this adapter, got topic {describe(topic)}",
                reason=MalformedReason.BAD_TOPIC,
                topic=topic,
            )
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise MappingError(
                f"{topic}: payload is not JSON (invalid at character {exc.pos}), got {describe(bytes(payload[:40]))}",
                reason=MalformedReason.NOT_JSON,
                topic=topic,
            ) from None
        if not isinstance(doc, dict):
            raise MappingError(
                f"{topic}: payload must be a JSON object, got {type(doc).__name__} {describe(doc)}",
                reason=MalformedReason.WRONG_TYPE,
                topic=topic,
            )
        return [self._reading(rule, topic, levels, source, doc, now) for rule in rules]

    def _reading(
        self, rule: _Rule, topic: str, levels: list[str], source: Source, doc: dict[str, Any], now: datetime
    ) -> Reading:
        entity_id = _render(rule.entity_id, topic, levels, doc, "entity_id", self._checked["entity_id"])
        entity_type = _render(rule.entity_type, topic, levels, doc, "entity_type", self._checked["entity_type"])
        attributes: dict[str, Attribute] = {}
        for a in rule.attributes:
            raw = doc.get(a.key, _MISSING) if a.key is not None else _lookup(doc, a.path)
            if raw is _MISSING or raw is None:
                if a.skip_if_missing:
                    continue
                raise MappingError(
                    f"{topic}: payload.{a.path_text} (attribute {a.name}) is missing, got "
                    f"{'null' if raw is None else 'no such field'}",
                    reason=MalformedReason.MISSING_FIELD,
                    topic=topic,
                )
            attributes[a.name] = Attribute(value=_convert(a, raw, topic, rule.zone), type=a.type_text, unit=a.unit)
        if not attributes:
            raise MappingError(
                f"{topic}: none of the mapped attributes is in the payload, got keys {describe(sorted(doc))}",
                reason=MalformedReason.MISSING_FIELD,
                topic=topic,
            )
        observed_at, time_source = _observed_at(rule.timestamp, topic, doc, now)
        reading = Reading(
            entity_id=entity_id,
            entity_type=entity_type,
            attributes=attributes,
            observed_at=observed_at,
            time_source=time_source,
            source=source,
            lane=rule.lane,
        )
        if rule.structured:  # numbers were checked on conversion; only nested values need the full walk
            try:
                check_values(reading)
            except ReadingError as exc:
                raise MappingError(f"{topic}: {exc}", reason=MalformedReason.BAD_VALUE, topic=topic) from None
        return reading


def _lookup(doc: Any, path: tuple[str | int, ...]) -> Any:
    # `type(...) is` rather than isinstance: orjson builds exactly dict and list, and this runs per field
    node = doc
    for key in path:
        if type(key) is str:
            if type(node) is not dict:
                return _MISSING
            node = node.get(key, _MISSING)
            if node is _MISSING:
                return _MISSING
        elif type(node) is not list or key >= len(node):  # type: ignore[operator]
            return _MISSING
        else:
            node = node[key]  # type: ignore[index]
    return node


def _render(
    parts: tuple[TemplatePart, ...], topic: str, levels: list[str], doc: Any, key: str, checked: set[str]
) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, TopicRef):
            if not -len(levels) <= part.index < len(levels):
                raise MappingError(
                    f"{topic}: {key} needs {{topic[{part.index}]}}, got a topic of {len(levels)} levels",
                    reason=MalformedReason.MISSING_FIELD,
                    topic=topic,
                )
            out.append(levels[part.index])
        else:
            out.append(_render_payload(part, topic, doc, key))
    text = "".join(out)
    if text in checked:  # the identifier rules are pure: a text that passed once passes again
        return text
    try:
        (check_entity_id if key == "entity_id" else check_entity_type)(text)
    except ValueError as exc:
        raise MappingError(
            f"{topic}: {key} {template_text(parts)} renders to an invalid identifier: {exc}, got {describe(text)}",
            reason=MalformedReason.BAD_ID,
            topic=topic,
        ) from None
    if len(checked) >= _CACHE_LIMIT:
        checked.clear()
    checked.add(text)
    return text


def _render_payload(part: PayloadRef, topic: str, doc: Any, key: str) -> str:
    value = _lookup(doc, part.path)
    if value is _MISSING or value is None:
        raise MappingError(
            f"{topic}: {key} needs {{{part.text}}}, got no such field",
            reason=MalformedReason.MISSING_FIELD,
            topic=topic,
        )
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise MappingError(
        f"{topic}: {key} needs {{{part.text}}} to be a string or integer, got {type(value).__name__} "
        f"{describe(value)}",
        reason=MalformedReason.WRONG_TYPE,
        topic=topic,
    )


def _wrong_type(topic: str, a: _Attr, want: str, raw: Any) -> MappingError:
    return MappingError(
        f"{topic}: payload.{a.path_text} (attribute {a.name}) must be {want}, got {type(raw).__name__} "
        f"{describe(raw)}",
        reason=MalformedReason.WRONG_TYPE,
        topic=topic,
    )


def _convert(a: _Attr, raw: Any, topic: str, zone: tzinfo) -> Any:
    if a.type is NgsiType.NUMBER:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise _wrong_type(topic, a, "a number", raw)
        if a.scale is None:
            return raw
        # Decimal keeps 235 × 0.1 at 23.5 instead of 23.500000000000004
        value = float(Decimal(repr(raw)) * a.scale)
        if not math.isfinite(value):
            raise MappingError(
                f"{topic}: payload.{a.path_text} (attribute {a.name}) is out of range after scaling, got {describe(raw)}",
                reason=MalformedReason.BAD_VALUE,
                topic=topic,
            )
        return int(value) if a.scale_integral and isinstance(raw, int) else value
    if a.type is NgsiType.TEXT:
        if not isinstance(raw, str):
            raise _wrong_type(topic, a, "a string", raw)
        return raw
    if a.type is NgsiType.BOOLEAN:
        if not isinstance(raw, bool):
            raise _wrong_type(topic, a, "true or false", raw)
        return raw
    if a.type is NgsiType.DATETIME:
        if not isinstance(raw, str):
            raise _wrong_type(topic, a, "an ISO 8601 time", raw)
        t = _parse_iso(raw, zone)
        if t is None:
            raise MappingError(
                f"{topic}: payload.{a.path_text} (attribute {a.name}) must be an ISO 8601 time, got {describe(raw)}",
                reason=MalformedReason.BAD_TIMESTAMP,
                topic=topic,
            )
        return iso_utc(t)
    if not isinstance(raw, (dict, list)):
        raise _wrong_type(topic, a, "an object or a list", raw)
    return raw


def _parse_iso(text: str, zone: tzinfo) -> datetime | None:
    m = _ISO_RE.match(text)
    if m is None:
        return None
    base, fraction, offset = m.groups()
    # ChirpStack writes nanoseconds; datetime keeps microseconds
    normalised = base.replace(" ", "T") + (f".{fraction[:6].ljust(6, '0')}" if fraction else "")
    if offset:
        normalised += "+00:00" if offset in ("Z", "z") else offset
    try:
        t = datetime.fromisoformat(normalised)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=zone)
    try:
        return t.astimezone(timezone.utc)
    except OverflowError:
        return None


def _observed_at(spec: _Time | None, topic: str, doc: Any, now: datetime) -> tuple[datetime, TimeSource]:
    if spec is None:
        return now, TimeSource.GATEWAY
    raw = _lookup(doc, spec.path)
    if raw is _MISSING or raw is None:
        if spec.arrival_if_missing:
            return now, TimeSource.GATEWAY
        raise MappingError(
            f"{topic}: payload.{spec.path_text} (timestamp) is missing, got no such field; "
            'set timestamp.missing = "arrival" to stamp the arrival time instead',
            reason=MalformedReason.MISSING_FIELD,
            topic=topic,
        )
    t: datetime | None
    if spec.format is TimeFormat.ISO8601:
        if not isinstance(raw, str):
            raise MappingError(
                f"{topic}: payload.{spec.path_text} (timestamp) must be an ISO 8601 string, got "
                f"{type(raw).__name__} {describe(raw)}",
                reason=MalformedReason.WRONG_TYPE,
                topic=topic,
            )
        t = _parse_iso(raw, spec.zone)
    else:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise MappingError(
                f"{topic}: payload.{spec.path_text} (timestamp) must be a number of "
                f"{'seconds' if spec.format is TimeFormat.EPOCH_S else 'milliseconds'} since 1970, got "
                f"{type(raw).__name__} {describe(raw)}",
                reason=MalformedReason.WRONG_TYPE,
                topic=topic,
            )
        try:
            delta = timedelta(seconds=raw) if spec.format is TimeFormat.EPOCH_S else timedelta(milliseconds=raw)
            t = _EPOCH + delta
        except (OverflowError, ValueError):
            t = None
    if t is None:
        raise MappingError(
            f"{topic}: payload.{spec.path_text} (timestamp) must be a valid {spec.format.value} time, got "
            f"{describe(raw)}",
            reason=MalformedReason.BAD_TIMESTAMP,
            topic=topic,
        )
    if t < _EARLIEST or t > now + _MAX_FUTURE:
        raise MappingError(
            f"{topic}: payload.{spec.path_text} (timestamp) must be after 2000-01-01 and at most a day ahead, "
            f"got {describe(raw)}; the device clock is probably not set",
            reason=MalformedReason.BAD_TIMESTAMP,
            topic=topic,
        )
    return t, TimeSource.DEVICE
