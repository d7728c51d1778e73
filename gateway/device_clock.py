"""Whether the gateway's clock may overrule a device's: the kernel's NTP state (adjtimex) and where the clock
started this boot, read every few seconds.

The Wi-Fi log receivers file an event at the gateway's time for it (the syslog receiver replaces an AP's time
more than a day off the gateway's clock by the arrival time; the RADIUS server files a request at its arrival
less Acct-Delay-Time), which assumes the gateway's clock is the right one. A box without an RTC that booted
before NTP reached a server runs at its image's build date, the last time it saved or 1970; filing the day's
sessions at that puts them in a period the next expiry erases, or one kept too long. So while the kernel says
its clock is not synchronised (STA_UNSYNC, `gateway.host.clock_synced`; under edgegw.service's
ProtectClock=yes, which refuses even adjtimex's read, systemd-timesyncd's flag in /run), a device's time
ahead of it may be kept; when neither can say (not Linux, chrony without adjtimex), the gateway's clock is
trusted as before. One implementation for every receiver; each words its log lines (`ClockWords`).

The rule, with `floor` the latest time the box knew (`known_floor`: its software's files' date, timesyncd's
saved clock; 2000 at least) and `now` the gateway's time for the event. Not synchronised is not wrong: a box
with a good RTC on a network without NTP is unsynchronised for ever. Such a clock can only be behind, never
ahead (it starts from its RTC, a saved time or its build date), so a device's time is kept only when after
max(now, floor), and by how much depends on whether the gateway's clock is evidently stale. That is judged by
where the clock started this boot (`now` less the uptime, CLOCK_BOOTTIME), not by how long it has run: a clock
set from the saved time at boot is as far behind after a month as after a minute.

- stale: it started before `floor` + STALE_WITHIN (a day) on a box without RTC (/sys/class/rtc/rtc0): at 1970,
  the build date, or the saved time; on a box with one, before `floor` (a dead RTC at 1970 or 2000, then
  advanced to the saved time by timesyncd). Stale for the whole boot. Nothing says how far behind it is: a device
  time up to MAX_LEAD (three years) past max(now, floor) is kept; an RFC 3164 line's year is the one putting it
  after max(now, floor) less a day (`dates_after`), not the stale clock's. That year is a guess (an AP whose
  clock reset sends "Jan  1 00:03:00", read as the next New Year's): such a line is kept only within RIGHT_LEAD
  of max(now, floor), or it would be filed up to a year ahead and kept that much past its retention.
- not stale: it started after `floor`, set by a good RTC (a reboot a minute after the clock was saved is one),
  by hand, or by NTP before the kernel lost sync. It is believed: a device time at most RIGHT_LEAD (a day) past
  it is kept (the RADIUS server asks for any Event-Timestamp ahead), one further ahead is the wrong one.
  Believed, an AP years ahead would file sessions in future periods, kept years past their retention.

Kept: counted by the receiver in `gateway_clock_unsynced`, one WARNING a spell. Not kept: the receiver's own
rule (the arrival time; `device_time_ignored` for the syslog receiver, whose advice `doubt` completes).
A box off for more than a year past `floor` reads a year-less line a year early: no field says otherwise. A good
RTC that reads behind the saved time at boot (rebooted within the seconds it lags) is taken for stale that boot.
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
    "RIGHT_LEAD",
    "STALE_WITHIN",
    "SYNC_TTL_S",
    "ClockWords",
    "GatewayClock",
    "HostClock",
    "SyncSource",
    "describe_skew",
    "has_rtc",
    "known_floor",
    "uptime_s",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostClock:
    """What the host says of its clock at one moment, as a SyncSource may answer it (tests give a boot of their
    own); a source answering the kernel's flag alone gets `uptime_s()` and `has_rtc()` added."""

    synced: bool | None  # the kernel's NTP flag; None: it cannot be asked
    uptime_s: float  # since boot, suspend included: the clock started at the gateway's time less this
    rtc: bool  # the box has a hardware clock, which set the clock at boot


SyncSource = Callable[[], bool | HostClock | None]

# Asked per event out of bounds, and adjtimex with its library lookup costs about a millisecond. NTP's first
# sync comes seconds to minutes after boot: judging a few seconds of events by the previous answer costs nothing.
SYNC_TTL_S = 5.0
# The least the latest time the box knew can be, whatever its files say: no device time before it is believed
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# How far past the latest time the box knew a device's time may be and still be believed over an unsynchronised
# gateway clock: a box stored for a season comes back that far behind; a device years ahead is itself wrong
MAX_LEAD = timedelta(days=3 * 366)
# A box without RTC whose clock started within this past the latest time the box knew was set from it (the saved
# time, the build date, a fake-hwclock saved a little later), and is stale for the whole boot
STALE_WITHIN = timedelta(days=1)
# How far ahead of an unsynchronised clock that is not stale a device may be (the receivers' own margin), and of a
# stale one a year-less line whose year was guessed (`dates_after`)
RIGHT_LEAD = timedelta(days=1)
# systemd-timesyncd saves the time here at each sync and at shutdown, and sets the clock to it at boot
TIMESYNC_CLOCK = Path("/var/lib/systemd/timesync/clock")
# the kernel's first hardware clock; boards without a battery-backed one (a Raspberry Pi) have none
RTC = Path("/sys/class/rtc/rtc0")
_ZERO = timedelta(0)
# the wall time runs on through a suspend, so the uptime taken off it must count it too (CLOCK_BOOTTIME; elsewhere
# the monotonic clock)
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def uptime_s() -> float:
    """Seconds since boot, suspend included (CLOCK_BOOTTIME)."""
    return time.clock_gettime(_BOOTTIME)


