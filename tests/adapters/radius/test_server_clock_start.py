"""Whether an unsynchronised gateway clock is stale is where it started this boot (its time less the uptime), not
how long it has run (gateway/device_clock.py): a box without RTC whose clock timesyncd set from the saved time is
as far behind after 25 hours as after one, and a NAS's right Event-Timestamp ahead of it is kept. A box whose RTC
started its clock after the latest time the box knew is believed from boot: a NAS years ahead is ignored."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.radius import AccountingRecord, build_accounting_request
from adapters.radius.server import RadiusAccountingServer
from gateway.device_clock import HostClock
from gateway.wifilog import Query, WifiLogStore

SECRET = b"nas-secret"
FLOOR = datetime(2026, 11, 20, tzinfo=UTC)  # timesyncd's saved clock: the latest time the box knew
MAC = "aa:bb:cc:dd:ee:01"
NAS = "127.0.0.1"


def start(stamp: datetime) -> bytes:
    rec = AccountingRecord(
        status_type=1, session_id="S1", calling_station_id=MAC, nas_identifier="ap1", delay_time=0,
        event_timestamp=stamp,
    )  # fmt: skip
    return build_accounting_request(1, rec, SECRET)


async def filed(tmp_path: Path, stamp: datetime, *, now: datetime, clock: HostClock) -> tuple[datetime, int]:
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(store, {NAS: SECRET}, clock=lambda: now, clock_synced=lambda: clock, not_before=FLOOR)
    _, port = await srv.start(NAS, 0)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((NAS, 0))
        sock.setblocking(False)
        await loop.sock_sendto(sock, start(stamp), (NAS, port))
        async with asyncio.timeout(5):
            await loop.sock_recv(sock, 4096)  # the Accounting-Response: the request is stored
    [session] = store.search(Query(mac=MAC))
    await srv.close()
    store.close()
    return session.start, srv.counters["gateway_clock_unsynced"]


async def test_a_clock_set_from_the_saved_time_without_rtc_keeps_a_right_nas_on_its_second_day(tmp_path: Path) -> None:
    """Off for 10 days, no RTC, no NTP: booted at the saved time, 25 hours on its clock is still 10 days behind."""
    now = FLOOR + timedelta(hours=25)
    right = now + timedelta(days=10)
    clock = HostClock(synced=False, uptime_s=timedelta(hours=25).total_seconds(), rtc=False)
    assert await filed(tmp_path, right, now=now, clock=clock) == (right, 1)


@pytest.mark.parametrize("uptime", [timedelta(hours=1), timedelta(days=30)], ids=["1-hour", "30-days"])
async def test_a_clock_started_by_its_rtc_after_the_latest_time_the_box_knew_ignores_a_nas_years_ahead(
    tmp_path: Path, uptime: timedelta
) -> None:
    now = FLOOR + timedelta(minutes=5) + uptime  # rebooted 5 minutes after the clock was saved
    clock = HostClock(synced=False, uptime_s=uptime.total_seconds(), rtc=True)
    assert await filed(tmp_path, now + timedelta(days=730), now=now, clock=clock) == (now, 0)
