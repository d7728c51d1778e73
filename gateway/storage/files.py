"""The small stores of record (accounts, audit log, …): a private sqlite file and how each use opens it."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def create_private(path: Path) -> None:
    """Make `path` (and its directory, 0700) if missing, 0600 from its first byte: sqlite creating it would
    leave it readable by others for a moment, under the umask."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def fsync_dir(directory: Path) -> None:
    """A rename or a new file in `directory` survives a power cut only once the directory is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def wal_mode(db: sqlite3.Connection, *, within_s: float = 10.0) -> None:
    """`PRAGMA journal_mode=WAL`, waiting out other connections that convert the same new file.

    Two connections converting one new file at once deadlock on its lock, and SQLite answers one of
    them SQLITE_BUSY at once, without its busy handler: six threads opening a new store failed 9 of
    1,800 opens, so the gateway and the web UI starting together on a new box could each fail a start.
    A file in WAL mode already takes no lock here.
    """
    deadline = time.monotonic() + within_s
    pause = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


@contextmanager
def durable_connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection for one use: WAL, every commit fsynced (a record of truth changes rarely and must survive
    a power cut), rows by name, transactions begun explicitly."""
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        wal_mode(db)
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
        if db.in_transaction:  # SQLite rolls back by itself on a full disk: the first error is the one to raise
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
