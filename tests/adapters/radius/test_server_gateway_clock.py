"""While the kernel says the gateway's clock is not synchronised (a box without RTC booted before NTP: 1970, its
image's build date), that clock cannot date a NAS's accounting: a right Event-Timestamp ahead of it is the event
time, not the wrong arrival less Acct-Delay-Time, so the boot's first sessions are not filed in a period the next
expiry erases. The same rule, and the same `gateway.device_clock.GatewayClock`, as the syslog receiver's
(tests/adapters/wifi_syslog/test_receiver_gateway_clock.py); synchronised, Event-Timestamp is ignored as before."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.radius import AccountingRecord, build_accounting_request
from adapters.radius.codec import MAX_DELAY_S
from adapters.radius.server import RadiusAccountingServer
from gateway.device_clock import MAX_LEAD, HostClock
from gateway.host import clock_synced
from gateway.wifilog import Query, WifiLogStore
from tests.support.host_clock import unsynced

SECRET = b"nas-secret"
TRUE_NOW = datetime(2026, 12, 4, 2, 30, tzinfo=UTC)  # what the NAS's clock says
EPOCH = datetime(1970, 1, 1, 0, 0, 42, tzinfo=UTC)  # the kernel clock of a box without RTC, before NTP
BUILD_DATE = datetime(2025, 6, 1, tzinfo=UTC)  # or its image's build date
LOGGER = "adapters.radius.server"
MAC = "aa:bb:cc:dd:ee:01"
NAS = "127.0.0.1"


def request(
    ident: int,
    status: int,
    stamp: datetime | None,
    *,
    session: str | None = "S1",
    delay: int | None = None,
    session_time: int | None = None,
    mac: str = MAC,
) -> bytes:
    rec = AccountingRecord(
        status_type=status,
        session_id=session,
        calling_station_id=mac,
        nas_identifier="ap1",
        delay_time=delay,
        session_time=session_time,
        event_timestamp=stamp,
    )
    return build_accounting_request(ident, rec, SECRET)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def exchange(port: int, *datagrams: bytes) -> None:
    """Each request sent from one socket and its Accounting-Response awaited: then it is stored."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((NAS, 0))
        sock.setblocking(False)
        for d in datagrams:
            await loop.sock_sendto(sock, d, (NAS, port))
            await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)


def queued(srv: RadiusAccountingServer) -> list[datetime]:
    """The event times of the requests received and not yet stored (judged in `datagram_received`)."""
    return [req.event_time for req, _ in srv._pending]


class Kernel:
    """A clock-sync source the test sets, counting how often it is asked; given an uptime, the boot's too."""

    def __init__(self, synced: bool | None) -> None:
        self.synced = synced
        self.uptime: timedelta | None = None
        self.asked = 0

    def __call__(self) -> bool | HostClock | None:
        self.asked += 1
        if self.uptime is None:
            return self.synced
        return HostClock(synced=self.synced, uptime_s=self.uptime.total_seconds(), rtc=False)


