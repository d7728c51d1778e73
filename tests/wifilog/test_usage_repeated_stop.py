"""Per-AP usage counts a session once: a Stop the NAS sends again (RFC 2866 5.2: a new identifier when its
Acct-Delay-Time changed), or any event of the session arriving after its Stop, adds no octets and opens nothing."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from adapters.radius import AccountingRecord, build_accounting_request
from adapters.radius.server import RadiusAccountingServer
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from gateway.wifilog.usage import UsageCounter

T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


def counts(usage: UsageCounter) -> dict[str, dict[str, object]]:
    return {r.entity_id: {k: a.value for k, a in r.attributes.items()} for r in usage.readings(T0, 600)}


async def test_a_stop_resent_with_a_new_identifier_counts_its_octets_once(tmp_path: Path) -> None:
    now = [T0]
    store = WifiLogStore(tmp_path)
    usage = UsageCounter("radius-1")
    srv = RadiusAccountingServer(store, {"127.0.0.1": b"s"}, clock=lambda: now[0], on_event=usage.record)
    _, port = await srv.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    base = AccountingRecord(
        status_type=1, session_id="S1", calling_station_id="aa-bb-cc-dd-ee-ff", called_station_id="00-11-22-33-44-55"
    )
    stop = base._replace(status_type=2, session_time=600, input_octets=1_000_000, output_octets=2_000_000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        # the Start, the Stop, the Stop again 5 s later (its answer was lost), then the Start again, late
        for ident, rec, at in ((1, base, 0), (2, stop, 600), (3, stop._replace(delay_time=5), 605), (4, base, 606)):
            now[0] = T0 + timedelta(seconds=at)
            await loop.sock_sendto(sock, build_accounting_request(ident, rec, b"s"), ("127.0.0.1", port))
            await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    assert srv.counters["stored"] == 4
    [ap] = counts(usage).values()
    assert (ap["inputOctets"], ap["outputOctets"], ap["sessionsStarted"], ap["connectedClients"]) == (
        1_000_000,
        2_000_000,
        1,
        0,
    )
    await srv.close()
    store.close()


def event(session: str, kind: EventKind, octets: int | None = None) -> SessionEvent:
    return SessionEvent(
        nas="ap1", session_id=session, kind=kind, time=T0, ap_mac="00:11:22:33:44:55", input_octets=octets
    )


def test_closed_sessions_remembered_are_bounded() -> None:
    usage = UsageCounter("radius-1", closed_kept=2)
    for n in range(3):
        usage.record(event(f"S{n}", EventKind.STOP, 100))
    usage.record(event("S2", EventKind.STOP, 100))  # remembered: nothing more
    assert counts(usage)["urn:ngsi-ld:WifiAccessPointUsage:00-11-22-33-44-55"]["inputOctets"] == 300
    usage.record(event("S0", EventKind.STOP, 100))  # the oldest was forgotten: counted as a new session's
    assert counts(usage)["urn:ngsi-ld:WifiAccessPointUsage:00-11-22-33-44-55"]["inputOctets"] == 100


# a session: its Interim-Updates' octet counts (growing), then whether it ended with a Stop
sessions = st.lists(
    st.tuples(st.lists(st.integers(0, 10**6), max_size=4).map(sorted), st.booleans()), min_size=1, max_size=6
)


@given(sessions, st.data())
def test_events_received_again_add_nothing(items: list[tuple[list[int], bool]], data: st.DataObject) -> None:
    once, again = UsageCounter("radius-1"), UsageCounter("radius-1")
    for n, (octets, stopped) in enumerate(items):
        events = [event(f"S{n}", EventKind.START)] + [event(f"S{n}", EventKind.INTERIM, o) for o in octets]
        if stopped:
            events.append(event(f"S{n}", EventKind.STOP, octets[-1] if octets else None))
        for ev in events:
            once.record(ev)
        # each event received one to three times, a repeat possibly after later ones of its session
        received = [ev for ev in events for _ in range(data.draw(st.integers(1, 3)))]
        tail = data.draw(st.permutations(events))[: data.draw(st.integers(0, len(events)))]
        for ev in received + tail:
            again.record(ev)
    assert counts(again) == counts(once)


def test_an_interim_update_received_after_a_later_one_adds_nothing() -> None:
    usage = UsageCounter("radius-1")
    for octets in (100, 200, 100, 300):  # the second 100 is the first Interim-Update again, late
        usage.record(event("S1", EventKind.INTERIM, octets))
    assert counts(usage)["urn:ngsi-ld:WifiAccessPointUsage:00-11-22-33-44-55"]["inputOctets"] == 300
