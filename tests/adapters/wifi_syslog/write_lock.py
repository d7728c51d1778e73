"""Another connection holding the Wi-Fi log's write lock, as the nightly backup's or a maintenance tool's does.

A store's commit then waits in its worker thread on SQLite's busy timeout, holding the store's own lock:
what both Wi-Fi adapters meet when they are stopped at such a moment. The lock is held from a thread of
its own and released after at most `at_most` seconds whatever the event loop is doing, so a test of code
that blocks the loop ends instead of waiting for the busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.web.test_wifi_event_loop import LagProbe

__all__ = ["stopped_with_lag", "write_lock_held"]


@contextmanager
def write_lock_held(db: Path, *, at_most: float) -> Iterator[threading.Event]:
    """The write lock on `db` held until the event yielded is set or `at_most` seconds have passed."""
    held = threading.Event()
    release = threading.Event()
    failed: list[BaseException] = []

    def hold() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait(at_most)
            conn.execute("ROLLBACK")
        except BaseException as exc:
            failed.append(exc)
            held.set()
        finally:
            conn.close()

    thread = threading.Thread(target=hold, name="write-lock-holder")
    thread.start()
    try:
        held.wait(10)
        assert not failed, f"could not take the write lock on {db}: {failed}"
        yield release
    finally:
        release.set()
        thread.join()


async def stopped_with_lag(task: asyncio.Task[None]) -> tuple[float, float]:
    """`task` (an adapter's run) stopped as the supervisor stops it: how long its end took, and the worst the
    event loop was held meanwhile (a loop-lag probe)."""
    loop = asyncio.get_running_loop()
    probe = LagProbe()
    stopped = loop.time()
    task.cancel()  # the supervisor stops the adapter (gateway shutdown, config reload)
    with pytest.raises(asyncio.CancelledError):
        await task
    closing = loop.time() - stopped
    return closing, await probe.stop()
