"""RFC 3164 lines (every vendor pattern's form) carry no year. While the kernel says the gateway's clock is not
synchronised and that clock is evidently stale (1970, its build date, the latest time the box knew), the year is
not the gateway's: it is the one putting the line first after the latest time the box knew, so a right December
line is filed in its own period and survives the first expiry after NTP, not read as 1969 or the build's year
and replaced by the wrong arrival time. That year is a guess, so the line is kept only within a day past that
time (tests/adapters/wifi_syslog/test_receiver_clock_start.py has an AP reset to January 1). A gateway clock that
started this boot after the latest time the box knew (a good RTC, no NTP) is believed: an AP years ahead of it no
longer files sessions in future periods."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.wifilog import Query, WifiLogStore
from gateway.wifilog.store import JST
from tests.support.host_clock import unsynced

TRUE_NOW = datetime(2026, 12, 4, 2, 30, tzinfo=UTC)  # what the APs' clocks say
EPOCH = datetime(1970, 1, 1, 0, 0, 42, tzinfo=UTC)  # the kernel clock of a box without RTC, before NTP
BUILD_DATE = datetime(2026, 9, 1, tzinfo=UTC)  # its image's build date, the latest time the box knew
SAVED = datetime(2026, 12, 4, tzinfo=UTC)  # timesyncd's saved clock, hours before the APs' time
LOGGER = "adapters.wifi_syslog.receiver"
MAC = "aa:bb:cc:dd:ee:01"


def line_3164(t: datetime, mac: str = MAC, kind: str = "CONNECTED") -> bytes:
    """hostapd through OpenWrt's logd: local (JST) time without year or zone."""
    j = t.astimezone(JST)
    return f"<30>{j:%b} {j.day:2d} {j:%H:%M:%S} ap1 hostapd: wlan0: AP-STA-{kind} {mac}".encode()


def line_5424(t: datetime, mac: str = MAC) -> bytes:
    return f"<30>1 {t.isoformat()} ap1 hostapd - - - wlan0: AP-STA-CONNECTED {mac}".encode()


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def send_udp(rx: SyslogReceiver, port: int, *datagrams: bytes) -> None:
    lines = rx.counters["lines"] + len(datagrams)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
    for _ in range(500):
        if rx.counters["lines"] == lines:
            break
        await asyncio.sleep(0.01)
    await rx.flush()


