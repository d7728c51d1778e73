"""An AP forgotten in the same pass as its sessions gets one last reading saying so (review 6, finding 2): syslog has
no Interim-Update, so its sessions and the AP fall idle together, and without it the platform keeps the AP's last
count, connectedClients 3 for an AP no one uses, for ever."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.wifilog import EventKind, SessionEvent
from gateway.wifilog.usage import UsageCounter

T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


def start(ap: str, session: str) -> SessionEvent:
    return SessionEvent(nas=f"syslog:{ap}", session_id=session, kind=EventKind.START, time=T0, source="syslog")


def test_an_ap_whose_sessions_are_forgotten_with_it_gets_one_last_reading_of_zero_clients() -> None:
    now = [0.0]
    usage = UsageCounter("wifi", clock=lambda: now[0])
    for n in range(3):  # three kiosks join; their leaves are lost, and syslog sends nothing in between
        usage.record(start("ap1", f"s{n}"))
    usage.record(start("ap2", "s9"))
    last: dict[str, tuple[int, object]] = {}
    counts: list[tuple[int, object]] = []
    for t in range(600, 2 * 86400, 600):  # a reading every 10 minutes for two days
        now[0] = float(t)
        if t == 43_200:
            usage.record(SessionEvent(nas="syslog:ap2", session_id="s9", kind=EventKind.STOP, time=T0))
        for r in usage.readings(T0, 600):
            last[r.source.device] = (t, r.attributes["connectedClients"].value)
            if r.source.device == "syslog:ap1":
                counts.append((t, r.attributes["connectedClients"].value))
    # ap1: 3 until its sessions are a day idle, then one reading of 0 in that same pass, then none
    assert counts[-2:] == [(86_400 - 600, 3), (86_400, 0)]
    assert last["syslog:ap1"] == (86_400, 0)
    # ap2 had said 0 already (its Stop came): forgotten a day after that event, without another reading
    assert last["syslog:ap2"] == (43_200 + 86_400 - 600, 0)
    assert usage.diagnostics() == {
        "access_points": 0,
        "open_sessions": 0,
        "refused_aps": 0,
        "sessions_expired": 3,
        "sessions_forgotten": 0,
        "aps_forgotten": 2,
    }
    assert usage.readings(T0, 600) == []
    usage.record(start("ap1", "s4"))  # back with its next event
    assert [r.attributes["connectedClients"].value for r in usage.readings(T0, 600)] == [1]
