"""The journal is not flooded by senders in trouble (review 3, finding 5): one AP alternating good and bad lines
is one spell, not two lines a pair, and many senders at once (more than are remembered) get at most 20 WARNINGs a
minute and then one line saying how many were left out. Real UDP from many loopback addresses."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.wifilog import WifiLogStore

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
LOGGER = "adapters.wifi_syslog.receiver"
GOOD = b"<30>Dec  4 11:00:00 ap1 hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:01"
BAD = b"<30>Feb 30 10:00:00 ap1 hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:01"


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def test_one_sender_alternating_good_and_bad_lines_is_one_spell(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True, monotonic=lambda: mono[0])
    _, port = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n in range(1000):
            mono[0] = n  # a pair a second
            s.sendto(GOOD, ("127.0.0.1", port))
            s.sendto(BAD, ("127.0.0.1", port))
            if n % 50 == 49:
                await until(lambda n=n: rx.counters["lines"] == 2 * (n + 1), f"{n + 1} pairs")  # type: ignore[misc]
        assert rx.counters["unparsable"] == 1000
        assert [level for level, _ in logged(caplog)] == ["WARNING"]
        mono[0] = 999 + 300  # five minutes without a bad line: the next good one ends the spell
        s.sendto(GOOD, ("127.0.0.1", port))
        await until(lambda: rx.counters["lines"] == 2001, "the last line")
    assert logged(caplog)[1:] == [("INFO", "wifi syslog: 127.0.0.1 sends lines that parse again")]
    await rx.close()
    store.close()


def senders(n: int) -> list[socket.socket]:
    out = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{1 + i // 250}.{1 + i % 250}", 0))  # all of 127/8 is this host's
        out.append(s)
    return out


async def test_many_senders_get_20_warnings_a_minute_then_one_line_with_how_many_were_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True, monotonic=lambda: mono[0])
    _, port = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    socks = senders(300)  # more than the 256 senders remembered: each round forgets the first ones
    try:
        for n in range(900):
            socks[n % 300].sendto(BAD, ("127.0.0.1", port))
            if n % 100 == 99:  # the socket's receive buffer holds a few hundred
                await until(lambda n=n: rx.counters["unparsable"] == n + 1, f"{n + 1} lines")  # type: ignore[misc]
        warnings = logged(caplog)
        assert len(warnings) == 20 and {level for level, _ in warnings} == {"WARNING"}
        assert warnings[0][1].startswith("wifi syslog: dropped a line from 127.0.1.1: syslog RFC 3164 timestamp")
        mono[0] = 60.0  # the minute is over: its summary, and the WARNINGs of a new minute
        socks[0].sendto(BAD, ("127.0.0.1", port))
        await until(lambda: rx.counters["unparsable"] == 901, "one more")
    finally:
        for s in socks:
            s.close()
    assert logged(caplog)[20:] == [
        (
            "WARNING",
            "wifi syslog: 300 more senders in a spell of trouble within 60 s were logged at DEBUG only (127.0.1.21, "
            "127.0.1.22, 127.0.1.23, 127.0.1.24, 127.0.1.25 and 295 more): at most 20 WARNINGs of a first one every "
            "60 s, the others at their next trouble there is room for (their trouble is counted, the latest in "
            "last_error)",
        ),
        (
            "WARNING",
            "wifi syslog: dropped a line from 127.0.1.1: syslog RFC 3164 timestamp: not a valid date or time in 2026 "
            '(day is out of range for month), got "Feb 30 10:00:00"; counted in unparsable, further ones from '
            "127.0.1.1 at DEBUG until it sends a line that parses 300 s or more after the last one",
        ),
    ]
    await rx.close()
    store.close()
