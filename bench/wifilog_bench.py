"""Wi-Fi log benches: RADIUS accounting answered/s with full durability, syslog lines/s parsed and stored,
search latency over N stored sessions. Prints figures; run from the worktree root:

    PYTHONPATH=. .venv/bin/python bench/wifilog_bench.py [--requests 20000] [--lines 100000] [--sessions 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.radius import AccountingRecord, build_accounting_request
from adapters.radius.server import RadiusAccountingServer
from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogStore

SECRET = b"bench-secret"
NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


def _client(port: int, datagrams: list[bytes], window: int, done: list[float]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.settimeout(10)
    t0 = time.perf_counter()
    for i in range(0, len(datagrams), window):
        chunk = datagrams[i : i + window]
        for d in chunk:
            sock.sendto(d, ("127.0.0.1", port))
        for _ in chunk:
            sock.recv(4096)
    done.append(time.perf_counter() - t0)
    sock.close()


async def bench_radius(n: int, window: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = WifiLogStore(Path(tmp))
        server = RadiusAccountingServer(store, {"127.0.0.1": SECRET}, clock=lambda: NOW)
        _, port = await server.start("127.0.0.1", 0)
        datagrams = []
        for i in range(n):
            rec = AccountingRecord(
                status_type=1 if i < n // 2 else 3,
                user_name=f"user{i % 5000}@example.jp",
                calling_station_id=f"aa-bb-cc-{(i % 5000) >> 8 & 255:02x}-{i % 5000 & 255:02x}-01",
                called_station_id="00-11-22-33-44-55:Library",
                session_id=f"S{i % (n // 2)}",
                nas_identifier="ap1",
                session_time=i if i >= n // 2 else None,
                input_octets=i,
            )
            datagrams.append(build_accounting_request(i % 256, rec, SECRET))
        done: list[float] = []
        th = threading.Thread(target=_client, args=(port, datagrams, window, done))
        th.start()
        while th.is_alive():
            await asyncio.sleep(0.05)
        await server.close()
        store.close()
        assert server.counters["stored"] == n, server.counters
        return n / done[0]


async def bench_syslog(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = WifiLogStore(Path(tmp))
        rx = SyslogReceiver(store, clock=lambda: NOW)
        await rx.start_udp("127.0.0.1", 0)
        lines = []
        for i in range(n):
            word = "CONNECTED" if i % 2 == 0 else "DISCONNECTED"
            mac = f"aa:bb:cc:{(i // 2) >> 16 & 255:02x}:{(i // 2) >> 8 & 255:02x}:{(i // 2) & 255:02x}"
            lines.append(
                f"<30>Dec  4 11:{i // 60 % 60:02d}:{i % 60:02d} ap{i // 2 % 8} hostapd: wlan0: AP-STA-{word} {mac}".encode()
            )
        t0 = time.perf_counter()
        for i, line in enumerate(lines):
            rx.line(line, "127.0.0.1")
            if i % 2000 == 1999:
                await asyncio.sleep(0)  # let the writer take batches, as the event loop would between datagrams
        await rx.flush()
        dt = time.perf_counter() - t0
        await rx.close()
        assert rx.counters["stored"] == n, rx.counters
        store.close()
        return n / dt


def bench_search(n: int, tmp: Path) -> dict[str, float]:
    store = WifiLogStore(tmp)
    rng = random.Random(1)
    start = NOW - timedelta(days=330)
    t0 = time.perf_counter()
    batch: list[SessionEvent] = []
    for i in range(n):
        t = start + timedelta(seconds=i * (330 * 86400 // n))
        batch.append(
            SessionEvent(
                nas=f"id:ap{i % 8}",
                session_id=f"S{i}",
                kind=EventKind.STOP,
                time=t + timedelta(minutes=30),
                session_time=1800,
                client_mac=":".join(f"{b:02x}" for b in rng.randbytes(6)),
                user_name=f"u{rng.randrange(20000)}@example.jp",
                framed_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            )
        )
        if len(batch) == 20000:
            store.apply(batch)
            batch = []
    store.apply(batch)
    fill = time.perf_counter() - t0
    target_mac = "aa:bb:cc:dd:ee:ff"
    probe_t = start + timedelta(days=200)
    store.apply(
        [
            SessionEvent(
                nas="id:ap1",
                session_id="target",
                kind=EventKind.START,
                time=probe_t,
                client_mac=target_mac,
                framed_ip="10.99.99.99",
            )
        ]
    )
    mac_times, ip_times = [], []
    for _ in range(7):
        t1 = time.perf_counter()
        assert len(store.search(Query(mac=target_mac))) == 1
        mac_times.append(time.perf_counter() - t1)
        t1 = time.perf_counter()
        assert (
            len(store.search(Query(ip="10.99.99.99", time_from=probe_t, time_to=probe_t + timedelta(minutes=5)))) == 1
        )
        ip_times.append(time.perf_counter() - t1)
    store.close()
    return {"fill_s": fill, "mac_ms": statistics.median(mac_times) * 1e3, "ip_ms": statistics.median(ip_times) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--window", type=int, default=256, help="outstanding requests (many NASes at once)")
    ap.add_argument("--lines", type=int, default=100000)
    ap.add_argument("--sessions", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    radius = [asyncio.run(bench_radius(args.requests, args.window)) for _ in range(args.runs)]
    print(
        f"radius accounting, synchronous=FULL: median {statistics.median(radius):,.0f} answered/s over {args.runs} runs {[round(r) for r in radius]}"
    )
    syslog = [asyncio.run(bench_syslog(args.lines)) for _ in range(args.runs)]
    print(
        f"syslog lines parsed and stored: median {statistics.median(syslog):,.0f} lines/s {[round(r) for r in syslog]}"
    )
    if args.sessions:
        with tempfile.TemporaryDirectory() as tmp:
            r = bench_search(args.sessions, Path(tmp))
        print(
            f"search over {args.sessions:,} sessions (filled in {r['fill_s']:.0f} s): by MAC {r['mac_ms']:.1f} ms, by IP and time {r['ip_ms']:.1f} ms (medians of 7)"
        )


if __name__ == "__main__":
    main()
