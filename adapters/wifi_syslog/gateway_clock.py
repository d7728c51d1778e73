"""Whether the gateway's clock may overrule an AP's: the kernel's NTP state (adjtimex), read every few seconds.

The receiver replaces a device time more than a day off the gateway's clock by the arrival time, which assumes
the gateway's clock is the right one. A box without an RTC that booted before NTP reached a server runs at its
image's build date, the last time it saved or 1970; replacing every AP's right time by that files the day's
sessions in a period the next expiry erases, or one kept too long. So while the kernel says its clock is not
synchronised (STA_UNSYNC, `gateway.host.clock_synced`; under edgegw.service's ProtectClock=yes, which refuses
even adjtimex's read, systemd-timesyncd's flag in /run), an AP's time ahead of it is kept (`GatewayClock.keeps`
says within which bounds: an unsynchronised clock is only ever behind); when neither can say (not Linux, chrony
without adjtimex), the gateway's clock is trusted as before.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.host import clock_synced
from gateway.logs import StateLog

__all__ = ["EARLIEST", "MAX_LEAD", "SYNC_TTL_S", "GatewayClock", "SyncSource", "describe_skew", "known_floor"]

SyncSource = Callable[[], bool | None]

# Asked per event out of bounds, and adjtimex with its library lookup costs about a millisecond. NTP's first
# sync comes seconds to minutes after boot: judging a few seconds of lines by the previous answer costs nothing.
SYNC_TTL_S = 5.0
# The least the latest time the box knew can be, whatever its files say: no AP time before it is believed
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# How far past the latest time the box knew an AP's time may be and still be believed over an unsynchronised
# gateway clock: a box stored for a season comes back that far behind; an AP years ahead is itself wrong
MAX_LEAD = timedelta(days=3 * 366)
# systemd-timesyncd saves the time here at each sync and at shutdown, and sets the clock to it at boot
TIMESYNC_CLOCK = Path("/var/lib/systemd/timesync/clock")
_ZERO = timedelta(0)


def known_floor() -> datetime:
    """The latest time this box knew to be past: its software's files' date (a .deb keeps its build's) and the
    time systemd-timesyncd last saved; 2000 at least."""
    stamps = [EARLIEST.timestamp()]
    for path in (Path(__file__), TIMESYNC_CLOCK):
        with contextlib.suppress(OSError):
            stamps.append(path.stat().st_mtime)
    return datetime.fromtimestamp(max(stamps), UTC)


def describe_skew(skew: timedelta) -> str:
    """`skew` (device time minus the gateway's) as a log line words it: `3 days ahead of`, `12 min behind`."""
    days, seconds = divmod(abs(int(skew.total_seconds())), 86_400)
    distance = f"{days} day{'s' if days != 1 else ''}" if days else f"{seconds // 60} min"
    return f"{distance} {'ahead of' if skew > _ZERO else 'behind'}"


class GatewayClock:
    """The kernel's word on the gateway's clock, cached for `ttl_s`, and the spell of an unsynchronised one
    logged once (WARNING naming the first sender whose time is kept, INFO once synchronised again)."""

    __slots__ = (
        "_due",
        "_kept",
        "_log",
        "_monotonic",
        "_not_before",
        "_source",
        "_spell",
        "_synced",
        "_ttl_s",
        "unsynced",
    )

    def __init__(
        self,
        log: logging.Logger | logging.LoggerAdapter[Any],
        source: SyncSource = clock_synced,
        *,
        ttl_s: float = SYNC_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
        not_before: datetime | None = None,
    ) -> None:
        self._log = log
        self._source = source
        self._not_before = known_floor() if not_before is None else not_before
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._due = -math.inf
        self._synced: bool | None = None
        self._spell = StateLog(log)
        self._kept = 0  # device times kept in the current spell
        self.unsynced = False  # a spell is open: the receiver asks again on lines within the bounds, to end it

    def synced(self) -> bool | None:
        """True/False as the kernel said at most `ttl_s` ago; None when it cannot be asked."""
        now = self._monotonic()
        if now >= self._due:
            self._due = now + self._ttl_s
            try:
                self._synced = self._source()
            except Exception as exc:  # an injected source: a broken one must not drop the line being judged
                self._log.debug("wifi syslog: reading the gateway's clock sync failed, got %r", exc)
                self._synced = None
        return self._synced

    def keeps(self, sender: str, device: datetime, now: datetime) -> bool:
        """Whether `device`, more than the bounds off the gateway's clock `now`, is kept rather than replaced by
        `now`: the kernel says the gateway's clock is not synchronised, and the AP's time is ahead of it and of
        the latest time the box knew (`known_floor`), by at most MAX_LEAD.

        Not synchronised is not wrong: a box with a good RTC on a network without NTP is unsynchronised too.
        What such a clock can be is behind (it starts from its RTC, a saved time or its build date), never
        ahead; an AP behind it (its clock reset to its firmware's date) is the wrong one, and is replaced."""
        synced = self.synced()
        if synced is not False:
            self._end(synced)
            return False
        floor = max(self._not_before, now)
        if not floor < device <= floor + MAX_LEAD:
            return False
        self._kept += 1
        self.unsynced = True
        if not self._spell.fail(
            "unsynced",
            logging.WARNING,
            "wifi syslog: %s dated an association event %s, %s the gateway's clock (%s), which the kernel says is "
            "not synchronised (NTP): kept the AP's time, as the gateway's clock cannot judge it; check the "
            "gateway's time sync (timedatectl); counted in gateway_clock_unsynced, further ones at DEBUG until "
            "the gateway's clock is synchronised",
            sender,
            device.isoformat(),
            describe_skew(device - now),
            now.isoformat(),
        ):
            self._log.debug(
                "wifi syslog: %s dated an association event %s, %s the unsynchronised gateway's clock: kept",
                sender,
                device.isoformat(),
                describe_skew(device - now),
            )
        return True

    def check(self) -> None:
        """A line within the bounds while a spell is open: it ends once the kernel says the clock is synchronised."""
        synced = self.synced()
        if synced is not False:
            self._end(synced)

    def _end(self, synced: bool | None) -> None:
        if not self.unsynced:
            return
        self.unsynced = False
        kept, self._kept = self._kept, 0
        self._spell.ok(
            "wifi syslog: the gateway's clock %s; device times more than a day off it are replaced by the arrival "
            "time again (%d kept while it was not synchronised)",
            "is synchronised again" if synced else "can no longer be asked whether it is synchronised (adjtimex)",
            kept,
        )
