"""What any host may make the syslog receiver keep is bounded (review 3, findings 2 and 3): joins waiting for
their leave are capped and forgotten a day after they arrived, and TCP connections are refused from a host not in
`senders` and past 64 open with senders empty, and a host's ninth closes its quietest (test_receiver_tcp_room.py).
Real UDP and TCP on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.wifi_syslog.adapter import WifiSyslogAdapter
from adapters.wifi_syslog.config import WifiSyslogConfig
from adapters.wifi_syslog.receiver import MAX_CONNECTIONS, SyslogReceiver
from gateway.adapter_api import AdapterContext
from gateway.wifilog import Query, WifiLogStore

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
LOGGER = "adapters.wifi_syslog.receiver"


def join(n: int, host: str = "ap1", mac: str | None = None, stamp: str = "2026-12-04T02:00:00Z") -> bytes:
    station = mac or f"02:00:00:00:{n // 256:02x}:{n % 256:02x}"
    return f"<30>1 {stamp} {host} hostapd - - - wlan0: AP-STA-CONNECTED {station}".encode()


def leave(mac: str, stamp: str, host: str = "ap1") -> bytes:
    return f"<30>1 {stamp} {host} hostapd - - - wlan0: AP-STA-DISCONNECTED {mac}".encode()


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def send_udp(rx: SyslogReceiver, port: int, lines: list[bytes]) -> None:
    before = rx.counters["lines"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n, data in enumerate(lines, 1):
            s.sendto(data, ("127.0.0.1", port))
            if n % 100 == 0:  # the socket's receive buffer holds a few hundred
                await until(lambda n=n: rx.counters["lines"] == before + n, f"{n} lines")  # type: ignore[misc]
    await until(lambda: rx.counters["lines"] == before + len(lines), f"{len(lines)} lines")
    await rx.flush()


async def test_a_join_whose_leave_was_lost_is_forgotten_after_a_day_and_the_next_is_a_session_of_its_own(
    tmp_path: Path,
) -> None:
    store = WifiLogStore(tmp_path)
    now = [NOW]
    rx = SyslogReceiver(store, clock=lambda: now[0], clock_synced=lambda: True)
    _, port = await rx.start_udp("127.0.0.1", 0)
    mac = "aa:bb:cc:dd:ee:01"
    await send_udp(rx, port, [join(0, mac=mac)])  # its leave is lost (UDP, or the AP rebooted)
    now[0] = NOW + timedelta(hours=25)
    await send_udp(rx, port, [join(0, mac=mac, stamp="2026-12-05T03:00:00Z")])
    sessions = store.search(Query(mac=mac))
    # the old session's id is not taken again by the phone's join of the next day
    assert [s.start for s in sorted(sessions, key=lambda s: s.start)] == [NOW, NOW + timedelta(hours=25)]
    assert rx.counters["open_expired"] == 1 and len(rx._open) == 1
    # that join closed the forgotten one's session (review 6), and the leave after it closes its own
    await send_udp(rx, port, [leave(mac, "2026-12-05T04:00:00Z")])
    assert [s.stop is None for s in sorted(store.search(Query(mac=mac)), key=lambda s: s.start)] == [False, False]
    await rx.close()
    store.close()


async def test_joins_waiting_for_their_leave_are_capped_the_oldest_forgotten_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True, open_kept=100)
    _, port = await rx.start_udp("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    # a stranger's flood: a new AP name and station on every line, never a leave
    await send_udp(rx, port, [join(n, host=f"ap{n:08x}") for n in range(300)])
    assert rx.counters["stored"] == 300
    assert len(rx._open) == 100 and rx.counters["open_forgotten"] == 200
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "wifi syslog: 100 joins wait for their leave, far more than a site has stations; forgetting the oldest "
            "(counted in open_forgotten): a station's next join on that AP is a session of its own. If hosts other "
            "than the APs send, list the APs in senders",
        )
    ]
    # the forgotten join's leave still closes its session (the store has it)
    await send_udp(rx, port, [leave("02:00:00:00:00:00", "2026-12-04T02:10:00Z", host="ap00000000")])
    [first] = store.search(Query(mac="02:00:00:00:00:00"))
    assert first.stop is not None
    await rx.close()
    store.close()


async def test_any_sender_is_warned_of_at_start_and_a_listed_one_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    caplog.set_level(logging.WARNING, LOGGER)
    anyone = SyslogReceiver(store, clock=lambda: NOW)
    await anyone.start_udp("127.0.0.1", 0)
    await anyone.start_tcp("127.0.0.1", 0)
    await anyone.close()
    listed = SyslogReceiver(store, clock=lambda: NOW, allowed=frozenset({"192.0.2.1"}))
    await listed.start_udp("127.0.0.1", 0)
    await listed.close()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "wifi syslog: senders is empty, so any host that reaches 127.0.0.1 may send association lines (sessions "
            "in the Wi-Fi log, usage readings); list the APs' addresses in senders",
        )
    ]
    store.close()


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the gateway closed `sock` within `timeout` (EOF or a reset), not merely left it idle."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_a_host_not_in_senders_is_closed_at_accept_without_a_line(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW, allowed=frozenset({"192.0.2.1"}))
    _, port = await rx.start_tcp("127.0.0.1", 0)
    with socket.create_connection(("127.0.0.1", port)) as stranger:
        assert await asyncio.to_thread(closed_by_peer, stranger)
    assert rx.counters["refused_sender"] == 1 and not rx._streams
    await rx.close()
    store.close()


def connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))  # all of 127/8 is this host's: many peers on loopback
    sock.connect(("127.0.0.1", port))
    return sock


async def test_tcp_connections_are_capped_in_all_and_per_host_and_the_refusal_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW)
    _, port = await rx.start_tcp("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    # ten from one host (its two quietest closed for the last two), eight from each of seven others (8 + 56 fill the
    # 64), then eight more, refused: none was quiet for idle_s
    socks = [connect(port, "127.0.0.2") for _ in range(10)]
    await until(lambda: rx.counters["idle_closed"] == 2, "two closed for room from one host")
    socks += [connect(port, f"127.0.1.{n}") for n in range(1, 8) for _ in range(8)]
    await until(lambda: len(rx._streams) == MAX_CONNECTIONS == 64, "64 open")
    socks += [connect(port, "127.0.2.1") for _ in range(8)]
    await until(lambda: rx.counters["refused_connections"] == 8, "eight more refused in all")
    closed = await asyncio.gather(*(asyncio.to_thread(closed_by_peer, s, 0.2) for s in socks))
    assert [n for n, c in enumerate(closed) if c] == [0, 1, *range(66, 74)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "wifi syslog: refusing tcp connections (counted in refused_connections), e.g. from 127.0.2.1: 64 open of at "
        "most 64 and none quiet for 600 s to close for it; set senders to the APs' addresses (then any number of "
        "them may connect, 8 connections each)"
    ]
    # the connections kept still deliver lines
    keeper = socks[2]
    keeper.sendall(join(1) + b"\n")
    await until(lambda: rx.counters["lines"] == 1, "a line over a connection kept")
    for s in socks:
        s.close()
    await until(lambda: not rx._streams, "all closed")
    await rx.close()
    store.close()


def test_max_session_hours_reaches_the_usage_counts_and_defaults_to_a_day() -> None:
    section = {"name": "w", "type": "wifi_syslog", "listen": "127.0.0.1", "max_session_hours": 12}
    adapter = WifiSyslogAdapter(WifiSyslogConfig.model_validate(section), AdapterContext(gateway_id="g", data_dir=""))
    assert adapter.config.max_session_hours == 12 and adapter.usage.session_idle_s == 12 * 3600
    default = WifiSyslogConfig.model_validate({k: v for k, v in section.items() if k != "max_session_hours"})
    assert default.max_session_hours == 24
