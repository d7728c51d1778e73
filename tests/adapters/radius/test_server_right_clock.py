"""A box with a good RTC whose timesyncd never reaches a server is unsynchronised for ever, its clock right. Once
that clock has run more than a day past the latest time the box knew, it is believed: a NAS's Event-Timestamp
more than a day ahead of it is ignored, so the NAS's sessions are not filed in future periods, kept past their
retention. A clock still within a day of that time (set from it at boot, no RTC) cannot judge a NAS up to three
years ahead. The rule is gateway/device_clock.py's, shared with the syslog receiver."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.radius import AccountingRecord, build_accounting_request
from adapters.radius.server import RadiusAccountingServer
from gateway.wifilog import Query, WifiLogStore
from tests.support.host_clock import unsynced

SECRET = b"nas-secret"
TRUE_NOW = datetime(2026, 12, 4, 2, 30, tzinfo=UTC)
LAST_KNOWN = datetime(2025, 6, 1, tzinfo=UTC)  # the box's files' date: its clock has run far past it
LOGGER = "adapters.radius.server"
MAC = "aa:bb:cc:dd:ee:01"
NAS = "127.0.0.1"


def start(ident: int, stamp: datetime, session: str = "S1") -> bytes:
    rec = AccountingRecord(
        status_type=1,
        session_id=session,
        calling_station_id=MAC,
        nas_identifier="ap1",
        delay_time=2,
        event_timestamp=stamp,
    )
    return build_accounting_request(ident, rec, SECRET)


async def exchange(port: int, *datagrams: bytes) -> None:
    """Each request sent from one socket and its Accounting-Response awaited: then it is stored."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((NAS, 0))
        sock.setblocking(False)
        for d in datagrams:
            await loop.sock_sendto(sock, d, (NAS, port))
            async with asyncio.timeout(5):
                await loop.sock_recv(sock, 4096)


@pytest.mark.parametrize("ahead", [timedelta(days=730), timedelta(days=2)], ids=["2-years", "2-days"])
async def test_a_nas_ahead_of_a_right_unsynchronised_clock_is_filed_at_arrival_less_the_delay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, ahead: timedelta
) -> None:
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(
        store, {NAS: SECRET}, clock=lambda: TRUE_NOW, clock_synced=unsynced, not_before=LAST_KNOWN
    )
    _, port = await srv.start(NAS, 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    await exchange(port, start(1, TRUE_NOW + ahead))
    [session] = store.search(Query(mac=MAC))
    assert session.start == TRUE_NOW - timedelta(seconds=2)
    assert store.stats()["sessions_per_period"] == {"2026-12": 1}
    assert (srv.counters["gateway_clock_unsynced"], srv.counters["device_time_ignored"]) == (0, 0)
    assert [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING] == []
    await srv.close()
    store.close()


def test_a_nas_within_a_day_ahead_of_a_right_unsynchronised_clock_is_kept(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(
        store, {NAS: SECRET}, clock=lambda: TRUE_NOW, clock_synced=unsynced, not_before=LAST_KNOWN
    )
    srv.datagram_received(start(1, TRUE_NOW + timedelta(hours=23)), (NAS, 1))
    assert [req.event_time for req, _ in srv._pending] == [TRUE_NOW + timedelta(hours=23)]
    assert srv.counters["gateway_clock_unsynced"] == 1
    store.close()


async def test_a_clock_set_from_the_latest_time_the_box_knew_still_keeps_a_nas_years_ahead(tmp_path: Path) -> None:
    """Booted without RTC at timesyncd's saved clock, two years after it was saved: the NAS is right."""
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(
        store,
        {NAS: SECRET},
        clock=lambda: LAST_KNOWN + timedelta(hours=3),
        clock_synced=unsynced,
        not_before=LAST_KNOWN,
    )
    _, port = await srv.start(NAS, 0)
    await exchange(port, start(1, TRUE_NOW))
    [session] = store.search(Query(mac=MAC))
    assert session.start == TRUE_NOW
    assert store.expire(TRUE_NOW) == [] and srv.counters["gateway_clock_unsynced"] == 1
    await srv.close()
    store.close()
