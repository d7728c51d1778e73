"""The processing stage: runs every reading from any adapter through the processors whose match holds.

Theory of operation. The stage holds an ordered list of entries, each a match and a processor:
first the ones adapters contribute (`ProcessorSource`, e.g. a Modbus device's per-point `[quality]`
and `[river]`), in adapter order, then the `[[processing]]` entries in file order. An adapter's
processors are matched on its own attribute names and work in its own units, so they see the raw
point before any configured rename or conversion changes it; what they make (quality flags,
`levelState`, `Alert`s) then goes through the configured entries like everything else. File order
is the order an operator reads and reasons about ("rename level_cm to waterLevel, then convert it
to metres, then check its quality, then the river thresholds on the checked value"), so it is the
order they run in; nothing is sorted behind their back.

Which entries apply depends on the reading's (adapter, entity type, entity id) only, so the stage
computes that plan once per entity and caches it (bounded: the oldest plan is forgotten first).
A reading that no entry matches costs one dict lookup and goes on unchanged, the same object. The
attribute part of a match (`match.attribute`) is checked per reading, against the attributes the
reading carries at that point (after earlier renames).

A processor returns the reading itself first (changed or not) and may add readings after it (an
`Alert`). An added reading is a different entity: it goes on through the entries after the one
that made it, by its own plan. A processor that raises `ReadingError` (a value it cannot use)
leaves the reading as it was, or as its `refused(reading)` says when it has one (a river removes the
distance only it reads); the stage counts it under `errors` of that entry. A refusal usually repeats
with every reading of that entity (a gauge in feet, a wrong attribute, a '欠測' every other reading), so
it is an episode, ended only by `EPISODE_QUIET` of processed readings: said once at
WARNING per (entry, entity, reason), the reason being the message without its `got <value>` (at most
`REASONS_PER_EPISODE` of them); once at
INFO when that entry processes the entity's readings again; every refusal in between at DEBUG.

What an adapter hands its own processors as metadata (`INTERNAL_METADATA`: the raw register value …)
is removed from every reading the stage lets through, whichever processor ran or failed, so it never
reaches the buffer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from gateway import redact
from gateway.errors import ReadingError
from gateway.processing.api import INTERNAL_METADATA, EntityKey, Processor, ProcessorMatch, with_attributes
from gateway.records import Attribute, Reading, make_attribute

__all__ = ["EPISODE_QUIET", "PLAN_CACHE_SIZE", "REASONS_PER_EPISODE", "REFUSING_LIMIT", "Entry", "Refusing", "Stage"]

log = logging.getLogger(__name__)

PLAN_CACHE_SIZE = 50_000  # entities whose plan is remembered; a library's Wi-Fi sessions are many, each once
REFUSING_LIMIT = 10_000  # open refusal episodes kept; the oldest is forgotten first (and warned again if it goes on)
# reasons said at WARNING in one episode: a message with a value outside its `got` part (a rate, a time) differs at
# every reading, and must not become a WARNING per reading
REASONS_PER_EPISODE = 3
# an episode ends (INFO) only once the entity's readings went this long processed: a source whose readings are
# refused every other time (a '欠測' among numbers) must not be a WARNING and an INFO per reading
EPISODE_QUIET = timedelta(hours=1)

# `<where>: <what>, got <value>[; <fix>]` without the value: a gauge whose reading is refused for its value
# is one episode, not one per value
_GOT = re.compile(r", got .*?(?=; |$)", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One processor of the stage, with its match and the name it is shown under in status."""

    name: str  # "processing[2] (river)" or "modbus cabinet: gauge1 level (river)"
    match: ProcessorMatch
    processor: Processor


@runtime_checkable
class Refusing(Protocol):
    """A processor whose refused readings must not go on exactly as they came (it removes what only it reads)."""

    def refused(self, reading: Reading) -> Reading:
        """What `reading` goes on as after this processor raised `ReadingError` for it."""
        ...


@dataclass(slots=True)
class _Episode:
    reasons: set[str] = field(default_factory=set)  # warned at WARNING in this episode
    refused: int = 0
    last_refused: datetime | None = None  # the stage's `now` at the latest refusal


_Plan = tuple[tuple[int, Entry], ...]
_EMPTY: _Plan = ()


