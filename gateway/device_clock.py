"""Whether the gateway's clock may overrule a device's: the kernel's NTP state (adjtimex), read every few seconds.

The Wi-Fi log receivers file an event at the gateway's time for it (the syslog receiver replaces an AP's time
more than a day off the gateway's clock by the arrival time; the RADIUS server files a request at its arrival
less Acct-Delay-Time), which assumes the gateway's clock is the right one. A box without an RTC that booted
before NTP reached a server runs at its image's build date, the last time it saved or 1970; filing the day's
sessions at that puts them in a period the next expiry erases, or one kept too long. So while the kernel says
its clock is not synchronised (STA_UNSYNC, `gateway.host.clock_synced`; under edgegw.service's
ProtectClock=yes, which refuses even adjtimex's read, systemd-timesyncd's flag in /run), a device's time
ahead of it is kept (`GatewayClock.keeps` says within which bounds: an unsynchronised clock is only ever
behind); when neither can say (not Linux, chrony without adjtimex), the gateway's clock is trusted as before.
One implementation for every receiver; each words its log lines (`ClockWords`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.host import clock_synced
from gateway.logs import StateLog

__all__ = [
    "EARLIEST",
    "MAX_LEAD",
    "SYNC_TTL_S",
    "ClockWords",
    "GatewayClock",
    "SyncSource",
    "describe_skew",
    "known_floor",
]

SyncSource = Callable[[], bool | None]

# Asked per event out of bounds, and adjtimex with its library lookup costs about a millisecond. NTP's first
# sync comes seconds to minutes after boot: judging a few seconds of events by the previous answer costs nothing.
SYNC_TTL_S = 5.0
# The least the latest time the box knew can be, whatever its files say: no device time before it is believed
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# How far past the latest time the box knew a device's time may be and still be believed over an unsynchronised
# gateway clock: a box stored for a season comes back that far behind; a device years ahead is itself wrong
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockWords:
    """A receiver's words in GatewayClock's log lines, which read
    `<where>: <sender><address> <dated> <time>, … kept <kept>, …` and, once synchronised, `<otherwise> again`."""

    where: str  # the lines' prefix: "wifi syslog"
    sender: str  # before the sender's address: "" (an AP's address alone), "NAS "
    dated: str  # "dated an association event"
    kept: str  # whose time is kept: "the AP's time"
    otherwise: str  # the rule while the clock is synchronised: "device times … are replaced by the arrival time"


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
        "_words",
        "unsynced",
    )

    def __init__(
        self,
        log: logging.Logger | logging.LoggerAdapter[Any],
        source: SyncSource = clock_synced,
        *,
        words: ClockWords,
        ttl_s: float = SYNC_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
        not_before: datetime | None = None,
    ) -> None:
        self._log = log
        self._source = source
        self._words = words
        self._not_before = known_floor() if not_before is None else not_before
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._due = -math.inf
        self._synced: bool | None = None
        self._spell = StateLog(log)
        self._kept = 0  # device times kept in the current spell
        self.unsynced = False  # a spell is open: the receiver asks again on times within the bounds, to end it

    def synced(self) -> bool | None:
        """True/False as the kernel said at most `ttl_s` ago; None when it cannot be asked."""
        now = self._monotonic()
        if now >= self._due:
            self._due = now + self._ttl_s
            try:
                self._synced = self._source()
            except Exception as exc:  # an injected source: a broken one must not drop the event being judged
                self._log.debug("%s: reading the gateway's clock sync failed, got %r", self._words.where, exc)
                self._synced = None
        return self._synced

    def keeps(self, sender: str, device: datetime, now: datetime) -> bool:
        """Whether `device`, a device's time for an event the gateway's clock puts at `now`, is kept rather than
        replaced by `now`: the kernel says the gateway's clock is not synchronised, and the device's time is
        ahead of it and of the latest time the box knew (`known_floor`), by at most MAX_LEAD.

        Not synchronised is not wrong: a box with a good RTC on a network without NTP is unsynchronised too.
        What such a clock can be is behind (it starts from its RTC, a saved time or its build date), never
        ahead; a device behind it (its clock reset to its firmware's date) is the wrong one, and is replaced."""
        synced = self.synced()
        if synced is not False:
            self._end(synced)
            return False
        floor = max(self._not_before, now)
        if not floor < device <= floor + MAX_LEAD:
            return False
        self._kept += 1
        self.unsynced = True
        w = self._words
        if not self._spell.fail(
            "unsynced",
            logging.WARNING,
            "%s: %s%s %s %s, %s the gateway's clock (%s), which the kernel says is not synchronised (NTP): kept %s, "
            "as the gateway's clock cannot judge it; check the gateway's time sync (timedatectl); counted in "
            "gateway_clock_unsynced, further ones at DEBUG until the gateway's clock is synchronised",
            w.where,
            w.sender,
            sender,
            w.dated,
            device.isoformat(),
            describe_skew(device - now),
            now.isoformat(),
            w.kept,
        ):
            self._log.debug(
                "%s: %s%s %s %s, %s the unsynchronised gateway's clock: kept",
                w.where,
                w.sender,
                sender,
                w.dated,
                device.isoformat(),
                describe_skew(device - now),
            )
        return True

    def check(self) -> None:
        """A time within the bounds while a spell is open: it ends once the kernel says the clock is synchronised."""
        synced = self.synced()
        if synced is not False:
            self._end(synced)

    def _end(self, synced: bool | None) -> None:
        if not self.unsynced:
            return
        self.unsynced = False
        kept, self._kept = self._kept, 0
        self._spell.ok(
            "%s: the gateway's clock %s; %s again (%d kept while it was not synchronised)",
            self._words.where,
            "is synchronised again" if synced else "can no longer be asked whether it is synchronised (adjtimex)",
            self._words.otherwise,
            kept,
        )