@pytest.mark.parametrize("gateway", [EPOCH, BUILD_DATE], ids=["1970", "build-date"])
async def test_an_unsynchronised_gateway_clock_files_the_nas_sessions_at_their_event_timestamp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, gateway: datetime
) -> None:
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(
        store, {NAS: SECRET}, clock=lambda: gateway, clock_synced=unsynced, not_before=BUILD_DATE
    )
    _, port = await srv.start(NAS, 0)
    caplog.set_level(logging.DEBUG, LOGGER)
    caplog.clear()
    start, stop = TRUE_NOW - timedelta(minutes=30), TRUE_NOW
    await exchange(
        port,
        request(1, 1, start, delay=2),  # Event-Timestamp is the event's time: the delay is not taken off it
        request(2, 3, start + timedelta(minutes=10), session_time=600),
        request(3, 2, stop, session_time=1800),
    )
    [session] = store.search(Query(mac=MAC))
    assert (session.start, session.stop) == (start, stop)
    assert store.expire(TRUE_NOW) == [] and len(store.search(Query(mac=MAC))) == 1  # once NTP set the clock
    assert (srv.counters["gateway_clock_unsynced"], srv.counters["device_time_ignored"]) == (3, 0)
    assert srv.diagnostics()["gateway_clock_unsynced"] == 3
    days = (start - gateway).days
    assert logged(caplog) == [
        (
            "WARNING",
            f"radius accounting: NAS 127.0.0.1 sent an Accounting-Request with Event-Timestamp "
            f"2026-12-04T02:00:00+00:00, {days} days ahead of the gateway's clock "
            f"({(gateway - timedelta(seconds=2)).isoformat()}), which the kernel says is not synchronised (NTP): "
            "kept the NAS's time, as the gateway's clock cannot judge it; check the gateway's time sync "
            "(timedatectl); counted in gateway_clock_unsynced, further ones at DEBUG until the gateway's clock is "
            "synchronised",
        ),
        (
            "DEBUG",
            f"radius accounting: NAS 127.0.0.1 sent an Accounting-Request with Event-Timestamp "
            f"2026-12-04T02:10:00+00:00, {days} days ahead of the unsynchronised gateway's clock: kept",
        ),
        (
            "DEBUG",
            f"radius accounting: NAS 127.0.0.1 sent an Accounting-Request with Event-Timestamp "
            f"2026-12-04T02:30:00+00:00, {(stop - gateway).days} days ahead of the unsynchronised gateway's clock: "
            "kept",
        ),
    ]
    await srv.close()
    store.close()


async def test_an_accounting_on_closes_the_nas_sessions_at_its_event_timestamp(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(
        store, {NAS: SECRET}, clock=lambda: EPOCH, clock_synced=unsynced, not_before=BUILD_DATE
    )
    _, port = await srv.start(NAS, 0)
    start, reboot = TRUE_NOW - timedelta(hours=1), TRUE_NOW
    await exchange(
        port,
        request(1, 1, start, session="S1", mac="aa:bb:cc:dd:ee:01"),
        request(2, 1, start, session="S2", mac="aa:bb:cc:dd:ee:02"),
        request(3, 7, reboot, session=None),  # Accounting-On: the NAS restarted, its sessions ended
    )
    sessions = [store.search(Query(mac=f"aa:bb:cc:dd:ee:0{n}"))[0] for n in (1, 2)]
    assert [(s.start, s.stop, s.terminate_cause) for s in sessions] == [(start, reboot, "NAS-Reboot")] * 2
    assert store.expire(TRUE_NOW) == []
    assert srv.counters["gateway_clock_unsynced"] == 3
    await srv.close()
    store.close()


@pytest.mark.parametrize(
    ("gateway", "nas"),
    [
        (TRUE_NOW, datetime(2022, 3, 1, tzinfo=UTC)),  # the NAS's clock back at its firmware's date
        (TRUE_NOW, TRUE_NOW - timedelta(seconds=5)),  # behind the gateway's clock by seconds
        (TRUE_NOW, TRUE_NOW + MAX_LEAD + timedelta(days=2)),  # years ahead
        (EPOCH, BUILD_DATE - timedelta(days=1)),  # ahead of the 1970 clock, behind the latest time the box knew
        (EPOCH, EPOCH + timedelta(days=30)),  # a NAS at 1970 too
    ],
    ids=["firmware-date", "seconds-behind", "years-ahead", "before-known-floor", "nas-at-1970"],
)
def test_an_event_timestamp_out_of_the_bounds_leaves_the_arrival_less_the_delay(
    tmp_path: Path, gateway: datetime, nas: datetime
) -> None:
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(
        store, {NAS: SECRET}, clock=lambda: gateway, clock_synced=unsynced, not_before=BUILD_DATE
    )
    srv.datagram_received(request(1, 1, nas, delay=3), (NAS, 1))
    assert queued(srv) == [gateway - timedelta(seconds=3)]
    assert (srv.counters["gateway_clock_unsynced"], srv.counters["device_time_ignored"]) == (0, 0)
    store.close()


@pytest.mark.parametrize("answer", [True, None], ids=["synchronised", "cannot-be-asked"])
async def test_a_synchronised_gateway_clock_ignores_event_timestamp_as_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, answer: bool | None
) -> None:
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(
        store, {NAS: SECRET}, clock=lambda: BUILD_DATE, clock_synced=lambda: answer, not_before=BUILD_DATE
    )
    _, port = await srv.start(NAS, 0)
    caplog.set_level(logging.DEBUG, LOGGER)
    caplog.clear()
    await exchange(port, request(1, 1, TRUE_NOW, delay=4), request(2, 7, TRUE_NOW, session=None))
    [session] = store.search(Query(mac=MAC))
    assert (session.start, session.stop) == (BUILD_DATE - timedelta(seconds=4), BUILD_DATE)
    assert srv.counters["gateway_clock_unsynced"] == 0
    assert logged(caplog) == []
    await srv.close()
    store.close()


