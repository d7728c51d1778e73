"""The small stores of record (accounts, audit log, …): a private sqlite file and how each use opens it."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def create_private(path: Path) -> None:
    """Make `path` (and its directory, 0700) if missing, 0600 from its first byte: sqlite creating it would
    leave it readable by others for a moment, under the umask."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


@contextmanager
def durable_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection for one use: WAL, every commit fsynced (a record of truth changes rarely and must survive
    a power cut), rows by name, transactions begun explicitly."""
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        yield db
    finally:
        db.close()


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on `db` (opened with isolation_level=None): BEGIN IMMEDIATE takes the write
    lock at once, so another process's writer waits on busy_timeout instead of failing mid-way; rolled
    back on any exception, committed otherwise."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
