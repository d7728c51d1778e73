"""A device time more than a day behind or ahead of the synchronised gateway's clock is not believed: the event
is stored at its arrival time, counted and logged once a spell, so an AP booted before NTP (1970) or a clock in
the future cannot file a session in a period the next expiry erases at once, or one never erased. (While the
gateway's clock is not synchronised: test_receiver_gateway_clock.py.)"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.wifi_syslog.receiver import MAX_AHEAD, MAX_BEHIND, SyslogReceiver
from gateway.wifilog import Query, WifiLogStore

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
LOGGER = "adapters.wifi_syslog.receiver"


def line(stamp: str, mac: str) -> bytes:
    return f"<30>1 {stamp} ap1 hostapd - - - wlan0: AP-STA-CONNECTED {mac}".encode()


async def test_a_clock_in_1970_or_2099_is_stored_at_arrival_and_survives_the_expiry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True, monotonic=lambda: mono[0])
    _, _ = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.DEBUG, LOGGER)
    caplog.clear()
    rx.line(line("1970-01-01T00:00:42Z", "aa:bb:cc:dd:ee:01"), "192.0.2.7")
    rx.line(line("2099-01-01T00:00:42Z", "aa:bb:cc:dd:ee:02"), "192.0.2.7")
    # a year-less RFC 3164 January date read in December is put in the next year: four weeks ahead
    rx.line(b"<30>Jan  1 00:00:42 ap1 hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:03", "192.0.2.8")
    mono[0] = 300.0  # a right time 300 s after the last wrong one ends the spell
    rx.line(line("2026-12-03T02:00:01Z", "aa:bb:cc:dd:ee:04"), "192.0.2.7")  # just within a day: believed
    await rx.flush()
    starts = [store.search(Query(mac=f"aa:bb:cc:dd:ee:0{n}"))[0].start for n in range(1, 5)]
    assert starts == [NOW, NOW, NOW, NOW - MAX_BEHIND + timedelta(seconds=1)]
    assert store.expire(NOW) == [] and rx.counters["device_time_ignored"] == 3
    warning = (
        "wifi syslog: {} dated an association event {}, {} the gateway's clock; stored at its arrival time "
        "2026-12-04T02:00:00+00:00 instead; set the AP's clock (NTP); counted in device_time_ignored, further ones "
        "from {} at DEBUG until its clock is right again 300 s or more after the last one"
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", warning.format("192.0.2.7", "1970-01-01T00:00:42+00:00", "20791 days behind", "192.0.2.7")),
        (
            "DEBUG",
            "wifi syslog: 192.0.2.7 dated an association event 2099-01-01T00:00:42+00:00, 26325 days ahead of the "
            "gateway's clock; stored at its arrival time 2026-12-04T02:00:00+00:00 instead; set the AP's clock (NTP)",
        ),
        ("WARNING", warning.format("192.0.2.8", "2027-01-01T00:00:42+09:00", "27 days ahead of", "192.0.2.8")),
        ("INFO", "wifi syslog: 192.0.2.7 dates its association events within the bounds again"),
    ]
    await rx.close()
    store.close()


def test_the_stored_time_is_the_device_time_within_the_bounds_else_the_arrival(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True)

    @settings(max_examples=300)
    @example(NOW - MAX_BEHIND)
    @example(NOW - MAX_BEHIND - timedelta(microseconds=1))
    @example(NOW + MAX_AHEAD)
    @example(NOW + MAX_AHEAD + timedelta(microseconds=1))
    @given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
    def stored_at(device: datetime) -> None:
        ignored = rx.counters["device_time_ignored"]
        rx.line(line(device.isoformat(), "aa:bb:cc:dd:ee:01"), "192.0.2.7")
        [(event, _)] = rx._pending
        rx._pending.clear()
        within = NOW - MAX_BEHIND <= device <= NOW + MAX_AHEAD
        assert event.time == (device if within else NOW)
        assert rx.counters["device_time_ignored"] == ignored + (not within)

    stored_at()
    store.close()
