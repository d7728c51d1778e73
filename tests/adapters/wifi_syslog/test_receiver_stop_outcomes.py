"""What becomes of association events at a stop that finds a commit still running, and of a store that errs.

A stop waits DRAIN_S for the store, as long as one busy timeout: when it gives up, a commit is usually still
running in the writer's thread, and ends after the writer was cancelled. Its outcome reached no one: a
failure was neither counted nor logged, while the stop's ERROR had called those events safe. A receiver
started again meanwhile had a second writer commit that same batch beside it (each event stored and handed
on twice). And every `OperationalError` was retried, a missing table too: the log stopped for good, with
new events refused once the queue was full.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from tests.adapters.wifi_syslog.test_receiver_keeps_events import (
    RECEIVER,
    _join,
    _messages,
    _receiving,
    _sessions,
)
from tests.adapters.wifi_syslog.test_receiver_paths import MAC, NOW, line, until
from tests.adapters.wifi_syslog.write_lock import write_lock_held

pytestmark = pytest.mark.both_loops

BUSY_MS = 2000  # the store's busy timeout here: longer than the drain, so the stop finds the commit running
DRAIN_S = 1.0


def _send(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, ("127.0.0.1", port))


async def _eventually(cond: Callable[[], bool], what: str, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"{what}: not within {within:g} s")
        await asyncio.sleep(0.01)


async def _stopped_with_a_commit_running(rx: SyslogReceiver, port: int) -> None:
    """Three joins refused once by the store (its write lock held), then a stop: the stop's first retry,
    all three in one batch, runs in the writer's thread for a busy timeout, past the drain's end."""
    for n in range(3):
        _send(port, _join(n))
    await _eventually(lambda: rx.counters["events"] == 3 and rx.last_error is not None, "a refused commit")
    await rx.close()


async def test_a_commit_still_running_at_a_stop_that_then_fails_is_counted_and_logged_as_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _receiving(tmp_path, busy_ms=BUSY_MS, drain_s=DRAIN_S) as (store, rx):
        _, port = await rx.start_udp("127.0.0.1", 0)
        with write_lock_held(store.path, at_most=20):
            await _stopped_with_a_commit_running(rx, port)
            assert rx.counters["lost"] == 0  # not yet: that commit may still succeed
            await _eventually(lambda: rx.counters["lost"] == 3, "the commit's failure counted")
        [stop] = _messages(caplog, logging.ERROR, "not stored")
        assert stop.startswith(
            "wifi syslog: stopped with 3 association events not stored (the store did not take them within 1 s); "
            "3 of them in a commit still running: stored if it succeeds, else logged as lost; last error: "
        ), stop
        [lost] = _messages(caplog, logging.ERROR, "events lost")
        assert lost == (
            "wifi syslog store: commit failed, got OperationalError: database is locked; "
            "3 events lost (the commit still running at the stop)"
        )
        assert rx.counters["stored"] == 0 and rx.waiting == 0
    assert _sessions(tmp_path) == []


async def test_a_commit_still_running_at_a_stop_that_then_succeeds_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RECEIVER)
    async with _receiving(tmp_path, busy_ms=BUSY_MS, drain_s=DRAIN_S) as (store, rx):
        _, port = await rx.start_udp("127.0.0.1", 0)
        with write_lock_held(store.path, at_most=20) as release:
            await _stopped_with_a_commit_running(rx, port)
            release.set()  # within the running commit's busy timeout: it goes through
        await _eventually(lambda: rx.counters["stored"] == 3, "the running commit stored")
        [stop] = _messages(caplog, logging.ERROR, "not stored")
        assert "3 of them in a commit still running: stored if it succeeds, else logged as lost" in stop
        [after] = _messages(caplog, logging.INFO, "after all")
        assert (
            after
            == "wifi syslog: the 3 association events of the commit still running at the stop are stored after all"
        )
        assert rx.counters["lost"] == 0
    assert _sessions(tmp_path) == [(f"aa:bb:cc:00:00:{n:02x}", False) for n in range(3)]


class _GatedStore(WifiLogStore):
    """A real store whose commits first wait at a gate: a commit held in the writer's thread at will."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.gate = threading.Event()
        self.entered = 0  # commits that reached the gate
        self.left = 0  # commits that went on past it

    def apply(self, events: Sequence[SessionEvent]) -> None:
        self.entered += 1
        try:
            self.gate.wait(20)
            super().apply(events)
        finally:
            self.left += 1


async def test_a_receiver_started_again_after_a_stop_commits_the_batch_still_running_once(tmp_path: Path) -> None:
    store = _GatedStore(tmp_path)
    try:
        seen: list[SessionEvent] = []
        rx = SyslogReceiver(store, clock=lambda: NOW, on_event=seen.append, drain_s=0.2)
        try:
            _, port = await rx.start_udp("127.0.0.1", 0)
            _send(port, line("CONNECTED"))
            await until(lambda: store.entered == 1, "the commit held at the gate")
            await rx.close()  # the drain ends with the commit still in the writer's thread
            _, port = await rx.start_udp("127.0.0.1", 0)  # a new writer: the batch still waits
            # long enough for a second commit of that batch to reach the gate too, were one made
            await asyncio.sleep(0.3)
            store.gate.set()
            await _eventually(lambda: store.left == store.entered, "the commits past the gate")
            await rx.flush()
            assert store.entered == 1, "the batch was committed by two threads at once"
            assert [(ev.client_mac, ev.kind) for ev in seen] == [(MAC, EventKind.START)]
            assert rx.counters["stored"] == 1 and rx.counters["lost"] == 0
            _send(port, line("DISCONNECTED", "11:10:00"))  # the new writer stores what comes next
            await _eventually(lambda: rx.counters["stored"] == 2, "the leave stored")
            assert [ev.kind for ev in seen] == [EventKind.START, EventKind.STOP]
        finally:
            store.gate.set()
            await rx.close()
    finally:
        store.close()
    assert _sessions(tmp_path) == [(MAC, True)]


async def test_a_missing_table_gives_the_batch_up_at_once_instead_of_retrying_it_for_ever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged schema (the sessions table gone): no retry mends it, and retrying stops every event behind."""
    async with _receiving(tmp_path, busy_ms=None) as (store, rx):
        with store._lock:  # the store's own connection: a schema damaged under the running receiver
            store._db.execute("DROP TABLE sessions")
        _, port = await rx.start_udp("127.0.0.1", 0)
        _send(port, _join(1))
        await _eventually(lambda: rx.counters["lost"] == 1, "the batch given up")
        await rx.flush()
        assert rx.counters["commit_retries"] == 0 and rx.counters["stored"] == 0 and rx.waiting == 0
        assert rx.last_error == "wifi syslog store: commit failed, got OperationalError: no such table: sessions"
    [lost] = _messages(caplog, logging.ERROR, "events lost")
    assert lost == "wifi syslog store: commit failed, got OperationalError: no such table: sessions; 1 events lost"
    assert not _messages(caplog, logging.WARNING, "retrying")
