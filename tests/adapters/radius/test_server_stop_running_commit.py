"""A commit still running in its thread when a stop gives up waiting is accounted for by that thread.

The stop cannot wait for it (its bound is `drain_s`), and once the writer task is cancelled no one awaits
the thread: it reports its own outcome. Failed, or cut short by the stop between two transactions, the
requests not stored are logged and counted in `stopped_unanswered`; stored, they are logged as stored after
all (unanswered: the socket is closed). Each request is counted once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.radius.attributes import AcctStatusType
from adapters.radius.server import RadiusAccountingServer
from tests.adapters.radius.test_adapter_event_loop import _nas
from tests.adapters.radius.test_server_keeps_requests import _messages, _serving
from tests.adapters.radius.test_server_paths import dgram
from tests.adapters.wifi_syslog.write_lock import write_lock_held

pytestmark = pytest.mark.both_loops

START = AcctStatusType.START
BUSY_MS = 1500  # the commit waits this long for the lock: well past the stop's bound
DRAIN_S = 0.3


def _starts(n: int) -> dict[int, bytes]:
    return {i: dgram(i, START, sid=f"S{i}", mac=f"aa:bb:cc:00:00:{i:02x}") for i in range(1, n + 1)}


async def _eventually(cond: Callable[[], bool], within: float = 5.0) -> bool:
    """Whether `cond` holds within `within` s: the thread reports after the commit's busy timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not cond():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


async def _one_running_two_waiting(srv: RadiusAccountingServer, port: int, sent: dict[int, bytes]) -> None:
    """The first Start in a commit waiting on the busy timeout, the other two queued behind it."""
    with _nas() as nas:
        nas.sendto(sent[1], ("127.0.0.1", port))
        assert await _eventually(lambda: len(srv._batch) == 1 and not srv._pending, 2.0)
        for n in (2, 3):
            nas.sendto(sent[n], ("127.0.0.1", port))
        assert await _eventually(lambda: len(srv._pending) == 2, 2.0)


def _stop_error(caplog: pytest.LogCaptureFixture) -> str:
    [error] = _messages(caplog, logging.ERROR, "stopped with")
    assert error.startswith("radius accounting: stopped with 3 Accounting-Requests not stored (")
    assert "1 of them in a commit still running" in error
    assert "waits for" not in error  # it is not safe: its outcome is reported once it ends
    return error


async def test_a_commit_running_at_a_stop_that_fails_is_logged_and_counted_by_its_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sent = _starts(3)
    async with _serving(tmp_path, busy_ms=BUSY_MS, drain_s=DRAIN_S) as (store, srv, port):
        with write_lock_held(store.path, at_most=10):
            await _one_running_two_waiting(srv, port, sent)
            await srv.close()
            _stop_error(caplog)
            assert srv.counters["stopped_unanswered"] == 2  # the running one is its thread's to count
            # the lock outlasts the commit's busy timeout: it fails, after the stop
            reported = await _eventually(lambda: srv.counters["stopped_unanswered"] == 3)
        assert reported, f"the failed commit was not counted: {srv.counters}"
        assert srv.counters["stored"] == 0 and srv.counters["commit_failed"] == 0
        [error] = _messages(caplog, logging.ERROR, "commit still running at the stop")
        assert "1 Accounting-Requests" in error and "database is locked" in error
        assert "stopped_unanswered" in error
        assert srv.last_error is not None and "database is locked" in srv.last_error


async def test_a_commit_running_at_a_stop_that_succeeds_says_they_were_stored_after_all(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sent = _starts(3)
    async with _serving(tmp_path, busy_ms=BUSY_MS, drain_s=DRAIN_S) as (store, srv, port):
        with write_lock_held(store.path, at_most=10):
            await _one_running_two_waiting(srv, port, sent)
            await srv.close()
            _stop_error(caplog)
        # the lock is free within the busy timeout: the running commit goes through after the stop
        assert await _eventually(lambda: bool(_messages(caplog, logging.INFO, "stored after all")))
        [info] = _messages(caplog, logging.INFO, "stored after all")
        assert "1 Accounting-Requests" in info and "unanswered" in info
        assert srv.counters["stored"] == 1 and srv.counters["stopped_unanswered"] == 2
        assert srv.counters["answered"] == 0 and srv.counters["commit_failed"] == 0
        assert not _messages(caplog, logging.ERROR, "commit still running at the stop")


async def test_a_stop_between_two_transactions_of_a_running_commit_stores_no_further_part(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Start, Accounting-On and a Start in one batch: three transactions. The stop comes while the first
    waits for the lock; it then goes through, and the thread takes no further part (the store's close may
    take the store between two parts): those two are logged and counted."""
    caplog.set_level(logging.INFO)
    on = dgram(2, AcctStatusType.ACCOUNTING_ON, sid=None)
    sent = {1: dgram(1, START), 2: on, 3: dgram(3, START, "S2", "aa:bb:cc:00:00:02")}
    async with _serving(tmp_path, busy_ms=BUSY_MS, drain_s=DRAIN_S) as (store, srv, _):
        with _nas() as nas, write_lock_held(store.path, at_most=10):
            for data in sent.values():  # straight in, so the three make one batch
                srv.datagram_received(data, nas.getsockname())
            assert await _eventually(lambda: len(srv._batch) == 3 and not srv._pending, 2.0)
            await srv.close()
            [error] = _messages(caplog, logging.ERROR, "stopped with")
            assert "3 of them in a commit still running" in error
        assert await _eventually(lambda: srv.counters["stopped_unanswered"] == 2)
        assert await _eventually(lambda: bool(_messages(caplog, logging.INFO, "stored after all")))
        [info] = _messages(caplog, logging.INFO, "stored after all")
        assert "1 Accounting-Requests" in info
        [error] = _messages(caplog, logging.ERROR, "commit still running at the stop")
        assert "2 Accounting-Requests" in error
        assert srv.counters["stored"] == 1 and srv.counters["commit_failed"] == 0
    assert not [r for r in caplog.records if "open sessions" in r.getMessage()]  # the Accounting-On's part