def test_the_gateway_clock_synchronised_again_ends_the_spell_and_the_old_rule_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    kernel = Kernel(False)
    now = [EPOCH]
    srv = RadiusAccountingServer(
        store, {NAS: SECRET}, clock=lambda: now[0], clock_synced=kernel, sync_ttl_s=0, not_before=BUILD_DATE
    )
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    srv.datagram_received(request(1, 1, TRUE_NOW, session="S1"), (NAS, 1))
    srv.datagram_received(request(2, 1, TRUE_NOW, session="S2"), (NAS, 1))
    now[0] = TRUE_NOW  # NTP steps the clock
    kernel.synced = True
    srv.datagram_received(request(3, 1, None, session="S3"), (NAS, 1))  # no Event-Timestamp: the spell ends
    srv.datagram_received(request(4, 1, TRUE_NOW + timedelta(days=2), session="S4"), (NAS, 1))
    assert queued(srv) == [TRUE_NOW] * 4  # the NAS two days ahead is ignored: the gateway's clock is right now
    assert srv.counters["gateway_clock_unsynced"] == 2
    assert logged(caplog) == [
        (
            "WARNING",
            "radius accounting: NAS 127.0.0.1 sent an Accounting-Request with Event-Timestamp "
            "2026-12-04T02:30:00+00:00, 20791 days ahead of the gateway's clock (1970-01-01T00:00:42+00:00), which "
            "the kernel says is not synchronised (NTP): kept the NAS's time, as the gateway's clock cannot judge "
            "it; check the gateway's time sync (timedatectl); counted in gateway_clock_unsynced, further ones at "
            "DEBUG until the gateway's clock is synchronised",
        ),
        (
            "INFO",
            "radius accounting: the gateway's clock is synchronised again; Event-Timestamp is ignored and "
            "Accounting-Requests filed at their arrival less Acct-Delay-Time again (2 kept while it was not "
            "synchronised)",
        ),
    ]
    store.close()


