"""Whether a JSON source's time refused as too far ahead of the gateway clock (TimeAhead) is kept: the rule of
gateway.device_clock (GatewayClock, shared with the Wi-Fi receivers), for every adapter reading JSON.

While the kernel says the gateway's clock is not synchronised it may be the wrong one (a box without RTC booted
before NTP runs days behind), so a time ahead of it is kept by GatewayClock's bounds, except a lead of whole hours
over a clock that is believed: that is a zone mistake (JST written as UTC), not a clock behind, and kept it would be
the entity's observedAt hours in the future. The mappers stay pure: they ask a KeepsAhead, which the adapter makes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from adapters.jsonmap.timestamps import TimeAhead
from gateway.device_clock import ClockWords, GatewayClock, SyncSource

__all__ = ["AheadKeeper", "KeepsAhead"]

# Whether an item's time, further ahead of `now` than adapters.jsonmap allows, is kept: (entity id, the refusal
# carrying the time, now).
KeepsAhead = Callable[[str, TimeAhead, datetime], bool]


class AheadKeeper:
    """An adapter's GatewayClock judging times ahead (a KeepsAhead when called), and the count of those kept: the
    adapter's `gateway_clock_unsynced`. One WARNING a spell, INFO once synchronised again (GatewayClock)."""

    __slots__ = ("_clock", "kept")

    def __init__(
        self,
        log: logging.Logger | logging.LoggerAdapter[Any],
        source: SyncSource,
        *,
        words: ClockWords,
        not_before: datetime | None = None,
    ) -> None:
        self._clock = GatewayClock(log, source, words=words, not_before=not_before)
        self.kept = 0

    def __call__(self, entity_id: str, exc: TimeAhead, now: datetime) -> bool:
        clock = self._clock
        # whole hours over a believed clock: a zone mistake (the module's docstring), however far GatewayClock keeps
        if exc.whole_hours and clock.synced() is False and not clock.stale(now):
            return False
        if not clock.keeps(entity_id, exc.time, now):
            return False
        self.kept += 1
        return True

    def judges(self) -> bool:
        """Whether the gateway's clock can tell a device time sent earlier wrong: not said unsynchronised by the
        kernel. One that is (stale, or a good RTC without NTP) kept the times ahead of it that it could not judge
        (`__call__`): it does not second-guess them later either."""
        return self._clock.synced() is not False

    def check(self) -> None:
        """Per document or socket read: a spell of kept times ends once the kernel says the clock is synchronised
        (times within the bound never reach `__call__`, so would not end it)."""
        if self._clock.unsynced:
            self._clock.check()
