"""Malformed input per topic: counts for diagnostics, and one WARNING per topic per period, not per message.

A topic's first malformed message opens an episode and is logged at WARNING with an example. While
it lasts, further malformed messages are counted and logged at DEBUG; the first one after
`period_s` since the last WARNING gets a new WARNING with the count since that line, by reason. A
good message does not end the episode (a device alternating good and bad messages would otherwise
log every bad one): only a good message after `period_s` without a malformed one does, with an INFO
line. Topics are kept in a bounded table (a wildcard subscription can match endless topics), the
ones with the oldest malformed message leaving first.

Episodes on many topics at once (a flood over a wildcard, or more topics than the table keeps, which
come back as new) would still be a WARNING each: at most `WARNINGS_SAID` of these lines are logged per
`WARNINGS_WINDOW_S`, across topics. A topic whose line is left out is counted as ever, and its next line
(a period on) says its count since the episode began; once the window is over, one WARNING says how many
topics were left out (at the next malformed or good message: nothing else ticks here).
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
# A topic's WARNING is worth reading; the hundredth in a minute, each about another topic, floods the journal
WARNINGS_SAID = 20
WARNINGS_WINDOW_S = 60.0


@dataclass(slots=True, kw_only=True)
class _Topic:
    total: int = 0
    last_reason: str = ""
    last_at: float = 0.0  # clock time of the last malformed message
    opened_at: float = 0.0  # clock time of the episode's first malformed message
    logged_at: float = 0.0  # clock time of the last WARNING due about this topic (said or left out of a window)
    said_at: float | None = None  # …of the last one said in this episode
    since: Counter[str] = field(default_factory=Counter)  # by reason, since that WARNING (or the episode began)
    open: bool = False  # in an episode: a WARNING was due and the topic has not been good for a period

    def total_since(self) -> int:
        return sum(self.since.values())


class MalformedTopics:
    """What the adapter knows about malformed input, per topic; `open` is the set of topics in an episode."""

    def __init__(
        self,
        log: ComponentLogger,
        *,
        clock: Callable[[], float] = time.monotonic,
        period_s: float = PERIOD_S,
        kept: int = TOPICS_KEPT,
        warnings_said: int = WARNINGS_SAID,
        warnings_window_s: float = WARNINGS_WINDOW_S,
    ) -> None:
        self.open: set[str] = set()  # the adapter checks a good message's topic against this, cheaply
        self._log = log
        self._clock = clock
        self._period_s = period_s
        self._kept = kept
        self._topics: OrderedDict[str, _Topic] = OrderedDict()
        self._warnings_said = warnings_said
        self._warnings_window_s = warnings_window_s
        self._window_at: float | None = None  # when the current window of WARNINGs began
        self._said = 0  # WARNINGs said in it
        self._unsaid: Counter[str] = Counter()  # topics whose WARNING it left out, by reason

    def bad(self, topic: str, reason: str, message: str) -> None:
        """One malformed message (or refused reading) on `topic`."""
        now = self._clock()
        self._window(now)
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
            entry.opened_at = now
            self.open.add(topic)
        elif now - entry.logged_at < self._period_s:
            return
        entry.logged_at = now
        if not self._spend():
            # a line is due at most once a period per topic, longer than a window: one left out, one topic
            self._unsaid[reason] += 1
            return
        if entry.said_at is None and entry.total_since() == 1:
            self._log.warning(
                "%s: dropping malformed messages (%s), e.g. %s; counted per reason", topic, reason, message
            )
        elif entry.said_at is None:  # the episode's first line, late: a flood's window left it out
            self._log.warning(
                "%s: dropping malformed messages, %d in %.0f s (%s), e.g. %s; counted per reason",
                topic,
                entry.total_since(),
                now - entry.opened_at,
                _by_reason(entry.since),
                message,
            )
        else:
            self._log.warning(
                "%s: still dropping malformed messages, %d since the last line %.0f s ago (%s), e.g. %s",
                topic,
                entry.total_since(),
                now - entry.said_at,
                _by_reason(entry.since),
                message,
            )
        entry.said_at = now
        entry.since.clear()

    def _spend(self) -> bool:
        """Whether the current window has a WARNING left to say."""
        if self._said >= self._warnings_said:
            return False
        self._said += 1
        return True

    def good(self, topic: str) -> None:
        """A message on a topic in `open` mapped: the episode ends once the topic has been clean for a period."""
        self._window(self._clock())
        entry = self._topics.get(topic)
        if entry is None:
            self.open.discard(topic)
            return
        if self._clock() - entry.last_at < self._period_s:
            return
        said = entry.said_at is not None
        entry.open = False
        entry.said_at = None
        self.open.discard(topic)
        if not said:  # an episode never said (a flood's window left it out) ends unsaid too
            entry.since.clear()
            return
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

    def _window(self, now: float) -> None:
        """Start a new window of WARNINGs once the last is over, saying first what it left out."""
        if self._window_at is not None and now - self._window_at < self._warnings_window_s:
            return
        if self._unsaid:
            self._log.warning(
                "dropping malformed messages on %d more topics in the last %.0f s, not each said (at most %d "
                "lines in %.0f s; %s): counted per reason and topic, the worst in diagnostics' malformed_topics",
                sum(self._unsaid.values()),
                now - self._window_at if self._window_at is not None else 0.0,
                self._warnings_said,
                self._warnings_window_s,
                _by_reason(self._unsaid),
            )
            self._unsaid.clear()
        self._window_at = now
        self._said = 0

    def top(self, n: int = TOP_TOPICS) -> dict[str, dict[str, Any]]:
        """The `n` topics with the most malformed messages (of those kept), for diagnostics."""
        ranked = sorted(self._topics.items(), key=lambda kv: -kv[1].total)[:n]
        return {topic: {"malformed": e.total, "last_reason": e.last_reason} for topic, e in ranked}


def _by_reason(counts: Counter[str]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.most_common())