class Stage:
    """The ordered entries and the per-entity plan cache; `process_many` is what the supervisor's emit calls."""

    def __init__(self, entries: Sequence[Entry], *, cache_size: int = PLAN_CACHE_SIZE) -> None:
        self.entries = tuple(entries)
        self._plans: dict[EntityKey, _Plan] = {}
        self._cache_size = cache_size
        self.errors = [0] * len(self.entries)
        self._refused: list[Callable[[Reading], Reading] | None] = [
            e.processor.refused if isinstance(e.processor, Refusing) else None for e in self.entries
        ]
        self._episodes: dict[tuple[int, str], _Episode] = {}  # (position, entity id) being refused

    def plan(self, key: EntityKey) -> _Plan:
        """The (position, entry) pairs whose entity match holds for `key`, in stage order."""
        plans = self._plans
        found = plans.get(key)
        if found is None:
            found = tuple((i, e) for i, e in enumerate(self.entries) if e.match.matches(key)) or _EMPTY
            if len(plans) >= self._cache_size:
                del plans[next(iter(plans))]  # dicts keep insertion order: the oldest plan goes
            plans[key] = found
        return found

    def process(self, reading: Reading, now: datetime) -> list[Reading]:
        """The readings `reading` becomes: itself unchanged when nothing matches, none when dropped."""
        return self._run(reading, now, 0)

    def process_many(self, readings: Sequence[Reading], now: datetime) -> Sequence[Reading]:
        """`process` for a burst; returns `readings` itself when no reading of it had a plan."""
        plans = self._plans
        out: list[Reading] | None = None
        for n, reading in enumerate(readings):
            key = (reading.source.adapter, reading.entity_type, reading.entity_id)
            plan = plans.get(key)
            if plan is None:
                plan = self.plan(key)
            if not plan:
                if out is not None:
                    out.append(reading)
                continue
            if out is None:
                out = list(readings[:n])
            out.extend(self._run(reading, now, 0, plan))
        return readings if out is None else out

    def _run(self, reading: Reading, now: datetime, start: int, plan: _Plan | None = None) -> list[Reading]:
        if plan is None:
            plan = self.plan((reading.source.adapter, reading.entity_type, reading.entity_id))
        current: Reading | None = reading
        added: list[tuple[int, Reading]] = []
        for position, entry in plan:
            if position < start:
                continue
            assert current is not None
            attribute = entry.match.attribute
            if attribute is not None and attribute not in current.attributes:
                continue
            try:
                result = entry.processor.process(current, now)
            except ReadingError as exc:
                self.errors[position] += 1
                self._refusing(position, entry, current.entity_id, exc, now)
                refused = self._refused[position]
                if refused is not None:
                    current = refused(current)
                continue
            if self._episodes and (position, current.entity_id) in self._episodes:
                self._accepted(position, entry, current.entity_id, now)
            if not result:
                current = None
                break
            current = result[0]
            added.extend((position + 1, r) for r in result[1:])
        out = [] if current is None else [_without_internal(current)]
        for after, extra in added:
            out.extend(self._run(extra, now, after))
        return out

    def _refusing(self, position: int, entry: Entry, entity_id: str, exc: ReadingError, now: datetime) -> None:
        episodes = self._episodes
        key = (position, entity_id)
        episode = episodes.get(key)
        if episode is None:
            if len(episodes) >= REFUSING_LIMIT:
                del episodes[next(iter(episodes))]
            episode = episodes[key] = _Episode()
        episode.refused += 1
        episode.last_refused = now
        reason = _GOT.sub("", str(exc))
        if reason not in episode.reasons and len(episode.reasons) < REASONS_PER_EPISODE:
            episode.reasons.add(reason)
            # the value refused may be anything a device sent (an address, a MAC in the id): masked first
            log.warning(
                "%s: readings of %s left unprocessed, %s; they go on without this step (counted under errors)"
                " until that is fixed",
                entry.name,
                redact.text(entity_id),
                redact.text(str(exc)),
            )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s: reading of %s left unprocessed: %s", entry.name, redact.text(entity_id), redact.text(str(exc))
            )

    def _accepted(self, position: int, entry: Entry, entity_id: str, now: datetime) -> None:
        key = (position, entity_id)
        episode = self._episodes[key]
        if episode.last_refused is not None and now - episode.last_refused < EPISODE_QUIET:
            return
        del self._episodes[key]
        log.info(
            "%s: readings of %s processed again (none left unprocessed for %s), after %d left unprocessed",
            entry.name,
            redact.text(entity_id),
            _quiet_text(),
            episode.refused,
        )

    def diagnostics(self) -> list[dict[str, Any]]:
        """One `{"name", "counters"}` per entry, in stage order, for status.json's `processing`."""
        out = []
        for entry, errors in zip(self.entries, self.errors, strict=True):
            counters = dict(entry.processor.diagnostics())
            if errors:
                counters["errors"] = errors
            out.append({"name": entry.name, "counters": counters})
        return out


def _quiet_text() -> str:
    minutes = int(EPISODE_QUIET.total_seconds()) // 60
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _without_internal(reading: Reading) -> Reading:
    """`reading` without the internal metadata of any attribute; the same object when it has none (nearly always)."""
    attrs = reading.attributes
    for attribute in attrs.values():
        if attribute.metadata and not INTERNAL_METADATA.isdisjoint(attribute.metadata):
            break
    else:
        return reading
    return with_attributes(reading, {n: _stripped(a) for n, a in attrs.items()})


def _stripped(attribute: Attribute) -> Attribute:
    metadata = attribute.metadata
    if not metadata or INTERNAL_METADATA.isdisjoint(metadata):
        return attribute
    kept = {m: v for m, v in metadata.items() if m not in INTERNAL_METADATA}
    return make_attribute(attribute.value, attribute.type, attribute.unit, kept)
