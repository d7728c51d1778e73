"""Sans-I/O: an MQTT topic, its payload bytes and `now` in; Readings or a MappingError out (a time too far ahead
of `now` is kept only when the adapter's `keeps_ahead` says so: adapters.jsonmap.ahead)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from adapters.jsonmap.ahead import KeepsAhead
from adapters.jsonmap.decode import InexactNumber, exact_loads, reread
from adapters.jsonmap.errors import FieldError, describe, type_name
from adapters.jsonmap.fields import FieldRules, compile_fields, read_reading
from adapters.jsonmap.templates import FieldRef, checked_id, id_field
from adapters.jsonmap.timestamps import TimeAhead
from adapters.mqtt.config import (
    Subscription,
    TemplatePart,
    TopicRef,
    parse_template,
    template_text,
)
from gateway.date_observed import has_date_observed
from gateway.errors import DeviceProtocolError
from gateway.ngsi.identifiers import check_entity_id, check_entity_type
from gateway.records import Reading, Source

# Per-topic plans and already-checked identifiers are cached; bounded because a wildcard subscription
# can see unbounded topics (emptied when full: refilling costs one message's worth of work per topic).
_CACHE_LIMIT = 4096


class MalformedReason(enum.Enum):
    """Why a message was dropped; the adapter counts per reason.

    The reasons of a field (adapters.jsonmap.errors.Problem) have the same values, so a FieldError's
    problem converts as it is; BAD_TOPIC and TOO_LARGE are this adapter's own.
    """

    BAD_TOPIC = "bad_topic"  # topic is not UTF-8 or matches no subscription
    TOO_LARGE = "too_large"  # over max_message_bytes: skipped unread (MQTT 3.1.1; a v5 broker drops it itself)
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

    @classmethod
    def of_field(cls, exc: FieldError, topic: str) -> MappingError:
        """`<topic>: payload.<path> (<attribute or timestamp>) <what>`: the field's problem seen from the topic."""
        return cls(
            f"{topic}: payload.{exc.path_text} ({exc.subject}) {exc.what}" if exc.path_text else f"{topic}: {exc.what}",
            reason=MalformedReason(exc.problem.value),
            topic=topic,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rule:
    filter: tuple[str, ...]
    entity_id: tuple[TemplatePart, ...]
    entity_type: tuple[TemplatePart, ...]
    dated: bool | None  # the entity type carries dateObserved; None: decided per message (a templated type)
    fields: FieldRules


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """What a topic's messages share: the rules it matches, its levels, its Source, and per rule the ids
    when they come from the topic alone (None: rendered per message)."""

    rules: tuple[_Rule, ...]
    levels: list[str]
    source: Source
    ids: tuple[tuple[str, str] | None, ...]


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


class Mapper:
    """Maps messages by the adapter's subscriptions; pure but for `keeps_ahead`, so tests feed it bytes and a clock
    value."""

    def __init__(
        self, subscriptions: Sequence[Subscription], *, adapter: str, keeps_ahead: KeepsAhead | None = None
    ) -> None:
        self.adapter = adapter
        self._keeps_ahead = keeps_ahead
        self._rules = tuple(
            _Rule(
                filter=tuple(s.topic.split("/")),
                entity_id=parse_template(s.entity_id),
                entity_type=parse_template(s.entity_type),
                dated=_dated(parse_template(s.entity_type)),
                fields=compile_fields(s, arrival="the arrival time"),
            )
            for s in subscriptions
        )
        # topic → its plan (_Plan): devices publish on a few topics again and again
        self._plans: dict[str, _Plan] = {}
        self._checked: dict[str, set[str]] = {"entity_id": set(), "entity_type": set()}

    def _plan(self, topic: str) -> _Plan:
        plan = self._plans.get(topic)
        if plan is None:
            rules = tuple(r for r in self._rules if topic_matches(r.filter, topic))
            levels = topic.split("/")
            plan = _Plan(
                rules=rules,
                levels=levels,
                source=Source(adapter=self.adapter, device=topic),
                ids=tuple(self._topic_ids(r, topic, levels) for r in rules),
            )
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            self._plans[topic] = plan
        return plan

    def _topic_ids(self, rule: _Rule, topic: str, levels: list[str]) -> tuple[str, str] | None:
        """The rule's (entity id, entity type) for this topic when its templates take nothing from the
        payload (the usual `urn:ngsi-ld:Device:{topic[1]}`): rendered and checked once per topic, not
        per message. None when a template reads the payload, or when the ids are refused: then each
        message renders them and is refused as it always was."""
        if any(isinstance(p, FieldRef) for p in (*rule.entity_id, *rule.entity_type)):
            return None
        try:
            return (
                _render(rule.entity_id, topic, levels, None, "entity_id", self._checked["entity_id"]),
                _render(rule.entity_type, topic, levels, None, "entity_type", self._checked["entity_type"]),
            )
        except (MappingError, FieldError):
            return None

    def map(self, topic: str, payload: bytes, now: datetime) -> list[Reading]:
        """One Reading per matching subscription; any problem makes the whole message a MappingError."""
        plan = self._plan(topic)
        if not plan.rules:
            raise MappingError(
                f"{topic}: matches no subscription of this adapter, got topic {topic!r}",
                reason=MalformedReason.BAD_TOPIC,
                topic=topic,
            )
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as refused:
            try:
                # where orjson refuses a number (1e400), the exact parse (adapters.jsonmap.decode): a bad value
                # then drops the message as bad_value naming its field, and one nobody maps costs nothing
                doc = reread(payload, refused)
            except FieldError as problem:
                # the whole payload: not_json masks every value before it cuts an excerpt around the error
                raise MappingError(
                    f"{topic}: payload {problem.what}", reason=MalformedReason.NOT_JSON, topic=topic
                ) from None
        if type(doc) is not dict:
            raise MappingError(
                f"{topic}: payload must be a JSON object, got {type_name(doc)} {describe(doc)}",
                reason=MalformedReason.WRONG_TYPE,
                topic=topic,
            )
        try:
            return [
                self._reading(rule, ids, topic, plan.levels, plan.source, doc, now)
                for rule, ids in zip(plan.rules, plan.ids, strict=True)
            ]
        except InexactNumber as exc:
            # orjson rounded an integer beyond 64 bits that a Text field or an id reads: map it exactly
            try:
                exact = exact_loads(payload)
            except ValueError:  # nested beyond the exact parser's reach: refused, never rounded
                raise MappingError.of_field(exc, topic) from None
        try:
            return [
                self._reading(rule, ids, topic, plan.levels, plan.source, exact, now)
                for rule, ids in zip(plan.rules, plan.ids, strict=True)
            ]
        except InexactNumber as exc:  # the exact parse leaves no rounded integer: kept for safety's sake
            raise MappingError.of_field(exc, topic) from None

    def _reading(
        self,
        rule: _Rule,
        ids: tuple[str, str] | None,
        topic: str,
        levels: list[str],
        source: Source,
        doc: dict[str, Any],
        now: datetime,
    ) -> Reading:
        try:
            if ids is None:
                entity_id = _render(rule.entity_id, topic, levels, doc, "entity_id", self._checked["entity_id"])
                entity_type = _render(rule.entity_type, topic, levels, doc, "entity_type", self._checked["entity_type"])
            else:
                entity_id, entity_type = ids
            try:
                return read_reading(
                    rule.fields, doc, now, entity_id=entity_id, entity_type=entity_type, source=source, dated=rule.dated
                )
            except TimeAhead as exc:
                if self._keeps_ahead is None or not self._keeps_ahead(entity_id, exc, now):
                    raise
                # the message has its time, so `now` is only the bound to read_reading: read at that time, it is kept
                return read_reading(
                    rule.fields,
                    doc,
                    exc.time,
                    entity_id=entity_id,
                    entity_type=entity_type,
                    source=source,
                    dated=rule.dated,
                )
        except InexactNumber:
            raise  # map() reads the payload again, exactly, or refuses the message for it
        except FieldError as exc:
            raise MappingError.of_field(exc, topic) from None


def _dated(entity_type: tuple[TemplatePart, ...]) -> bool | None:
    """Whether a literal entity type carries dateObserved; None for a template (known per message)."""
    literal = [p for p in entity_type if isinstance(p, str)]
    return has_date_observed("".join(literal)) if len(literal) == len(entity_type) else None


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
            out.append(id_field(doc, part, key))  # a FieldError worded by adapters.jsonmap, as for every JSON adapter
    text = "".join(out)
    if text in checked:  # the identifier rules are pure: a text that passed once passes again
        return text
    checked_id(
        text, key=key, template=template_text(parts), check=check_entity_id if key == "entity_id" else check_entity_type
    )
    if len(checked) >= _CACHE_LIMIT:
        checked.clear()
    checked.add(text)
    return text
