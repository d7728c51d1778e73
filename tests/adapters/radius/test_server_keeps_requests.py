"""The accounting receiver keeps the Accounting-Requests a busy store refuses, and answers them once stored.

A NAS retransmits an unanswered request only a few times over tens of seconds (RFC 2866 5.2, RFC 5080
2.2.1: typically 3 to 5 tries), then drops or queues the record depending on the vendor; the nightly
backup's snapshot or `edgegw wifi` maintenance can hold the Wi-Fi log's write lock longer than that. A
commit refused for a while is kept first in line and retried, in order, and each request is answered once
stored, retransmitted or not; while it fails, the requests waiting are bounded and the ones left unanswered
past the bound counted. A stop stores and answers what is waiting, within a bound, before the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.radius.attributes import AcctStatusType
from adapters.radius.packet import decode_accounting_response
from adapters.radius.server import RadiusAccountingServer
from gateway.wifilog import EventKind, Query, Session, SessionEvent, WifiLogStore
from gateway.wifilog.store import DB_FILE, STORE_DIR
from tests.adapters.radius.test_adapter_event_loop import _commit_waiting, _nas, _running
from tests.adapters.radius.test_server_paths import NOW, SECRET, dgram
from tests.adapters.wifi_syslog.test_receiver_paths import until
from tests.adapters.wifi_syslog.write_lock import write_lock_held
from tests.web.test_wifi_event_loop import _open_files

pytestmark = pytest.mark.both_loops

BUSY_MS = 100  # the store's busy timeout in these tests: "longer than the busy timeout" without waiting 10 s
SERVER = "adapters.radius.server"
START, STOP = AcctStatusType.START, AcctStatusType.STOP
MAC1, MAC2 = "aa:bb:cc:00:00:01", "aa:bb:cc:00:00:02"


@contextlib.asynccontextmanager
async def _serving(
    data_dir: Path, *, busy_ms: int | None = BUSY_MS, **options: Any
) -> AsyncIterator[tuple[WifiLogStore, RadiusAccountingServer, int]]:
    """A store on a real file and a receiver on loopback writing to it; both closed however the test ends."""
    store = WifiLogStore(data_dir)
    try:
        if busy_ms is not None:
            # the store waits 10 s for the write lock: the lock is held longer than that here, scaled down
            store._db.execute(f"PRAGMA busy_timeout = {busy_ms}")
        srv = RadiusAccountingServer(store, {"127.0.0.1": SECRET}, clock=lambda: NOW, **options)
        try:
            _, port = await srv.start("127.0.0.1", 0)
            yield store, srv, port
        finally:
            await srv.close()
    finally:
        store.close()


async def _answers(nas: socket.socket, sent: dict[int, bytes], *, within: float = 3.0) -> list[int]:
    """The identifiers of the Accounting-Responses that reach `nas` within `within` s of quiet, in order;
    each checked against its request (`sent`: identifier -> datagram) with the shared secret."""
    loop = asyncio.get_running_loop()
    got: list[int] = []
    with contextlib.suppress(TimeoutError):
        while True:
            data = await asyncio.wait_for(loop.sock_recv(nas, 4096), within)
            decode_accounting_response(data, SECRET, sent[data[1]][4:20])
            got.append(data[1])
            within = 0.3  # after the first, the rest follow at once
    return got


async def _nas_sends(nas: socket.socket, port: int, data: bytes, *, tries: int, timeout: float) -> bytes | None:
    """A NAS as RFC 5080 2.2.1 has it: the same packet again after each `timeout` without an answer, `tries`
    times in all, then it gives up (None)."""
    loop = asyncio.get_running_loop()
    for _ in range(tries):
        nas.sendto(data, ("127.0.0.1", port))
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(loop.sock_recv(nas, 4096), timeout)
    return None


def _sessions(store: WifiLogStore) -> list[Session]:
    return sorted(store.search(Query(time_from=NOW.replace(day=1), limit=100)), key=lambda s: s.session_id)


def _messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == SERVER and r.levelno == level and text in r.getMessage()
    ]


async def test_requests_a_busy_store_refuses_are_kept_and_answered_once_stored_without_a_retransmission(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=SERVER)
    seen: list[SessionEvent] = []
    sent = {1: dgram(1, START), 2: dgram(2, STOP), 3: dgram(3, START, sid="S2", mac=MAC2)}
    async with _serving(tmp_path, on_event=seen.append) as (store, srv, port):
        with _nas() as nas:
            with write_lock_held(store.path, at_most=10) as release:
                nas.sendto(sent[1], ("127.0.0.1", port))
                await until(lambda: srv.last_error is not None, "a refused commit")
                # two more behind it, and the NAS's retransmission of the first: counted, not queued again
                for data in (sent[2], sent[3], sent[1]):
                    nas.sendto(data, ("127.0.0.1", port))
                await asyncio.sleep(1.0)  # the store refuses for a while: several attempts
                assert srv.counters["answered"] == 0 and srv.counters["stored"] == 0
                release.set()
            # the lock is free and the NAS sends nothing more: each request is answered once, in order
            assert await _answers(nas, sent) == [1, 2, 3]
        s1, s2 = _sessions(store)
        assert (s1.session_id, s1.stop, s2.session_id, s2.stop) == ("S1", NOW, "S2", None)
        assert [(ev.session_id, ev.kind) for ev in seen] == [
            ("S1", EventKind.START),
            ("S1", EventKind.STOP),
            ("S2", EventKind.START),
        ]
        c = srv.counters
        assert (c["stored"], c["answered"], c["retransmissions"], c["batches"]) == (3, 3, 1, 1)
        assert c["commit_retries"] >= 2 and srv.last_error is None and not srv._in_flight
        assert srv.diagnostics()["waiting"] == 0
    [failed] = _messages(caplog, logging.WARNING, "commit failed")  # once for the spell, not per attempt
    assert failed.startswith(
        "radius accounting store: commit failed, got OperationalError: database is locked; keeping "
    )
    assert len(_messages(caplog, logging.INFO, "takes requests again")) == 1
    assert not _messages(caplog, logging.ERROR, "unanswered")


async def test_a_nas_that_gives_up_while_the_lock_is_held_still_has_its_record_stored_and_answered(
    tmp_path: Path,
) -> None:
    """Four tries 0.2 s apart against a lock held for longer (seconds against a real backup's minutes)."""
    start = dgram(1, START)
    async with _serving(tmp_path) as (store, srv, port):
        with _nas() as nas:
            with write_lock_held(store.path, at_most=10):
                assert await _nas_sends(nas, port, start, tries=4, timeout=0.2) is None  # the NAS gave up
                assert srv.counters["stored"] == 0
            # nothing is sent again: the record the NAS gave up on is stored all the same, and answered
            assert await _answers(nas, {1: start}) == [1]
        assert [s.session_id for s in _sessions(store)] == ["S1"]
        assert srv.counters["retransmissions"] == 3 and srv.counters["stored"] == 1


async def test_a_batch_refused_after_its_first_transaction_is_stored_on_from_where_it_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Start, Accounting-On (the NAS rebooted) and a new Start in one batch: three transactions. The lock is
    taken between the first and the second, as the nightly backup may: the Start is stored, the rest refused."""
    caplog.set_level(logging.INFO)
    seen: list[SessionEvent] = []
    sent = {1: dgram(1, START), 2: dgram(2, AcctStatusType.ACCOUNTING_ON, sid=None), 3: dgram(3, START, "S2", MAC2)}
    async with _serving(tmp_path, on_event=seen.append) as (store, srv, _):
        with _nas() as nas, contextlib.ExitStack() as lock:
            begun: list[str] = []

            def trace(sql: str) -> None:  # in the writer's thread, before SQLite runs the statement
                if sql.startswith("BEGIN"):
                    begun.append(sql)
                    if len(begun) == 2:  # the Start committed, the Accounting-On's transaction about to begin
                        lock.enter_context(write_lock_held(store.path, at_most=10))

            store._db.set_trace_callback(trace)
            try:
                for data in sent.values():  # straight in, so the three make one batch
                    srv.datagram_received(data, nas.getsockname())
                await until(lambda: srv.last_error is not None, "the Accounting-On refused")
                await asyncio.sleep(0.6)  # retried at least once
                assert srv.counters["commit_retries"] >= 1
                # the Start, stored before the refusal, is answered at once; the others wait for the store
                assert await _answers(nas, sent, within=0.1) == [1]
                lock.close()
                assert await _answers(nas, sent) == [2, 3]
            finally:
                store._db.set_trace_callback(None)
        s1, s2 = _sessions(store)
        assert (s1.session_id, s1.terminate_cause, s2.session_id, s2.stop) == ("S1", "NAS-Reboot", "S2", None)
        assert [(ev.session_id, ev.kind) for ev in seen] == [("S1", EventKind.START), ("S2", EventKind.START)]
        assert srv.counters["stored"] == 2  # the Start stored before the refusal was not stored again
    assert len([r for r in caplog.records if "closed 1 open sessions" in r.getMessage()]) == 1


async def test_past_max_pending_new_requests_are_left_unanswered_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER)
    sent = {n: dgram(n, START, sid=f"S{n}", mac=f"aa:bb:cc:00:00:{n:02x}") for n in range(1, 6)}
    async with _serving(tmp_path, max_pending=3) as (store, srv, port):
        with _nas() as nas:
            with write_lock_held(store.path, at_most=10) as release:
                for data in sent.values():
                    nas.sendto(data, ("127.0.0.1", port))
                await until(lambda: srv.counters["refused_queue_full"] == 2, "two requests refused")
                d = srv.diagnostics()
                assert (d["waiting"], d["in_flight"], d["stored"]) == (3, 3, 0)
                release.set()
            # the first three came first and were kept; the two after them are left to the NAS's retries
            assert await _answers(nas, sent) == [1, 2, 3]
            [full] = _messages(caplog, logging.WARNING, "leaving new ones unanswered")
            assert full.startswith("radius accounting: 3 Accounting-Requests wait for the store; leaving new ")
            # the NAS retransmits one of them: room again, so it is taken (no retransmission of a kept one)
            nas.sendto(sent[4], ("127.0.0.1", port))
            assert await _answers(nas, sent) == [4]
        assert [s.session_id for s in _sessions(store)] == ["S1", "S2", "S3", "S4"]
        assert srv.counters["retransmissions"] == 0
    [room] = _messages(caplog, logging.INFO, "refused while")
    assert "taking Accounting-Requests again; 2 refused while 3 waited" in room


async def test_a_stop_stores_and_answers_the_requests_waiting_before_the_store_closes(tmp_path: Path) -> None:
    adapter, port, task = await _running(tmp_path)
    srv = adapter.server
    assert srv is not None
    db = tmp_path / STORE_DIR / DB_FILE
    sent = {1: dgram(1, START), 2: dgram(2, START, sid="S2", mac=MAC2), 3: dgram(3, STOP)}
    with _nas() as nas:
        with write_lock_held(db, at_most=1.0):  # less than the busy timeout: the commit waits, then goes through
            nas.sendto(sent[1], ("127.0.0.1", port))
            await _commit_waiting(adapter)
            for data in (sent[2], sent[3]):
                nas.sendto(data, ("127.0.0.1", port))
            await until(lambda: len(srv._pending) == 2, "the requests behind the commit")
            task.cancel()  # the supervisor stops the adapter (gateway shutdown, config reload)
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await _answers(nas, sent, within=0.5) == [1, 2, 3]  # answered before the socket closed
    assert _open_files(db) == 0
    store = WifiLogStore(tmp_path)
    try:
        # the adapter's clock is the real one: every session of today
        found = store.search(Query(time_from=datetime.now(UTC) - timedelta(days=1), limit=100))
        assert sorted((s.session_id, s.stop is not None) for s in found) == [("S1", True), ("S2", False)]
    finally:
        store.close()


async def test_a_stop_while_the_store_keeps_refusing_ends_within_its_bound_and_says_what_was_not_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    sent = {n: dgram(n, START, sid=f"S{n}", mac=f"aa:bb:cc:00:00:{n:02x}") for n in range(1, 5)}
    async with _serving(tmp_path, drain_s=1.0) as (store, srv, port):
        with _nas() as nas, write_lock_held(store.path, at_most=10):
            for n in (1, 2, 3):
                nas.sendto(sent[n], ("127.0.0.1", port))
            await until(lambda: srv.diagnostics()["waiting"] == 3 and srv.last_error is not None, "failed commits")
            stopped = loop.time()
            closing = asyncio.create_task(srv.close())
            await asyncio.sleep(0.2)
            nas.sendto(sent[4], ("127.0.0.1", port))  # a new one while stopping: not taken
            await closing
            took = loop.time() - stopped
            assert await _answers(nas, sent, within=0.3) == []
        assert 0.9 < took < 2.0, f"close took {took:.2f} s for a drain bound of 1 s"
        [error] = _messages(caplog, logging.ERROR, "not stored")
        assert error.startswith("radius accounting: stopped with 3 Accounting-Requests not stored (")
        assert srv.counters["stopped_unanswered"] == 3 and srv.counters["refused_stopping"] == 1
