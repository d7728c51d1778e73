"""Another connection holding the Wi-Fi log's write lock, as the nightly backup's or a maintenance tool's does.

A store's commit then waits in its worker thread on SQLite's busy timeout, holding the store's own lock:
what both Wi-Fi adapters meet when they are stopped at such a moment. The lock is held from a thread of
its own and released after at most `at_most` seconds whatever the event loop is doing, so a test of code
that blocks the loop ends instead of waiting for the busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["write_lock_held"]


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
