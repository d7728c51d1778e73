"""Two rules of the unsynchronised gateway clock, through the real receiver (UDP, SQLite):

- An RFC 3164 line has no year. While the gateway's clock is stale its year is read after the latest time the box
  knew, which is a guess: an AP whose clock reset sends "Jan  1 00:03:00", and the guess files it at the next
  New Year, up to a year ahead, kept that much past its retention. A guessed year is kept only within a day of
  max(gateway time, latest time the box knew); further ahead the line is stored at its arrival.
- Whether the gateway's clock is stale is where it started this boot (its time less the uptime), not how long it
  has run: a box without RTC set from timesyncd's saved time is as stale after 25 hours as after one. A box with an
  RTC that started after the latest time the box knew is believed from its first minute."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.device_clock import HostClock
from gateway.wifilog import Query, WifiLogStore
from gateway.wifilog.store import JST

MAC = "aa:bb:cc:dd:ee:01"


def line_3164(t: datetime) -> bytes:
    j = t.astimezone(JST)
    return f"<30>{j:%b} {j.day:2d} {j:%H:%M:%S} ap1 hostapd: wlan0: AP-STA-CONNECTED {MAC}".encode()


def line_5424(t: datetime) -> bytes:
    return f"<30>1 {t.isoformat()} ap1 hostapd - - - wlan0: AP-STA-CONNECTED {MAC}".encode()


def host(uptime: timedelta, *, rtc: bool = False) -> HostClock:
    return HostClock(synced=False, uptime_s=uptime.total_seconds(), rtc=rtc)


async def filed(
    tmp_path: Path, datagram: bytes, *, now: datetime, floor: datetime, clock: HostClock
) -> tuple[datetime, tuple[int, int]]:
    """Where the receiver files one line, and its counters (kept over the gateway's clock, replaced by arrival)."""
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, not_before=floor, clock=lambda: now, clock_synced=lambda: clock)
    _, port = await rx.start_udp("127.0.0.1", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(datagram, ("127.0.0.1", port))
    for _ in range(500):
        if rx.counters["lines"]:
            break
        await asyncio.sleep(0.01)
    await rx.flush()
    [session] = store.search(Query(mac=MAC))
    counters = (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"])
    await rx.close()
    store.close()
    return session.start, counters


async def test_a_reset_aps_new_years_line_is_stored_at_its_arrival_not_filed_at_the_next_new_year(
    tmp_path: Path,
) -> None:
    """No RTC, the clock set from timesyncd's saved time 10 minutes ago, NTP not reached yet (the reviewer's
    reset_ap.py): "Jan  1 00:03:00" would be read as 2027-01-01, 205 days ahead."""
    floor = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)
    now = floor + timedelta(minutes=10)
    reset = datetime(2026, 1, 1, 0, 3, tzinfo=JST)
    got = await filed(tmp_path, line_3164(reset), now=now, floor=floor, clock=host(timedelta(minutes=10)))
    assert got == (now, (0, 1))


async def test_a_year_less_line_within_a_day_past_the_latest_time_the_box_knew_keeps_its_guessed_year(
    tmp_path: Path,
) -> None:
    """The guess still serves a gateway at 1970: a line two hours past the saved time is the AP's right time."""
    floor = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)
    epoch = datetime(1970, 1, 1, 0, 0, 42, tzinfo=UTC)
    right = floor + timedelta(hours=2)
    got = await filed(tmp_path, line_3164(right), now=epoch, floor=floor, clock=host(timedelta(seconds=42)))
    assert got == (right, (1, 0))


async def test_a_clock_set_from_the_saved_time_without_rtc_is_stale_on_its_second_day_too(tmp_path: Path) -> None:
    """No RTC and no NTP, the box off for 10 days: at boot timesyncd set its clock to the saved time; 25 hours on,
    the AP's right time (10 days ahead) is kept, not replaced by the gateway's 10 days behind (no_rtc_day2.py)."""
    floor = datetime(2026, 11, 20, tzinfo=UTC)
    now = floor + timedelta(hours=25)
    right = now + timedelta(days=10)
    got = await filed(tmp_path, line_5424(right), now=now, floor=floor, clock=host(timedelta(hours=25)))
    assert got == (right, (1, 0))


@pytest.mark.parametrize("uptime", [timedelta(hours=1), timedelta(days=30)], ids=["1-hour", "30-days"])
async def test_a_clock_started_by_its_rtc_after_the_latest_time_the_box_knew_is_believed_from_boot(
    tmp_path: Path, uptime: timedelta
) -> None:
    """A good RTC, no NTP, rebooted 5 minutes after the clock was saved: an AP two years ahead is the wrong one,
    in the boot's first hour as after a month, or its sessions are kept two years past their retention."""
    floor = datetime(2026, 11, 20, tzinfo=UTC)
    now = floor + timedelta(minutes=5) + uptime
    got = await filed(
        tmp_path, line_5424(now + timedelta(days=730)), now=now, floor=floor, clock=host(uptime, rtc=True)
    )
    assert got == (now, (0, 1))