def has_rtc() -> bool:
    """Whether the box has a hardware clock (/sys/class/rtc/rtc0), which sets its clock at boot."""
    return RTC.exists()


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
        "_rtc",
        "_source",
        "_spell",
        "_started",
        "_synced",
        "_ttl_s",
        "_uptime_s",
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
        self._uptime_s = 0.0
        self._rtc = False
        self._started: datetime | None = None  # where the clock started this boot, from the first `now` after a read
        self._spell = StateLog(log)
        self._kept = 0  # device times kept in the current spell
        self.unsynced = False  # a spell is open: the receiver asks again on times within the bounds, to end it

    def synced(self) -> bool | None:
        """True/False as the kernel said at most `ttl_s` ago; None when it cannot be asked. The uptime and the RTC
        are read with it: not per event."""
        now = self._monotonic()
        if now >= self._due:
            self._due = now + self._ttl_s
            self._started = None
            try:
                answer = self._source()
                if isinstance(answer, HostClock):
                    self._synced, self._uptime_s, self._rtc = answer.synced, answer.uptime_s, answer.rtc
                else:
                    self._synced, self._uptime_s, self._rtc = answer, uptime_s(), has_rtc()
            except Exception as exc:  # an injected source: a broken one must not drop the event being judged
                self._log.debug("%s: reading the gateway's clock sync failed, got %r", self._words.where, exc)
                self._synced = None
        return self._synced

    @property
    def not_before(self) -> datetime:
        """The latest time the box knew (`known_floor` when it was made): no device time before it is kept."""
        return self._not_before

    def stale(self, now: datetime) -> bool:
        """Whether the gateway's clock, at `now`, is evidently not set: it started this boot (`now` less the
        uptime) before the latest time the box knew, plus STALE_WITHIN on a box without RTC (the module's
        docstring says why)."""
        self.synced()  # the uptime is read with the kernel's flag
        if self._started is None:
            self._started = now - timedelta(seconds=self._uptime_s)
        return self._started < self._not_before + (_ZERO if self._rtc else STALE_WITHIN)

    def dates_after(self, now: datetime) -> datetime | None:
        """The time a year-less device date (RFC 3164) is read just after, rather than near the gateway's clock:
        max(now, the latest time the box knew) while the kernel says that clock is unsynchronised and it is stale
        (at 1970 or its build date its year is not the device's); None otherwise."""
        if self.synced() is not False or not self.stale(now):
            return None
        return max(self._not_before, now)

    def doubt(self, now: datetime) -> str | None:
        """For a device time `keeps` did not keep: what the technician is told of the gateway's clock, beside
        the receiver's advice to set the device's; None while it is synchronised (or cannot be asked)."""
        if self.synced() is not False:
            return None
        floor = self._not_before.isoformat()
        if self.stale(now):
            return (
                "the gateway's clock is not synchronised (NTP) either: check its time sync (timedatectl), though no "
                f"device time before the latest time the box knew ({floor}), more than {MAX_LEAD.days // 366} "
                "years past it, or a year-less (RFC 3164) one more than a day past it is believed"
            )
        return (
            "the gateway's clock is not synchronised (NTP) either, but started this boot after the latest time the "
            f"box knew ({floor}), so it is believed: if it is the wrong one, check the gateway's time sync "
            "(timedatectl)"
        )

    def keeps(self, sender: str, device: datetime, now: datetime, *, year_guessed: bool = False) -> bool:
        """Whether `device`, a device's time for an event the gateway's clock puts at `now`, is kept rather than
        replaced by `now`: the kernel says the gateway's clock is not synchronised, and the device's time is
        ahead of it and of the latest time the box knew (`known_floor`), by at most MAX_LEAD while the gateway's
        clock is stale, RIGHT_LEAD when it is not or when the device's date had no year and `year_guessed` says
        the receiver chose it (`dates_after`; the module's docstring says why)."""
        synced = self.synced()
        if synced is not False:
            self._end(synced)
            return False
        floor = max(self._not_before, now)
        lead = MAX_LEAD if not year_guessed and self.stale(now) else RIGHT_LEAD
        if not floor < device <= floor + lead:
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
