"""A leave line received again (a UDP duplicate, an AP repeating it) is counted and dropped, not made a second,
zero-length session; a leave whose join the gateway never saw still makes a session of its own."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.wifilog import Query, SessionEvent, WifiLogStore

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
MAC = "aa:bb:cc:dd:ee:01"


def line(word: str, t: str) -> bytes:
    return f"<30>Dec  4 {t} ap1 hostapd: wlan0: AP-STA-{word} {MAC}".encode()


async def test_a_leave_received_twice_closes_one_session(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    seen: list[SessionEvent] = []
    # a right clock: NOW is before this checkout's files' date, which an unsynchronised kernel would take for a
    # stale clock, reading the year-less lines after that date (test_receiver_unsynced_year.py)
    rx = SyslogReceiver(store, clock=lambda: NOW, on_event=seen.append, clock_synced=lambda: True)
    _, port = await rx.start_udp("127.0.0.1", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n, data in enumerate(
            (
                line("CONNECTED", "10:00:00"),
                line("DISCONNECTED", "10:30:00"),
                line("DISCONNECTED", "10:30:00"),  # the same line again
                line("DISCONNECTED", "10:45:00"),  # a leave whose join was lost: a session of its own
            ),
            1,
        ):
            s.sendto(data, ("127.0.0.1", port))
            # each line in a batch of its own, as when the duplicate comes after the first was stored
            for _ in range(300):
                if rx.counters["events"] == n:
                    break
                await asyncio.sleep(0.005)
            await rx.flush()
    found = sorted((x.start.isoformat(), x.stop.isoformat() if x.stop else None) for x in store.search(Query(mac=MAC)))
    assert found == [
        ("2026-12-04T10:00:00+09:00", "2026-12-04T10:30:00+09:00"),
        ("2026-12-04T10:45:00+09:00", "2026-12-04T10:45:00+09:00"),
    ]
    assert rx.counters["repeated_leaves"] == 1 and rx.counters["stored"] == 3 and len(seen) == 3
    await rx.close()
    store.close()


async def test_a_leave_repeated_within_one_batch_is_dropped_too(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW)
    await rx.start_udp("127.0.0.1", 0)
    for data in (line("CONNECTED", "10:00:00"), line("DISCONNECTED", "10:30:00"), line("DISCONNECTED", "10:30:00")):
        rx.line(data, "192.0.2.7")
    await rx.flush()
    assert len(store.search(Query(mac=MAC))) == 1 and rx.counters["repeated_leaves"] == 1
    await rx.close()
    store.close()
