"""The `wifi_syslog` adapter never waits on the event loop for the Wi-Fi log's SQLite.

Its shutdown closed the store on the loop, and close() waits under the store's lock for a commit still
running in a worker thread: stopped while a commit waited for the database (another connection holding
the write lock, a slow SD card), the adapter stalled every adapter and uplink of the gateway until the
commit ended. The commit itself, and the look-up that pairs a leave with a join seen before a restart,
run in the writer's worker thread.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from adapters.wifi_syslog.adapter import WifiSyslogAdapter
from adapters.wifi_syslog.config import WifiSyslogConfig
from gateway.adapter_api import AdapterContext
from gateway.records import Reading
from gateway.wifilog import Query, WifiLogStore
from gateway.wifilog.store import DB_FILE, STORE_DIR
from tests.adapters.wifi_syslog.test_receiver_paths import MAC, _free_port, line, until
from tests.adapters.wifi_syslog.write_lock import stopped_with_lag, write_lock_held
from tests.web.test_wifi_event_loop import _open_files, _store_calls_on_this_thread

HOLD = 1.0  # seconds the other connection keeps the write lock at most


def _adapter(tmp_path: Path) -> tuple[WifiSyslogAdapter, int]:
    port = _free_port(socket.SOCK_DGRAM)
    cfg = WifiSyslogConfig.model_validate(
        {"name": "wifi-syslog", "type": "wifi_syslog", "listen": "127.0.0.1", "udp_port": port, "tcp_port": None}
    )
    return WifiSyslogAdapter(cfg, AdapterContext(gateway_id="g", data_dir=str(tmp_path))), port


async def _emit(r: Reading) -> None:
    pass


def _send(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, ("127.0.0.1", port))


async def _running(tmp_path: Path) -> tuple[WifiSyslogAdapter, int, asyncio.Task[None]]:
    adapter, port = _adapter(tmp_path)
    task = asyncio.create_task(adapter.run(_emit))
    await until(lambda: adapter.receiver is not None and adapter.receiver.listeners == 1, "listening")
    return adapter, port, task


async def _commit_waiting(adapter: WifiSyslogAdapter) -> None:
    """Until the writer's thread holds the store's lock for the event sent, waiting for the database."""
    rx = adapter.receiver
    assert rx is not None
    await until(lambda: rx.counters["events"] == 1 and not rx._pending and rx.store._lock.locked(), "commit")
    await asyncio.sleep(0.1)
    assert rx.store._lock.locked() and rx.counters["stored"] == 0, "the commit was not held: nothing tested"


def _stored_sessions(data_dir: Path) -> list[tuple[str, bool]]:
    store = WifiLogStore(data_dir)
    try:
        return [(s.session_id, s.stop is not None) for s in store.search(Query(mac=MAC))]
    finally:
        store.close()


async def test_stopping_the_adapter_while_a_commit_waits_for_the_database_leaves_the_loop_free(
    tmp_path: Path,
) -> None:
    adapter, port, task = await _running(tmp_path)
    db = tmp_path / STORE_DIR / DB_FILE
    with write_lock_held(db, at_most=HOLD):
        _send(port, line("CONNECTED"))
        await _commit_waiting(adapter)
        closing, worst = await stopped_with_lag(task)
    assert closing > 0.3, f"the store closed {closing:.3f} s after the stop: no commit was held, nothing tested"
    assert worst < closing / 3, f"loop held {worst:.3f} s of the {closing:.3f} s the store took to close"
    assert _open_files(db) == 0  # the run ended with its store closed
    assert [closed for _, closed in _stored_sessions(tmp_path)] == [False]  # the commit went through first


async def test_a_second_stop_while_the_store_closes_ends_the_run_and_the_store_still_closes(tmp_path: Path) -> None:
    adapter, port, task = await _running(tmp_path)
    db = tmp_path / STORE_DIR / DB_FILE
    loop = asyncio.get_running_loop()
    with write_lock_held(db, at_most=HOLD * 5) as release:
        _send(port, line("CONNECTED"))
        await _commit_waiting(adapter)
        stopped = loop.time()
        task.cancel()
        await asyncio.sleep(0.1)
        assert not task.done(), "the first stop held the loop until the store had closed"
        task.cancel()  # stopped again (the supervisor giving up waiting, the gateway's shutdown)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.time() - stopped < HOLD, "the second stop waited for the commit"
        release.set()  # the database is free: the commit, then the close, finish in their threads
    await until(lambda: _open_files(db) == 0, "the adapter's store closed")
    assert [closed for _, closed in _stored_sessions(tmp_path)] == [False]


async def test_no_store_call_of_a_run_or_its_shutdown_is_made_on_the_event_loop(tmp_path: Path) -> None:
    """A join, the gateway restarting (the join is no longer in memory), then the leave: the receiver finds
    the open session in the store to pair them, in the writer's thread like the commits."""
    calls, stop = _store_calls_on_this_thread()
    try:
        adapter, port, task = await _running(tmp_path)
        _send(port, line("CONNECTED"))
        await until(lambda: adapter.diagnostics()["stored"] == 1, "the join stored")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        adapter, port, task = await _running(tmp_path)  # a new gateway process: nothing in memory
        _send(port, line("DISCONNECTED", "11:30:00"))
        await until(lambda: adapter.diagnostics()["stored"] == 1, "the leave stored")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        stop()
    assert calls == []
    assert [closed for _, closed in _stored_sessions(tmp_path)] == [True]  # the leave closed the join's session
