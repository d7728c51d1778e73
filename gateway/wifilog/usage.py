"""Per access point usage for the platform: clients, sessions started and bytes, nothing personal.

The receivers call `record` for every stored session event; every `interval` the adapter emits one
`WifiAccessPointUsage` reading per AP (entity `urn:ngsi-ld:WifiAccessPointUsage:<ap>`, the AP being
its MAC or the NAS name: infrastructure, not a person). No Smart Data Model covers AP usage counts
(Device/DeviceMeasurement describe one device's measured values, not a population), so the entity is
documented in gateway/wifilog/README.md. Counters hold session keys only in memory, never a MAC.

A closed session's key is remembered (the last CLOSED_KEPT of them): a Stop the NAS sends again with a new
identifier (RFC 2866 5.2: its Acct-Delay-Time changed) or an event that arrives after its Stop adds nothing,
where it would count the session's octets a second time and open it again.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from gateway.records import Attribute, Reading, Source, TimeSource
from gateway.wifilog.sessions import EventKind, SessionEvent

__all__ = ["ENTITY_TYPE", "UsageCounter"]

ENTITY_TYPE = "WifiAccessPointUsage"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# A NAS resends an unanswered Stop for seconds to minutes (RFC 5080 2.2.1): a busy site closes a few sessions
# a second, so this is many minutes of Stops, in about 1 MB
CLOSED_KEPT = 4096


@dataclass
class _Ap:
    open: set[str] = field(default_factory=set)
    started: int = 0
    input_octets: int = 0
    output_octets: int = 0


class UsageCounter:
    """Counts per AP between two `readings` calls; the open-session set carries over."""

    def __init__(self, adapter: str, *, closed_kept: int = CLOSED_KEPT) -> None:
        self.adapter = adapter
        self.closed_kept = closed_kept
        self._aps: dict[str, _Ap] = {}
        self._octets: dict[tuple[str, str], tuple[int, int]] = {}
        self._ap_of: dict[tuple[str, str], str] = {}
        self._closed: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()  # the receivers record from their commit thread

    def record(self, ev: SessionEvent) -> None:
        with self._lock:
            self._record(ev)

    def _record(self, ev: SessionEvent) -> None:
        key = (ev.nas, ev.session_id)
        if key in self._closed:  # its Stop was counted: a resent Stop, or an event arriving after it
            return
        ap_name = self._ap_of.get(key) or ev.ap_mac or ev.nas
        self._ap_of[key] = ap_name
        ap = self._aps.setdefault(ap_name, _Ap())
        sid = f"{ev.nas}|{ev.session_id}"
        if ev.kind is EventKind.START and sid not in ap.open:
            ap.started += 1
        if ev.kind is EventKind.STOP:
            ap.open.discard(sid)
            self._ap_of.pop(key, None)
        else:
            ap.open.add(sid)
        before_in, before_out = self._octets.get(key, (0, 0))
        # counters only grow within a session (the store keeps the largest too): an Interim-Update received
        # again after a later one must not lower them, or the later one's octets would be counted twice
        now_in, now_out = max(ev.input_octets or 0, before_in), max(ev.output_octets or 0, before_out)
        ap.input_octets += now_in - before_in
        ap.output_octets += now_out - before_out
        if ev.kind is EventKind.STOP:
            self._octets.pop(key, None)
            self._closed[key] = None
            if len(self._closed) > self.closed_kept:
                self._closed.popitem(last=False)
        else:
            self._octets[key] = (now_in, now_out)

    def readings(self, now: datetime, interval_s: float) -> list[Reading]:
        """One reading per AP seen so far; the window's counts restart at zero."""
        with self._lock:
            return self._readings(now, interval_s)

    def _readings(self, now: datetime, interval_s: float) -> list[Reading]:
        out = []
        for name, ap in sorted(self._aps.items()):
            out.append(
                Reading(
                    entity_id=f"urn:ngsi-ld:{ENTITY_TYPE}:{_UNSAFE.sub('-', name)}",
                    entity_type=ENTITY_TYPE,
                    attributes={
                        "connectedClients": Attribute(value=len(ap.open), type="Number"),
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
        return out
