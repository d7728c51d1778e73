"""One session per (NAS, session id): accounting and association events merged, pure and idempotent.

Theory of operation. A session is built from its events in any order and any number of times: a
retransmitted or replayed event changes nothing (every rule below is a min, a max or "first value
wins unless absent"), so a request stored before a kill -9 and stored again when the NAS retransmits
leaves one identical row. Rules:

- start: the Start event's time; before a Start is seen, the earliest `time - session_time` of any event;
- last_update: the latest event time; stop: the Stop event's time (a NAS reset closes open sessions);
- octets and session time: the largest reported (counters only grow within a session);
- MAC, user, AP, SSID, framed IP, terminate cause: the first non-empty value, later ones fill gaps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

__all__ = ["EventKind", "Session", "SessionEvent", "merge"]


class EventKind(Enum):
    START = "start"
    INTERIM = "interim"
    STOP = "stop"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvent:
    """One accounting request or association line, its time already corrected by Acct-Delay-Time."""

    nas: str
    session_id: str
    kind: EventKind
    time: datetime
    source: str = "radius"
    client_mac: str | None = None
    user_name: str | None = None
    ap_mac: str | None = None
    ssid: str | None = None
    framed_ip: str | None = None
    session_time: int | None = None
    input_octets: int | None = None
    output_octets: int | None = None
    terminate_cause: str | None = None

    def __repr__(self) -> str:
        # personal data never reaches a log through a repr
        return (
            f"SessionEvent(nas={self.nas!r}, session_id={self.session_id!r}, kind={self.kind.value}, time={self.time})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """The merged record of one Wi-Fi session, as stored (encrypted) and as an inquiry returns it."""

    nas: str
    session_id: str
    source: str
    start: datetime
    last_update: datetime
    stop: datetime | None = None
    client_mac: str | None = None
    user_name: str | None = None
    ap_mac: str | None = None
    ssid: str | None = None
    framed_ip: str | None = None
    session_time: int | None = None
    input_octets: int | None = None
    output_octets: int | None = None
    terminate_cause: str | None = None

    @property
    def duration_s(self) -> int | None:
        """Seconds connected: the NAS's own count when reported, else stop - start."""
        if self.session_time is not None:
            return self.session_time
        if self.stop is not None:
            return int((self.stop - self.start).total_seconds())
        return None

    @property
    def end(self) -> datetime:
        """The last moment the session is known to have existed."""
        return self.stop or self.last_update

    def __repr__(self) -> str:
        return f"Session(nas={self.nas!r}, session_id={self.session_id!r}, start={self.start}, stop={self.stop})"

    def to_json(self) -> bytes:
        # built by hand: dataclasses.asdict deep-copies every datetime, 60 % of a store write
        d: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        for k in _TIMES:
            if d[k] is not None:
                d[k] = d[k].isoformat()
        return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Session:
        d = json.loads(data)
        for k in _TIMES:
            if d[k] is not None:
                d[k] = datetime.fromisoformat(d[k])
        return cls(**d)


_FIELDS = tuple(f.name for f in fields(Session))
_TIMES = ("start", "last_update", "stop")
_FILL = ("client_mac", "user_name", "ap_mac", "ssid", "framed_ip", "terminate_cause")
_GROW = ("session_time", "input_octets", "output_octets")


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def merge(session: Session | None, event: SessionEvent) -> Session:
    """The session after `event`; merging the same event again returns an equal session."""
    began = event.time - timedelta(seconds=event.session_time or 0)
    if session is None:
        # built in one go: the general path below costs twice as much, and most events open a session
        return Session(
            nas=event.nas,
            session_id=event.session_id,
            source=event.source,
            start=began,
            last_update=event.time,
            stop=event.time if event.kind is EventKind.STOP else None,
            client_mac=event.client_mac,
            user_name=event.user_name,
            ap_mac=event.ap_mac,
            ssid=event.ssid,
            framed_ip=event.framed_ip,
            session_time=event.session_time,
            input_octets=event.input_octets,
            output_octets=event.output_octets,
            terminate_cause=event.terminate_cause,
        )
    changes: dict[str, Any] = {"start": min(session.start, began), "last_update": max(session.last_update, event.time)}
    if event.kind is EventKind.STOP:
        changes["stop"] = event.time if session.stop is None else max(session.stop, event.time)
    for name in _FILL:
        if getattr(session, name) is None and getattr(event, name) is not None:
            changes[name] = getattr(event, name)
    for name in _GROW:
        changes[name] = _max(getattr(session, name), getattr(event, name))
    return replace(session, **changes)
