"""Lines that do not parse are counted, kept in `last_error` and logged: a WARNING once a spell per sender, DEBUG
after, INFO once that sender sends a line that parses 300 s after its last one that did not; no MAC or e-mail
address from the line in clear."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.wifilog import WifiLogStore

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
LOGGER = "adapters.wifi_syslog.receiver"


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def test_unparsable_lines_are_logged_once_a_spell_per_sender(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    # a right clock: NOW is before this checkout's files' date, which an unsynchronised kernel would take for a
    # stale clock, reading the year-less lines after that date (test_receiver_unsynced_year.py)
    mono = [0.0]
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True, monotonic=lambda: mono[0])
    _, port = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.DEBUG, LOGGER)
    caplog.clear()
    lines = (
        b"<30>Feb 30 10:00:00 ap1 hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:01",
        b"<30>1 2026-12-04 10:00:00 ap1 hostapd - - - wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:02",
        b"<30>Dec  4 11:00:00 ap1 hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:03",
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n, line in enumerate(lines, 1):
            if n == 3:  # a line that parses 300 s after the last one that did not ends the spell
                mono[0] = 300.0
            s.sendto(line, ("127.0.0.1", port))
            for _ in range(300):
                if rx.counters["lines"] == n:
                    break
                await asyncio.sleep(0.01)
    feb30 = (
        "wifi syslog: dropped a line from 127.0.0.1: syslog RFC 3164 timestamp: not a valid date or time in 2026 "
        '(day is out of range for month), got "Feb 30 10:00:00"'
    )
    no_zone = (
        "wifi syslog: dropped a line from 127.0.0.1: syslog RFC 5424 TIMESTAMP: must be RFC 3339 with a zone, e.g. "
        '2024-01-31T23:59:59.123+09:00, got "2026-12-04"'
    )
    assert rx.counters["unparsable"] == 2 and rx.last_error == no_zone
    assert logged(caplog) == [
        (
            "WARNING",
            feb30 + "; counted in unparsable, further ones from 127.0.0.1 at DEBUG until it sends a line that parses "
            "300 s or more after the last one",
        ),
        ("DEBUG", no_zone),
        ("INFO", "wifi syslog: 127.0.0.1 sends lines that parse again"),
    ]
    await rx.close()
    store.close()


async def test_an_e_mail_address_or_a_mac_in_an_unparsable_line_is_not_logged_in_clear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW)
    caplog.set_level(logging.DEBUG, LOGGER)
    rx.line(b"hanako@example.jp joined 3c:22:fb:12:9a:0e", "192.0.2.7")  # no <PRI>: its start quoted in the error
    assert rx.last_error == (
        "wifi syslog: dropped a line from 192.0.2.7: syslog header: message must start with <PRI> (RFC 5424 6.2.1), "
        'got "***@example.jp jo"; point the device at the gateway\'s syslog port, not a raw log stream'
    )
    rx.line(b"3c:22:fb:12:9a:0e hanako@example.jp", "192.0.2.7")
    text = " ".join(m for _, m in logged(caplog))
    assert rx.counters["unparsable"] == 2 and "hanako" not in text and "12:9a:0e" not in text
    await rx.close()
    store.close()
