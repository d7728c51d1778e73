"""Per access point usage for the platform: clients, sessions started and bytes, nothing personal.

The receivers call `record` for every stored session event; every `interval` the adapter emits one
`WifiAccessPointUsage` reading per AP (entity `urn:ngsi-ld:WifiAccessPointUsage:<ap>`, the AP being
its MAC or the NAS name: infrastructure, not a person). No Smart Data Model covers AP usage counts
(Device/DeviceMeasurement describe one device's measured values, not a population), so the entity is
documented in gateway/wifilog/README.md. Counters hold session keys only in memory, never a MAC.

A closed session's key is remembered (the last CLOSED_KEPT of them): a Stop the NAS sends again with a new
identifier (RFC 2866 5.2: its Acct-Delay-Time changed) or an event that arrives after its Stop adds nothing,
where it would count the session's octets a second time and open it again.

What any sender may grow is bounded (a syslog receiver with `senders = []` hears any host on the Wi-Fi side, which
may invent APs and stations line after line): a session with no event for `session_idle_s` is forgotten (its
Stop was lost, the AP rebooted: `connectedClients` would drift upward for ever), the least recently seen first
past `sessions_kept`; an AP with no open session and no event for `ap_idle_s` is forgotten and gets no more
readings, after one last reading when its count fell since its previous one (its sessions forgotten in the same
pass: else the platform keeps the clients of its last reading for ever); at most `aps_kept` APs are counted, the
events of a new one past that refused, counted in `refused_aps` and logged once a spell.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gateway import redact
from gateway.logs import StateLog, component_logger
from gateway.records import Attribute, Reading, Source, TimeSource
from gateway.wifilog.sessions import EventKind, SessionEvent

__all__ = ["ENTITY_TYPE", "UsageCounter"]

ENTITY_TYPE = "WifiAccessPointUsage"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# A NAS resends an unanswered Stop for seconds to minutes (RFC 5080 2.2.1): a busy site closes a few sessions
# a second, so this is many minutes of Stops, in about 1 MB
CLOSED_KEPT = 4096
# A session without an event this long lost its Stop: RADIUS NASes send an Interim-Update every few minutes to an
# hour, syslog has only the join and the leave, and a station rarely stays a day on a public network
SESSION_IDLE_S = 24 * 3600.0
AP_IDLE_S = 24 * 3600.0  # an AP without a session or an event this long gets no readings until its next event
# Open sessions counted at once, the least recently seen forgotten past it: a few hundred stations a site; about 8 MB
SESSIONS_KEPT = 32_768
# APs counted: a site has tens; each is a reading every interval, and readings are stored one commit each
APS_KEPT = 1024


@dataclass(slots=True)
class _Ap:
    open: int = 0  # its sessions in UsageCounter._sessions
    started: int = 0
    input_octets: int = 0
    output_octets: int = 0
    seen: float = 0.0  # clock time of its last event
    reported: int = 0  # connectedClients in its last reading


@dataclass(slots=True)
class _Session:
    ap: str
    input_octets: int = 0
    output_octets: int = 0
    seen: float = 0.0  # clock time of its last event


class UsageCounter:
    """Counts per AP between two `readings` calls; the open sessions carry over (see the module's bounds)."""

    def __init__(
        self,
        adapter: str,
        *,
        closed_kept: int = CLOSED_KEPT,
        session_idle_s: float = SESSION_IDLE_S,
        ap_idle_s: float = AP_IDLE_S,
        sessions_kept: int = SESSIONS_KEPT,
        aps_kept: int = APS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.adapter = adapter
        self.closed_kept = closed_kept
        self.session_idle_s = session_idle_s
        self.ap_idle_s = ap_idle_s
        self.sessions_kept = sessions_kept
        self.aps_kept = aps_kept
        self._clock = clock
        self._log = component_logger(__name__, adapter)
        self._aps: dict[str, _Ap] = {}
        # (NAS, session id) → its AP and octets so far, the least recently seen first
        self._sessions: OrderedDict[tuple[str, str], _Session] = OrderedDict()
        self._closed: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._refusing = StateLog(self._log)  # events of new APs refused past aps_kept
        self._crowded = StateLog(self._log)  # sessions forgotten past sessions_kept
        self.counters: dict[str, int] = {
            "refused_aps": 0,  # events of an AP not counted: aps_kept were
            "sessions_expired": 0,  # sessions forgotten after session_idle_s without an event
            "sessions_forgotten": 0,  # sessions forgotten, the least recently seen, past sessions_kept
            "aps_forgotten": 0,  # APs without a session or an event for ap_idle_s, no longer reported
        }
        self._lock = threading.Lock()  # the receivers record from their commit thread

    def record(self, ev: SessionEvent) -> None:
        with self._lock:
            self._record(ev)

    def diagnostics(self) -> dict[str, int]:
        """For the adapter's status: APs and sessions counted now, and what the bounds refused or forgot."""
        with self._lock:
            return {"access_points": len(self._aps), "open_sessions": len(self._sessions), **self.counters}

    def _record(self, ev: SessionEvent) -> None:
        key = (ev.nas, ev.session_id)
        if key in self._closed:  # its Stop was counted: a resent Stop, or an event arriving after it
            return
        now = self._clock()
        session = self._sessions.get(key)
        ap_name = session.ap if session is not None else ev.ap_mac or ev.nas
        ap = self._aps.get(ap_name)
        if ap is None:
            ap = self._new_ap(ap_name)
            if ap is None:
                return
        ap.seen = now
        if session is None:
            if ev.kind is EventKind.START:
                ap.started += 1
            session = _Session(ap_name)
        else:
            self._sessions.move_to_end(key)
        # counters only grow within a session (the store keeps the largest too): an Interim-Update received
        # again after a later one must not lower them, or the later one's octets would be counted twice
        now_in = max(ev.input_octets or 0, session.input_octets)
        now_out = max(ev.output_octets or 0, session.output_octets)
        ap.input_octets += now_in - session.input_octets
        ap.output_octets += now_out - session.output_octets
        if ev.kind is EventKind.STOP:
            if self._sessions.pop(key, None) is not None:
                ap.open -= 1
            self._closed[key] = None
            if len(self._closed) > self.closed_kept:
                self._closed.popitem(last=False)
            return
        session.input_octets, session.output_octets, session.seen = now_in, now_out, now
        if key not in self._sessions:
            self._sessions[key] = session
            ap.open += 1
            if len(self._sessions) > self.sessions_kept:
                self._forget_oldest()

    def _new_ap(self, name: str) -> _Ap | None:
        """A new AP's counts, or None past `aps_kept` (counted, logged once a spell)."""
        if len(self._aps) >= self.aps_kept:
            self.counters["refused_aps"] += 1
            if not self._refusing.fail(
                "full",
                logging.WARNING,
                "wifilog usage: %d access points are counted; events of others, e.g. %s, are not (counted in "
                "refused_aps) until one has had no session nor event for %g h; if hosts other than the APs send "
                "syslog, list the APs in the adapter's senders",
                self.aps_kept,
                redact.text(name),
                self.ap_idle_s / 3600,
            ):
                self._log.debug("wifilog usage: events of access point %s not counted", redact.text(name))
            return None
        self._refusing.ok(
            "wifilog usage: counting new access points again (%d events refused so far)", self.counters["refused_aps"]
        )
        ap = self._aps[name] = _Ap()
        return ap

    def _forget_oldest(self) -> None:
        _, gone = self._sessions.popitem(last=False)
        self._aps[gone.ap].open -= 1
        self.counters["sessions_forgotten"] += 1
        self._crowded.fail(
            "full",
            logging.WARNING,
            "wifilog usage: %d sessions are open; forgetting the least recently seen (counted in sessions_forgotten, "
            "not in connectedClients)",
            self.sessions_kept,
        )

    def _expire(self, now: float) -> list[str]:
        """Sessions idle for `session_idle_s` forgotten, then APs with none left and idle for `ap_idle_s`; returns
        those of them to forget after this reading, which says their count fell to 0."""
        while self._sessions:
            key, session = next(iter(self._sessions.items()))
            if now - session.seen < self.session_idle_s:
                break
            del self._sessions[key]
            self._aps[session.ap].open -= 1
            self.counters["sessions_expired"] += 1
        if len(self._sessions) <= self.sessions_kept * 3 // 4:
            self._crowded.ok("wifilog usage: fewer than %d sessions are open again", self.sessions_kept)
        idle = [name for name, ap in self._aps.items() if not ap.open and now - ap.seen >= self.ap_idle_s]
        last = [name for name in idle if self._aps[name].reported]
        for name in idle:
            if not self._aps[name].reported:
                del self._aps[name]
        self.counters["aps_forgotten"] += len(idle)
        return last

    def readings(self, now: datetime, interval_s: float) -> list[Reading]:
        """One reading per AP counted; the window's counts restart at zero."""
        with self._lock:
            last = self._expire(self._clock())
            out = self._readings(now, interval_s)
            for name in last:
                del self._aps[name]
            return out

    def _readings(self, now: datetime, interval_s: float) -> list[Reading]:
        out = []
        for name, ap in sorted(self._aps.items()):
            out.append(
                Reading(
                    entity_id=f"urn:ngsi-ld:{ENTITY_TYPE}:{_UNSAFE.sub('-', name)}",
                    entity_type=ENTITY_TYPE,
                    attributes={
                        "connectedClients": Attribute(value=ap.open, type="Number"),
                        "sessionsStarted": Attribute(value=ap.started, type="Number"),
                        "inputOctets": Attribute(value=ap.input_octets, type="Number", unit="AD"),
                        "outputOctets": Attribute(value=ap.output_octets, type="Number", unit="AD"),
                        "aggregationPeriod": Attribute(value=int(interval_s), type="Number", unit="SEC"),
                    },
                    observed_at=now,
                    time_source=TimeSource.GATEWAY,
                    source=Source(adapter=self.adapter, device=name),
                )
            )
            ap.started = ap.input_octets = ap.output_octets = 0
            ap.reported = ap.open
        return out