@pytest.mark.parametrize("gateway", [EPOCH, BUILD_DATE], ids=["1970", "build-date"])
async def test_rfc3164_lines_to_a_stale_unsynchronised_gateway_are_filed_at_the_aps_time_and_survive_expiry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, gateway: datetime
) -> None:
    """Rebooted hours after timesyncd saved the clock, which has not run yet: the clock is at 1970 or the build
    date, and the APs' right time within a day past the saved time."""
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, not_before=SAVED, clock=lambda: gateway, clock_synced=unsynced)
    _, port = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    join, leave = TRUE_NOW - timedelta(minutes=30), TRUE_NOW
    await send_udp(rx, port, line_3164(join), line_3164(leave, kind="DISCONNECTED"))
    [session] = store.search(Query(mac=MAC))
    assert (session.start, session.stop) == (join, leave)
    assert store.stats()["sessions_per_period"] == {"2026-12": 1}
    assert store.expire(TRUE_NOW) == [] and len(store.search(Query(mac=MAC))) == 1  # once NTP set the clock
    assert (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"]) == (2, 0)
    assert logged(caplog) == [
        (
            "WARNING",
            f"wifi syslog: 127.0.0.1 dated an association event 2026-12-04T11:00:00+09:00, "
            f"{(join - gateway).days} days ahead of the gateway's clock ({gateway.isoformat()}), which the kernel "
            "says is not synchronised (NTP): kept the AP's time, as the gateway's clock cannot judge it; check the "
            "gateway's time sync (timedatectl); counted in gateway_clock_unsynced, further ones at DEBUG until the "
            "gateway's clock is synchronised",
        )
    ]
    await rx.close()
    store.close()


# 23:50 JST on New Year's Eve: timesyncd saved the clock then (the latest time the box knew)
NEW_YEARS_EVE = datetime(2026, 12, 31, 23, 50, tzinfo=JST)


@pytest.mark.parametrize("gateway", [EPOCH, datetime(2026, 6, 1, tzinfo=UTC)], ids=["1970", "build-date"])
def test_a_january_line_after_the_latest_time_the_box_knew_in_december_is_next_years(
    tmp_path: Path, gateway: datetime
) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, not_before=NEW_YEARS_EVE, clock=lambda: gateway, clock_synced=unsynced)
    after_midnight = datetime(2027, 1, 1, 0, 10, tzinfo=JST)
    before_midnight = datetime(2026, 12, 31, 23, 55, tzinfo=JST)
    rx.line(line_3164(after_midnight), "192.0.2.7")
    rx.line(line_3164(before_midnight, "aa:bb:cc:dd:ee:02"), "192.0.2.7")
    assert [event.time for event, _ in rx._pending] == [after_midnight, before_midnight]
    assert (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"]) == (2, 0)
    store.close()


def test_a_line_from_just_before_the_latest_time_the_box_knew_stays_in_its_year(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Up to a day before the latest time the box knew is a line delayed (a relay's queue), of that year: read as
    next year's it would be filed, and kept, a year ahead. Behind that time, it is replaced by the arrival time.
    Further back it reads as the next year's, a guess (the box off for most of a year, or the AP's clock reset):
    a year ahead, it too is replaced by the arrival time."""
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, not_before=NEW_YEARS_EVE, clock=lambda: EPOCH, clock_synced=unsynced)
    caplog.set_level(logging.INFO, LOGGER)
    rx.line(line_3164(NEW_YEARS_EVE - timedelta(minutes=10)), "192.0.2.7")
    rx.line(line_3164(NEW_YEARS_EVE - timedelta(days=2), "aa:bb:cc:dd:ee:02"), "192.0.2.8")
    assert [event.time for event, _ in rx._pending] == [EPOCH, EPOCH]
    assert (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"]) == (0, 2)
    assert logged(caplog)[0][1].startswith(
        "wifi syslog: 192.0.2.7 dated an association event 2026-12-31T23:40:00+09:00, 20818 days ahead of the "
        "gateway's clock; stored at its arrival time 1970-01-01T00:00:42+00:00 instead; "
    )
    store.close()


@pytest.mark.parametrize("ahead", [timedelta(days=730), timedelta(days=2)], ids=["2-years", "2-days"])
async def test_an_ap_ahead_of_a_right_unsynchronised_clock_is_filed_at_arrival(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, ahead: timedelta
) -> None:
    """A library box with a good RTC whose timesyncd never reaches a server is unsynchronised for ever; its clock
    has run past the latest time the box knew, so an AP ahead of it is the wrong one: filed two years ahead, the
    session would be kept two years past its retention."""
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(
        store, not_before=datetime(2025, 6, 1, tzinfo=UTC), clock=lambda: TRUE_NOW, clock_synced=unsynced
    )
    _, port = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    await send_udp(rx, port, line_5424(TRUE_NOW + ahead))
    [session] = store.search(Query(mac=MAC))
    assert session.start == TRUE_NOW
    assert store.stats()["sessions_per_period"] == {"2026-12": 1}
    assert (rx.counters["gateway_clock_unsynced"], rx.counters["device_time_ignored"]) == (0, 1)
    assert logged(caplog) == [
        (
            "WARNING",
            f"wifi syslog: 127.0.0.1 dated an association event {(TRUE_NOW + ahead).isoformat()}, {ahead.days} days "
            "ahead of the gateway's clock; stored at its arrival time 2026-12-04T02:30:00+00:00 instead; set the "
            "AP's clock (NTP); the gateway's clock is not synchronised (NTP) either, but started this boot after "
            "the latest time the box knew (2025-06-01T00:00:00+00:00), so it is believed: if it is the wrong one, "
            "check the gateway's time sync (timedatectl); counted in device_time_ignored, further ones from "
            "127.0.0.1 at DEBUG until its clock is right again 300 s or more after the last one",
        )
    ]
    await rx.close()
    store.close()


def test_an_ap_before_the_latest_time_the_box_knew_is_replaced_and_both_clocks_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, not_before=BUILD_DATE, clock=lambda: EPOCH, clock_synced=unsynced)
    caplog.set_level(logging.INFO, LOGGER)
    rx.line(line_5424(datetime(2022, 3, 1, tzinfo=UTC)), "192.0.2.7")
    assert [event.time for event, _ in rx._pending] == [EPOCH]
    assert logged(caplog)[0][1] == (
        "wifi syslog: 192.0.2.7 dated an association event 2022-03-01T00:00:00+00:00, 19051 days ahead of the "
        "gateway's clock; stored at its arrival time 1970-01-01T00:00:42+00:00 instead; set the AP's clock (NTP); "
        "the gateway's clock is not synchronised (NTP) either: check its time sync (timedatectl), though no device "
        "time before the latest time the box knew (2026-09-01T00:00:00+00:00), more than 3 years past it, or a "
        "year-less (RFC 3164) one more than a day past it is believed; counted in device_time_ignored, further "
        "ones from 192.0.2.7 at DEBUG until its clock is right again 300 s or more after the last one"
    )
    store.close()
