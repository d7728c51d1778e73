"""The `radius` adapter never waits on the event loop for the Wi-Fi log's SQLite.

Its shutdown closed the store on the loop, and close() waits under the store's lock for a commit still
running in a worker thread: stopped while a commit waited for the database (another connection holding
the write lock, a slow SD card), the adapter stalled every adapter and uplink of the gateway until the
commit ended. The commits, a NAS reset's closing of its sessions too, run in the writer's worker thread.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from adapters.radius.adapter import RadiusAdapter
from adapters.radius.attributes import AcctStatusType
from adapters.radius.config import RadiusConfig
from gateway.adapter_api import AdapterContext
from gateway.records import Reading
from gateway.secrets import SecretStore
from gateway.wifilog import Query, Session, WifiLogStore
from gateway.wifilog.store import DB_FILE, STORE_DIR
from tests.adapters.radius.test_adapter import _free_port, _listening
from tests.adapters.radius.test_server_paths import SECRET, dgram, send_and_answer
from tests.adapters.wifi_syslog.test_receiver_paths import until
from tests.adapters.wifi_syslog.write_lock import stopped_with_lag, write_lock_held
from tests.web.test_wifi_event_loop import _open_files, _store_calls_on_this_thread

HOLD = 1.0  # seconds the other connection keeps the write lock at most
MAC = "aa:bb:cc:00:00:01"  # dgram's


def _adapter(tmp_path: Path) -> tuple[RadiusAdapter, int]:
    SecretStore(tmp_path).set("radius.ap1", SECRET.decode())
    port = _free_port()
    cfg = RadiusConfig.model_validate(
        {
            "name": "wifi-radius",
            "type": "radius",
            "listen": "127.0.0.1",
            "port": port,
            "clients": [{"address": "127.0.0.1", "secret": "secret:radius.ap1"}],
        }
    )
    return RadiusAdapter(cfg, AdapterContext(gateway_id="g", data_dir=str(tmp_path))), port


async def _emit(r: Reading) -> None:
    pass


@contextmanager
def _nas() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        yield sock


async def _running(tmp_path: Path) -> tuple[RadiusAdapter, int, asyncio.Task[None]]:
    adapter, port = _adapter(tmp_path)
    task = asyncio.create_task(adapter.run(_emit))
    await _listening(adapter)
    assert adapter.server is not None and adapter.server.transport is not None, "not listening"
    return adapter, port, task


async def _commit_waiting(adapter: RadiusAdapter) -> None:
    """Until the writer's thread holds the store's lock for the request sent, waiting for the database."""
    srv = adapter.server
    assert srv is not None
    await until(lambda: srv._in_flight and not srv._pending and srv.store._lock.locked(), "commit")
    await asyncio.sleep(0.1)
    assert srv.store._lock.locked() and srv.counters["stored"] == 0, "the commit was not held: nothing tested"


def _stored_sessions(data_dir: Path) -> list[Session]:
    store = WifiLogStore(data_dir)
    try:
        return store.search(Query(mac=MAC))
    finally:
        store.close()


async def test_stopping_the_adapter_while_a_commit_waits_for_the_database_leaves_the_loop_free(
    tmp_path: Path,
) -> None:
    adapter, port, task = await _running(tmp_path)
    db = tmp_path / STORE_DIR / DB_FILE
    loop = asyncio.get_running_loop()
    with _nas() as nas, write_lock_held(db, at_most=HOLD):
        await loop.sock_sendto(nas, dgram(1, AcctStatusType.START), ("127.0.0.1", port))
        await _commit_waiting(adapter)
        closing, worst = await stopped_with_lag(task)
    assert closing > 0.3, f"the store closed {closing:.3f} s after the stop: no commit was held, nothing tested"
    assert worst < closing / 3, f"loop held {worst:.3f} s of the {closing:.3f} s the store took to close"
    assert _open_files(db) == 0  # the run ended with its store closed
    # the commit went through first (unanswered: the NAS retransmits to the next run, merged idempotently)
    assert [s.session_id for s in _stored_sessions(tmp_path)] == ["S1"]


async def test_a_second_stop_while_the_store_closes_ends_the_run_and_the_store_still_closes(tmp_path: Path) -> None:
    adapter, port, task = await _running(tmp_path)
    db = tmp_path / STORE_DIR / DB_FILE
    loop = asyncio.get_running_loop()
    with _nas() as nas, write_lock_held(db, at_most=HOLD * 5) as release:
        await loop.sock_sendto(nas, dgram(1, AcctStatusType.START), ("127.0.0.1", port))
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
    assert [s.session_id for s in _stored_sessions(tmp_path)] == ["S1"]


async def test_no_store_call_of_a_run_or_its_shutdown_is_made_on_the_event_loop(tmp_path: Path) -> None:
    """A Start, then Accounting-On (the NAS rebooted: its open sessions are closed in the store), answered."""
    calls, stop = _store_calls_on_this_thread()
    try:
        _, port, task = await _running(tmp_path)
        with _nas() as nas:
            await send_and_answer(nas, port, dgram(1, AcctStatusType.START))
            await send_and_answer(nas, port, dgram(2, AcctStatusType.ACCOUNTING_ON, sid=None))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        stop()
    assert calls == []
    [s] = _stored_sessions(tmp_path)
    assert s.stop is not None and s.terminate_cause == "NAS-Reboot"
