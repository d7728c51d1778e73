"""BufferReader: the web UI's read-only view of the outbox (dead letters, backlog), from another process.

It opens `buffer.db` with `mode=ro`, so it can never write, lock out the gateway's writer or
start a checkpoint; in WAL mode a reader sees the last committed state and the writer never waits
on it. The SQL is the Store's own (store.py), not a copy. One connection, used by one thread at a
time (a single-thread executor), so the event loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from gateway.buffer.space import full_disk_on_open, is_disk_full
from gateway.buffer.stats import DeadLetter
from gateway.buffer.store import (
    configured_cursors,
    count_dead_letters,
    count_pending,
    count_pending_entities,
    read_dead_letters,
)
from gateway.errors import BufferUnavailable

T = TypeVar("T")

BUSY_TIMEOUT_S = 2.0  # a read waits this long behind a checkpoint before it fails


class BufferReader:
    def __init__(self, path: Path) -> None:
        """`path` is the buffer file, `<data_dir>/buffer.db`; nothing is opened until the first read."""
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer-reader")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro",
                    uri=True,
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA query_only = ON")
                conn.execute("SELECT 1 FROM dead_letters LIMIT 0")  # the file is an outbox
            except sqlite3.Error as exc:
                if conn is not None:  # each page asks again: a failed attempt must not keep its file open
                    conn.close()
                message = (
                    full_disk_on_open(self.path, exc)
                    if is_disk_full(exc)
                    else f"buffer {self.path}: cannot be read, got {exc}; "
                    "is the gateway running and this user in its group?"
                )
                raise BufferUnavailable(message, path=str(self.path)) from None
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            return fn(self._connect())

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def dead_letters(self, uplink: str | None = None, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        return await self._run(lambda c: read_dead_letters(c, uplink, limit, offset))

    async def dead_letter_count(self, uplink: str | None = None) -> int:
        counts = await self._run(count_dead_letters)
        return sum(counts.values()) if uplink is None else counts.get(uplink, 0)

    async def backlog(self) -> dict[str, dict[str, int]]:
        """Configured uplink -> lane name -> rows it still has to deliver, from the stored cursors."""

        def read(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
            conn.execute("BEGIN")  # cursors and counts from one snapshot
            try:
                return {name: count_pending(conn, name, cur) for name, cur in sorted(configured_cursors(conn).items())}
            finally:
                conn.execute("COMMIT")

        return await self._run(read)

    async def pending_entities(self, id_prefix: str) -> dict[str, int]:
        """Uplink -> rows with an entity id starting `id_prefix` it still has to deliver (one snapshot)."""

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            conn.execute("BEGIN")
            try:
                return {
                    name: count_pending_entities(conn, name, cur, id_prefix)
                    for name, cur in sorted(configured_cursors(conn).items())
                }
            finally:
                conn.execute("COMMIT")

        return await self._run(read)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)