def test_the_kernel_is_asked_only_for_an_event_timestamp_ahead_and_at_most_every_few_seconds(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    kernel = Kernel(False)
    srv = RadiusAccountingServer(
        store, {NAS: SECRET}, clock=lambda: TRUE_NOW, clock_synced=kernel, not_before=BUILD_DATE
    )
    for ident in range(200):
        srv.datagram_received(request(ident, 1, None, session=f"A{ident}"), (NAS, 1))
        srv.datagram_received(request(ident, 1, TRUE_NOW, session=f"B{ident}"), (NAS, 2))
    assert kernel.asked == 0  # no Event-Timestamp, or one not ahead of the gateway's clock: nothing to ask
    for ident in range(200):
        srv.datagram_received(request(ident, 1, TRUE_NOW + timedelta(seconds=5), session=f"C{ident}"), (NAS, 3))
    assert kernel.asked == 1 and srv.counters["gateway_clock_unsynced"] == 200
    store.close()


async def test_by_default_the_kernel_of_this_machine_decides(tmp_path: Path) -> None:
    """The real adjtimex(2): on a machine whose kernel clock is unsynchronised (this one, in a container), the NAS's
    Event-Timestamp is kept; where it is synchronised, or adjtimex is refused, the arrival time is stored."""
    answer = clock_synced()
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(store, {NAS: SECRET}, clock=lambda: EPOCH)
    _, port = await srv.start(NAS, 0)
    # past the latest time the box knew by default (its files' date): the NAS's time is now
    stamp = datetime.fromtimestamp(int(time.time()) + 1, UTC)
    await exchange(port, request(1, 1, stamp))
    [session] = store.search(Query(mac=MAC))
    assert session.start == (stamp if answer is False else EPOCH)
    assert srv.counters["gateway_clock_unsynced"] == (answer is False)
    await srv.close()
    store.close()


def test_the_event_time_is_the_event_timestamp_within_the_bounds_of_an_unsynchronised_clock_else_arrival_less_delay(
    tmp_path: Path,
) -> None:
    store = WifiLogStore(tmp_path)
    gateway, kernel = [TRUE_NOW], Kernel(None)
    srv = RadiusAccountingServer(
        store, {NAS: SECRET}, clock=lambda: gateway[0], clock_synced=kernel, sync_ttl_s=0, not_before=BUILD_DATE
    )

    @settings(max_examples=300)
    @example(TRUE_NOW, False, TRUE_NOW + MAX_LEAD, 0, timedelta(0))
    @example(TRUE_NOW, False, TRUE_NOW + MAX_LEAD + timedelta(seconds=1), 0, timedelta(0))
    @example(TRUE_NOW, False, TRUE_NOW + timedelta(seconds=1), MAX_DELAY_S + 1, timedelta(0))
    @example(TRUE_NOW, False, TRUE_NOW - timedelta(seconds=5), 10, timedelta(0))
    @example(EPOCH, False, BUILD_DATE, 0, timedelta(0))
    @example(EPOCH, False, BUILD_DATE + timedelta(seconds=1), None, timedelta(0))
    @example(BUILD_DATE + timedelta(hours=1), False, BUILD_DATE + timedelta(hours=1) + MAX_LEAD, None, timedelta(0))
    @example(BUILD_DATE + timedelta(days=1), False, BUILD_DATE + timedelta(days=2, seconds=1), None, timedelta(0))
    @example(TRUE_NOW, False, TRUE_NOW + timedelta(days=1), None, timedelta(0))
    @example(BUILD_DATE + timedelta(hours=25), False, BUILD_DATE + timedelta(days=11), None, timedelta(hours=25))
    @given(
        st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
        st.sampled_from([True, False, None]),
        st.none() | st.integers(0, 2**32 - 1).map(lambda s: datetime.fromtimestamp(s, UTC)),
        st.none() | st.integers(0, 2**32 - 1),
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1000)),
    )
    def filed_at(at: datetime, synced: bool | None, nas: datetime | None, delay: int | None, uptime: timedelta) -> None:
        gateway[0], kernel.synced, kernel.uptime = at, synced, uptime
        before = dict(srv.counters)
        srv.datagram_received(request(1, 1, nas, delay=delay), (NAS, 1))
        [event_time] = queued(srv)
        srv._pending.clear()
        srv._in_flight.clear()
        believed = delay is not None and delay <= MAX_DELAY_S
        gateways = at - timedelta(seconds=delay) if believed and delay else at
        floor = max(BUILD_DATE, gateways)
        # a clock that started this boot within a day of the latest time the box knew (no RTC) was set from it: it
        # cannot judge a NAS years ahead, however long it has run; one started later is believed, and a NAS more
        # than a day ahead of it is wrong. The server's time for the request is arrival less the delay
        stale = gateways - uptime < BUILD_DATE + timedelta(days=1)
        lead = MAX_LEAD if stale else timedelta(days=1)
        kept = nas is not None and synced is False and floor < nas <= floor + lead
        assert event_time == (nas if kept else gateways)
        assert srv.counters["gateway_clock_unsynced"] - before["gateway_clock_unsynced"] == kept
        # an ignored delay is reported only where the request is filed at its arrival time
        ignored = delay is not None and not believed and not kept
        assert srv.counters["device_time_ignored"] - before["device_time_ignored"] == ignored

    filed_at()
    store.close()
