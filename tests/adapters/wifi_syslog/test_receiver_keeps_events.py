"""The syslog receiver loses no association event it has received: syslog over UDP has no redelivery.

A commit the store refuses for a while (another connection holding the write lock past the busy timeout,
as the nightly backup's snapshot or `edgegw wifi` maintenance can) is kept and retried in order, never
dropped, and never stored twice; while it fails, the events waiting are bounded and the ones refused past
the bound counted. A stop or reload closes the sockets, then stores what was received, within a bound,
and only then lets the store close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.wifi_syslog.adapter import WifiSyslogAdapter
from adapters.wifi_syslog.config import WifiSyslogConfig
from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.adapter_api import AdapterContext
from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogStore
from gateway.wifilog.store import DB_FILE, STORE_DIR
from tests.adapters.wifi_syslog.test_adapter_event_loop import _commit_waiting, _emit, _running, _send
from tests.adapters.wifi_syslog.test_receiver_paths import MAC, NOW, _free_port, line, until
from tests.adapters.wifi_syslog.write_lock import write_lock_held
from tests.web.test_wifi_event_loop import _open_files

pytestmark = pytest.mark.both_loops

BUSY_MS = 100  # the store's busy timeout in these tests: "longer than the busy timeout" without waiting 10 s
RECEIVER = "adapters.wifi_syslog.receiver"


def _join(n: int, t: str = "11:00:00") -> bytes:
    """A join of station n (aa:bb:cc:00:00:<n>) on ap1."""
    return f"<30>Dec  4 {t} ap1 hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:00:00:{n:02x}".encode()


def _sessions(data_dir: Path) -> list[tuple[str, bool]]:
    """(station MAC, closed) of every session in the log, by start."""
    store = WifiLogStore(data_dir)
    try:
        found = store.search(Query(time_from=NOW.replace(day=1), limit=100_000))
        return sorted((s.client_mac or "", s.stop is not None) for s in found)
    finally:
        store.close()


@contextlib.asynccontextmanager
async def _receiving(
    data_dir: Path, *, busy_ms: int | None = BUSY_MS, **options: Any
) -> AsyncIterator[tuple[WifiLogStore, SyslogReceiver]]:
    """A store on a real file and a receiver writing to it; both closed however the test ends."""
    store = WifiLogStore(data_dir)
    try:
        if busy_ms is not None:
            # the store waits 10 s for the write lock: the lock is held longer than that here, scaled down
            store._db.execute(f"PRAGMA busy_timeout = {busy_ms}")
        rx = SyslogReceiver(store, clock=lambda: NOW, **options)
        try:
            yield store, rx
        finally:
            await rx.close()
    finally:
        store.close()


@contextlib.asynccontextmanager
async def _connected(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def _stopped_at_the_end(task: asyncio.Task[None]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == RECEIVER and r.levelno == level and text in r.getMessage()
    ]


async def test_a_commit_refused_past_the_busy_timeout_is_kept_and_retried_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=RECEIVER)
    seen: list[SessionEvent] = []
    async with _receiving(tmp_path, on_event=seen.append) as (store, rx):
        _, port = await rx.start_tcp("127.0.0.1", 0)
        async with _connected(port) as (_, writer):
            with write_lock_held(store.path, at_most=10) as release:
                # the join and the leave reach the writer together: one batch, paired before its first attempt
                writer.write(line("CONNECTED") + b"\n" + line("DISCONNECTED", "11:10:00") + b"\n")
                await writer.drain()
                await until(lambda: rx.last_error is not None, "a failed commit")
                writer.write(_join(2, "11:20:00") + b"\n")  # one more while the store refuses: it queues behind
                await writer.drain()
                await until(lambda: rx.counters["events"] == 3, "three events")
                await asyncio.sleep(1.0)  # the store refuses for a while: several attempts
                assert rx.counters["stored"] == 0
                release.set()
            await until(lambda: rx.counters["stored"] == 3, "the events kept stored once the lock is free")
        assert _sessions(tmp_path) == [("aa:bb:cc:00:00:02", False), (MAC, True)]  # the join and its leave paired
        assert [(ev.client_mac, ev.kind) for ev in seen] == [
            (MAC, EventKind.START),
            (MAC, EventKind.STOP),
            ("aa:bb:cc:00:00:02", EventKind.START),
        ]
        assert rx.counters["commit_retries"] >= 2 and rx.last_error is None
    [failed] = _messages(caplog, logging.WARNING, "commit failed")  # once for the spell, not per attempt
    assert failed.startswith("wifi syslog store: commit failed, got OperationalError: database is locked; keeping ")
    assert len(_messages(caplog, logging.INFO, "store takes events again")) == 1
    assert not _messages(caplog, logging.ERROR, "lost")


async def test_an_error_after_the_store_took_a_batch_neither_loses_nor_repeats_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[SessionEvent] = []

    def on_event(ev: SessionEvent) -> None:
        seen.append(ev)
        if len(seen) == 1:
            raise RuntimeError("usage counter broken")

    async with _receiving(tmp_path, busy_ms=None, on_event=on_event) as (_, rx):
        _, port = await rx.start_udp("127.0.0.1", 0)
        _send(port, line("CONNECTED"))
        await until(lambda: len(seen) == 1, "the join handed on")
        await rx.flush()
        _send(port, line("DISCONNECTED", "11:10:00"))
        await until(lambda: rx.counters["stored"] == 2, "the leave stored")
        await rx.flush()
        assert [ev.kind for ev in seen] == [EventKind.START, EventKind.STOP]  # each handed on once
        assert _sessions(tmp_path) == [(MAC, True)]
        assert rx.counters["hand_on_failed"] == 1
        assert rx.last_error is not None and not rx.last_error.startswith("wifi syslog store: commit failed")
    assert not _messages(caplog, logging.ERROR, "lost")


async def test_a_long_failure_keeps_at_most_max_pending_and_counts_the_events_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RECEIVER)
    async with _receiving(tmp_path, max_pending=5) as (store, rx):
        _, port = await rx.start_tcp("127.0.0.1", 0)
        async with _connected(port) as (_, writer):
            with write_lock_held(store.path, at_most=10) as release:
                writer.write(b"".join(_join(n) + b"\n" for n in range(12)))
                await writer.drain()
                await until(lambda: rx.counters["events"] == 12, "twelve events")
                await asyncio.sleep(0.3)
                d = rx.diagnostics()
                assert d["waiting"] == 5 and d["refused_queue_full"] == 7 and d["stored"] == 0
                release.set()
            await until(lambda: rx.counters["stored"] == 5, "the events kept stored")
            # the first five came first and were kept; the seven after them were refused
            assert _sessions(tmp_path) == [(f"aa:bb:cc:00:00:{n:02x}", False) for n in range(5)]
            [full] = _messages(caplog, logging.WARNING, "refusing")
            assert full.startswith("wifi syslog: 5 association events wait for the store; refusing")
            writer.write(_join(20) + b"\n")  # room again: taken, and the spell's end said with its count
            await writer.drain()
            await until(lambda: rx.counters["stored"] == 6, "a later event stored")
    [room] = _messages(caplog, logging.INFO, "refused while")
    assert "7 association events refused while" in room


async def test_a_stop_while_the_store_keeps_failing_ends_within_its_bound_and_says_what_was_not_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    async with _receiving(tmp_path, drain_s=1.0) as (store, rx):
        _, port = await rx.start_udp("127.0.0.1", 0)
        with write_lock_held(store.path, at_most=10):
            for n in range(3):
                _send(port, _join(n))
            await until(lambda: rx.counters["events"] == 3 and rx.last_error is not None, "failed commits")
            stopped = loop.time()
            await rx.close()
            took = loop.time() - stopped
        assert 0.9 < took < 2.0, f"close took {took:.2f} s for a drain bound of 1 s"
        [error] = _messages(caplog, logging.ERROR, "not stored")
        assert error.startswith("wifi syslog: stopped with 3 association events not stored (")
        assert rx.counters["lost"] == 3


def _tcp_adapter(tmp_path: Path) -> tuple[WifiSyslogAdapter, int]:
    port = _free_port(socket.SOCK_STREAM)
    cfg = WifiSyslogConfig.model_validate(
        {"name": "wifi-syslog", "type": "wifi_syslog", "listen": "127.0.0.1", "udp_port": None, "tcp_port": port}
    )
    return WifiSyslogAdapter(cfg, AdapterContext(gateway_id="g", data_dir=str(tmp_path))), port


async def test_a_stop_stores_the_events_still_waiting_before_the_store_closes(tmp_path: Path) -> None:
    adapter, port, task = await _running(tmp_path)
    rx = adapter.receiver
    assert rx is not None
    db = tmp_path / STORE_DIR / DB_FILE
    async with _stopped_at_the_end(task):
        with write_lock_held(db, at_most=1.0):  # less than the busy timeout: the commit waits, then goes through
            _send(port, line("CONNECTED"))
            await _commit_waiting(adapter)
            for data in (line("DISCONNECTED", "11:10:00"), _join(2), _join(3)):
                _send(port, data)
            await until(lambda: rx.counters["events"] == 4, "the events behind the commit")
            task.cancel()  # the supervisor stops the adapter (gateway shutdown, config reload)
            with pytest.raises(asyncio.CancelledError):
                await task
    assert _open_files(db) == 0
    assert _sessions(tmp_path) == [("aa:bb:cc:00:00:02", False), ("aa:bb:cc:00:00:03", False), (MAC, True)]


async def _running_tcp(tmp_path: Path) -> tuple[WifiSyslogAdapter, int, asyncio.Task[None]]:
    adapter, port = _tcp_adapter(tmp_path)
    task = asyncio.create_task(adapter.run(_emit))
    await until(lambda: adapter.receiver is not None and adapter.receiver.listeners == 1, "listening")
    return adapter, port, task


async def test_a_stop_while_a_batch_is_in_the_writers_thread_does_not_lose_it_to_the_store_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Leaves whose joins came before a restart: the writer's thread looks each one's session up in the store,
    one at a time, when the stop comes. The store closed under that batch lost it, and without a word: the
    writer that would have said so was cancelled already."""
    adapter, port, task = await _running_tcp(tmp_path)
    rx = adapter.receiver
    assert rx is not None
    n = 3000
    leaves = b"".join(
        f"<30>Dec  4 11:10:00 ap1 hostapd: wlan0: AP-STA-DISCONNECTED aa:bb:{i >> 8:02x}:00:00:{i & 255:02x}\n".encode()
        for i in range(n)
    )
    db = tmp_path / STORE_DIR / DB_FILE
    async with _stopped_at_the_end(task), _connected(port) as (_, writer):
        with write_lock_held(db, at_most=5.0) as release:
            writer.write(line("CONNECTED") + b"\n")
            await writer.drain()
            await _commit_waiting(adapter)
            writer.write(leaves)
            await writer.drain()
            await until(lambda: rx.counters["events"] == n + 1, "the leaves queued")
            release.set()
            # the join committed, the leaves taken from the queue for the writer's thread
            await until(lambda: rx.counters["stored"] == 1 and not rx._pending, "the leaves in the thread")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not _messages(caplog, logging.ERROR, "commit failed"), "a batch met the closed store"
    assert len(_sessions(tmp_path)) == n + 1


async def test_a_stop_closes_the_connections_of_tcp_senders(tmp_path: Path) -> None:
    """An AP keeps its TCP connection open: after the stop, it must learn that nothing reads it any more."""
    adapter, port, task = await _running_tcp(tmp_path)
    async with _stopped_at_the_end(task), _connected(port) as (reader, writer):
        writer.write(line("CONNECTED") + b"\n")
        await writer.drain()
        await until(lambda: adapter.diagnostics()["stored"] == 1, "the join stored")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # the gateway closed its end
