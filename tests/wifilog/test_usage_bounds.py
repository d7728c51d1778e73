"""Per-AP usage keeps nothing for ever (review 3, finding 2): a session whose Stop never came is forgotten after a
day without an event (connectedClients does not drift upward), an AP with no session and no event for a day gets no
more readings, and at most `aps_kept` APs and `sessions_kept` sessions are counted, the refusal logged once. The
receivers hand every stored event on: end to end through real UDP in tests/adapters/wifi_syslog/."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from gateway.wifilog import EventKind, SessionEvent
from gateway.wifilog.usage import APS_KEPT, SESSION_IDLE_S, SESSIONS_KEPT, UsageCounter

T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
HOUR = 3600.0
LOGGER = "gateway.wifilog.usage"


def event(ap: str, session: str, kind: EventKind = EventKind.START) -> SessionEvent:
    return SessionEvent(nas=f"syslog:{ap}", session_id=session, kind=kind, time=T0)


def clients(usage: UsageCounter) -> dict[str, object]:
    return {r.source.device: r.attributes["connectedClients"].value for r in usage.readings(T0, 600)}


def test_a_session_whose_stop_was_lost_is_forgotten_after_a_day_and_its_idle_ap_with_it() -> None:
    now = [0.0]
    usage = UsageCounter("wifi", clock=lambda: now[0])
    usage.record(event("ap1", "S1"))  # its Stop is lost
    now[0] = 20 * HOUR
    usage.record(event("ap2", "S2"))
    assert clients(usage) == {"syslog:ap1": 1, "syslog:ap2": 1}
    now[0] = SESSION_IDLE_S
    # ap1: no session left, no event for a day: one last reading says it has no client, then none (review 6)
    assert clients(usage) == {"syslog:ap1": 0, "syslog:ap2": 1}
    assert clients(usage) == {"syslog:ap2": 1}
    now[0] = 30 * HOUR
    usage.record(event("ap2", "S4"))
    usage.record(event("ap2", "S4", EventKind.STOP))
    now[0] = SESSION_IDLE_S + 20 * HOUR
    assert clients(usage) == {"syslog:ap2": 0}  # S2 idle for a day; ap2 had an event 14 h ago
    assert usage.diagnostics() == {
        "access_points": 1,
        "open_sessions": 0,
        "refused_aps": 0,
        "sessions_expired": 2,
        "sessions_forgotten": 0,
        "aps_forgotten": 1,
    }
    usage.record(event("ap1", "S3"))  # back, with its next event
    assert clients(usage) == {"syslog:ap1": 1, "syslog:ap2": 0}


def test_a_flood_of_invented_aps_is_capped_and_the_refusal_said_once_a_spell(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    now = [0.0]
    usage = UsageCounter("wifi", clock=lambda: now[0])
    for n in range(APS_KEPT + 500):
        usage.record(event(f"ap{n:08x}", f"S{n}"))
    assert len(usage.readings(T0, 600)) == APS_KEPT == 1024
    assert usage.counters["refused_aps"] == 500
    warnings = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert warnings == [
        (
            "WARNING",
            f"wifilog usage: 1024 access points are counted; events of others, e.g. syslog:ap{APS_KEPT:08x}, are not "
            "(counted in refused_aps) until one has had no session nor event for 24 h; if hosts other than the APs "
            "send syslog, list the APs in the adapter's senders",
        )
    ]
    caplog.clear()
    now[0] = SESSION_IDLE_S  # the invented ones' sessions and then they are forgotten, after one last reading of 0
    assert [r.attributes["connectedClients"].value for r in usage.readings(T0, 600)] == [0] * APS_KEPT
    assert usage.readings(T0, 600) == []  # room again
    usage.record(event("ap-real", "S-real"))
    assert clients(usage) == {"syslog:ap-real": 1}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "wifilog usage: counting new access points again (500 events refused so far)")
    ]


def test_open_sessions_are_capped_the_least_recently_seen_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    usage = UsageCounter("wifi", clock=lambda: 0.0)
    for n in range(SESSIONS_KEPT + 10):  # invented stations on one AP, never a Stop
        usage.record(event("ap1", f"S{n}"))
    usage.record(event("ap1", "S10", EventKind.STOP))  # one kept ends as usual
    usage.record(event("ap1", "S0", EventKind.STOP))  # one forgotten: its Stop takes nothing more away
    assert clients(usage) == {"syslog:ap1": SESSIONS_KEPT - 1}
    assert usage.counters["sessions_forgotten"] == 10
    assert [r.getMessage() for r in caplog.records] == [
        "wifilog usage: 32768 sessions are open; forgetting the least recently seen (counted in sessions_forgotten, "
        "not in connectedClients)"
    ]
