"""The TCP caps of the syslog receiver make room rather than refuse a listed AP (review 6): an AP whose old
connections went dead without a FIN reaching us (it rebooted, its NAT forgot) keeps its new one, its quietest old
one closed; more listed APs than max_connections all send; and nothing is closed on a timer, so a sender that
writes without checking its connection loses no line. Real TCP on loopback, many peers from 127/8."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from adapters.wifi_syslog.receiver import MAX_CONNECTIONS, SyslogReceiver
from gateway.wifilog import WifiLogStore
from tests.adapters.wifi_syslog.test_receiver_bounds import LOGGER, NOW, closed_by_peer, connect, join, until


async def test_an_ap_at_its_cap_keeps_its_new_connection_and_its_quietest_old_one_is_closed(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    rx = SyslogReceiver(
        store,
        clock=lambda: NOW,
        clock_synced=lambda: True,
        allowed=frozenset({"127.0.0.2"}),
        monotonic=lambda: mono[0],
    )
    _, port = await rx.start_tcp("127.0.0.1", 0)
    old = []
    for n in range(8):  # eight connections, each sent a line a second apart, then went dead (no FIN came)
        mono[0] = n
        old.append(connect(port, "127.0.0.2"))
        old[-1].sendall(join(n) + b"\n")
        await until(lambda n=n: rx.counters["lines"] == n + 1, f"line {n + 1}")  # type: ignore[misc]
    mono[0] = 10
    live = connect(port, "127.0.0.2")
    await until(lambda: rx.counters["idle_closed"] == 1, "the quietest closed for the new one")
    live.sendall(join(8) + b"\n")
    await until(lambda: rx.counters["lines"] == 9, "a line over the new connection")
    closed = await asyncio.gather(*(asyncio.to_thread(closed_by_peer, s, 0.2) for s in [*old, live]))
    assert closed == [True] + [False] * 8  # the first, quiet since 0 s; never the new one
    assert rx.counters["refused_connections"] == 0 and len(rx._conns) == 8
    for s in [*old, live]:
        s.close()
    await until(lambda: not rx._streams, "all closed")
    await rx.close()
    store.close()


async def test_more_listed_aps_than_max_connections_all_send(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    aps = [f"127.0.3.{n}" for n in range(1, MAX_CONNECTIONS + 7)]  # 70
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True, allowed=frozenset(aps))
    _, port = await rx.start_tcp("127.0.0.1", 0)
    socks = [connect(port, a) for a in aps]
    await until(lambda: len(rx._streams) == len(aps), "all 70 open")
    for n, s in enumerate(socks):
        s.sendall(join(n, host=f"ap{n}") + b"\n")
    await until(lambda: rx.counters["lines"] == len(aps), "a line from each")
    assert (rx.counters["refused_connections"], rx.counters["idle_closed"]) == (0, 0)
    for s in socks:
        s.close()
    await until(lambda: not rx._streams, "all closed")
    await rx.close()
    store.close()


async def test_a_sender_quiet_past_idle_s_keeps_its_connection_and_loses_no_line(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW, clock_synced=lambda: True, idle_s=0.1)
    _, port = await rx.start_tcp("127.0.0.1", 0)
    sender = connect(port, "127.0.0.2")
    sender.sendall(join(1) + b"\n")
    await until(lambda: rx.counters["lines"] == 1, "the first line")
    # quiet past idle_s (real time: a timer would close it now); the sender then writes without checking
    assert not await asyncio.to_thread(closed_by_peer, sender, 0.4)
    sender.sendall(join(2) + b"\n")
    sender.sendall(join(3) + b"\n")
    await until(lambda: rx.counters["lines"] == 3, "lines 2 and 3")
    assert rx.counters["idle_closed"] == 0
    sender.close()
    await rx.close()
    store.close()


async def test_with_senders_empty_the_cap_closes_one_quiet_for_idle_s_else_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    rx = SyslogReceiver(
        store, clock=lambda: NOW, clock_synced=lambda: True, max_connections=4, monotonic=lambda: mono[0]
    )
    _, port = await rx.start_tcp("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    socks = []
    for n in range(4):
        socks.append(connect(port, f"127.0.4.{n + 1}"))
        await until(lambda n=n: len(rx._conns) == n + 1, f"{n + 1} open")  # type: ignore[misc]
    mono[0] = 500.0
    for n in (0, 2, 3):  # all but the second send a line: the second is the quietest
        socks[n].sendall(join(n) + b"\n")
    await until(lambda: rx.counters["lines"] == 3, "three lines")
    socks.append(connect(port, "127.0.4.9"))  # none quiet for 600 s: refused
    await until(lambda: rx.counters["refused_connections"] == 1, "refused")
    mono[0] = 600.0  # the second: quiet for 600 s since its accept
    socks.append(connect(port, "127.0.4.10"))
    await until(lambda: rx.counters["idle_closed"] == 1, "the quietest closed for the new one")
    closed = await asyncio.gather(*(asyncio.to_thread(closed_by_peer, s, 0.2) for s in socks))
    assert closed == [False, True, False, False, True, False]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "wifi syslog: refusing tcp connections (counted in refused_connections), e.g. from 127.0.4.9: 4 open of at "
        "most 4 and none quiet for 600 s to close for it; set senders to the APs' addresses (then any number of them "
        "may connect, 8 connections each)"
    ]
    for s in socks:
        s.close()
    await until(lambda: not rx._streams, "all closed")
    await rx.close()
    store.close()
