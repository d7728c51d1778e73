"""A real AP's trouble that begins while a flood has spent the WARNINGs of the minute is still named (review 6): its
spell began at DEBUG, and its next trouble after the minute has its WARNING, after a summary naming the first
senders left out. Real UDP from many loopback addresses; the monotonic clock injected."""

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
BAD = b"<30>Feb 30 10:00:00 ap1 hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:01"


def dated_wrong(n: int) -> bytes:  # three days behind the gateway: an AP that lost NTP
    return f"<30>1 2026-12-01T02:00:00Z ap7 hostapd - - - wlan0: AP-STA-CONNECTED aa:bb:cc:dd:{n // 256:02x}:{n % 256:02x}".encode()


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_an_ap_whose_trouble_began_in_a_spent_minute_is_warned_of_in_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True, monotonic=lambda: mono[0])
    _, port = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    flood = []
    try:
        for n in range(25):  # a misdirected stream from 25 addresses spends the minute's 20 WARNINGs
            flood.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            flood[-1].bind((f"127.0.5.{n + 1}", 0))
            flood[-1].sendto(BAD, ("127.0.0.1", port))
        await until(lambda: rx.counters["unparsable"] == 25, "the flood")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ap:
            ap.bind(("127.0.0.7", 0))
            for n in range(240):  # two hours, a line every 30 s from one second after the flood
                mono[0] = 1 + 30 * n
                ap.sendto(dated_wrong(n), ("127.0.0.1", port))
                await until(lambda n=n: rx.counters["device_time_ignored"] == n + 1, f"line {n + 1}")  # type: ignore[misc]
    finally:
        for s in flood:
            s.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 22
    assert warnings[20:] == [
        "wifi syslog: 6 more senders in a spell of trouble within 60 s were logged at DEBUG only (127.0.5.21, "
        "127.0.5.22, 127.0.5.23, 127.0.5.24, 127.0.5.25 and 1 more): at most 20 WARNINGs of a first one every 60 s, "
        "the others at their next trouble there is room for (their trouble is counted, the latest in last_error)",
        # its third line, at 61 s: the first after the minute
        "wifi syslog: 127.0.0.7 dated an association event 2026-12-01T02:00:00+00:00, 3 days behind the gateway's "
        "clock; stored at its arrival time 2026-12-04T02:00:00+00:00 instead; set the AP's clock (NTP); counted in "
        "device_time_ignored, further ones from 127.0.0.7 at DEBUG until its clock is right again 300 s or more "
        "after the last one",
    ]
    await rx.close()
    store.close()
