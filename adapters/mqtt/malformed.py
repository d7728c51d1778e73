"""Malformed input per topic: counts for diagnostics, and one WARNING per topic per period, not per message.

A topic's first malformed message opens an episode and is logged at WARNING with an example. While
it lasts, further malformed messages are counted and logged at DEBUG; the first one after
`period_s` since the last WARNING gets a new WARNING with the count since that line, by reason. A
good message does not end the episode (a device alternating good and bad messages would otherwise
log every bad one): only a good message after `period_s` without a malformed one does, with an INFO
line. Topics are kept in a bounded table (a wildcard subscription can match endless topics), the
ones with the oldest malformed message leaving first.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.logs import ComponentLogger

PERIOD_S = 300.0
TOPICS_KEPT = 1024
TOP_TOPICS = 20  # topics listed in diagnostics, most malformed first


@dataclass(slots=True, kw_only=True)
class _Topic:
    total: int = 0
    last_reason: str = ""
    last_at: float = 0.0  # clock time of the last malformed message
    logged_at: float = 0.0  # clock time of the last WARNING about this topic
    since: Counter[str] = field(default_factory=Counter)  # by reason, since that WARNING
    open: bool = False  # in an episode: a WARNING was logged and the topic has not been good for a period


class MalformedTopics:
    """What the adapter knows about malformed input, per topic; `open` is the set of topics in an episode."""

    def __init__(
        self,
        log: ComponentLogger,
        *,
        clock: Callable[[], float] = time.monotonic,
        period_s: float = PERIOD_S,
        kept: int = TOPICS_KEPT,
    ) -> None:
        self.open: set[str] = set()  # the adapter checks a good message's topic against this, cheaply
        self._log = log
        self._clock = clock
        self._period_s = period_s
        self._kept = kept
        self._topics: OrderedDict[str, _Topic] = OrderedDict()

    def bad(self, topic: str, reason: str, message: str) -> None:
        """One malformed message (or refused reading) on `topic`."""
        now = self._clock()
        entry = self._topics.get(topic)
        if entry is None:
            entry = self._topics[topic] = _Topic()
            if len(self._topics) > self._kept:
                gone, _ = self._topics.popitem(last=False)
                self.open.discard(gone)
        else:
            self._topics.move_to_end(topic)
        entry.total += 1
        entry.last_reason = reason
        entry.last_at = now
        entry.since[reason] += 1
        self._log.debug("dropped a message (%s): %s", reason, message)
        if not entry.open:
            entry.open = True
            self.open.add(topic)
            self._log.warning(
                "%s: dropping malformed messages (%s), e.g. %s; counted per reason", topic, reason, message
            )
        elif now - entry.logged_at >= self._period_s:
            self._log.warning(
                "%s: still dropping malformed messages, %d since the last line %.0f s ago (%s), e.g. %s",
                topic,
                sum(entry.since.values()),
                now - entry.logged_at,
                _by_reason(entry.since),
                message,
            )
        else:
            return
        entry.logged_at = now
        entry.since.clear()

    def good(self, topic: str) -> None:
        """A message on a topic in `open` mapped: the episode ends once the topic has been clean for a period."""
        entry = self._topics.get(topic)
        if entry is None:
            self.open.discard(topic)
            return
        if self._clock() - entry.last_at < self._period_s:
            return
        entry.open = False
        self.open.discard(topic)
        if entry.since:
            self._log.info(
                "%s: payloads map again; %d more malformed since the last line (%s)",
                topic,
                sum(entry.since.values()),
                _by_reason(entry.since),
            )
        else:
            self._log.info("%s: payloads map again", topic)
        entry.since.clear()

    def top(self, n: int = TOP_TOPICS) -> dict[str, dict[str, Any]]:
        """The `n` topics with the most malformed messages (of those kept), for diagnostics."""
        ranked = sorted(self._topics.items(), key=lambda kv: -kv[1].total)[:n]
        return {topic: {"malformed": e.total, "last_reason": e.last_reason} for topic, e in ranked}


def _by_reason(counts: Counter[str]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.most_common())
