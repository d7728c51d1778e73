"""A store's file this process may only read (an SD card's ext4 remounted read-only after an error, systemd's
ReadOnlyPaths=): opened and read, its writes refused in SQLite's words; a reader never writes.

open_store made the file private first by opening it O_RDWR|O_CREAT, which on a read-only mount raised a
bare `OSError: [Errno 30] Read-only file system` for a file SQLite reads well: the config page and its
history then failed with "internal error". Real read-only bind mounts (tests/storage/read_only.py).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.storage.files import STORE_FIX, StoreUnavailable, StoreUnreadable, open_reader, open_store
from tests.storage.read_only import Binds, held_open
from tests.storage.read_only import binds as binds
from tests.storage.test_store_unreadable import GARBAGE

TABLES = ("readings",)
KEEPER = "the test's writer holds it open"


def _made(path: Path, *, wal: bool) -> None:
    db = open_store(path, "test store", tables=TABLES, wal=wal)
    try:
        db.execute("CREATE TABLE readings (value INTEGER)")
        db.execute("INSERT INTO readings VALUES (7)")
    finally:
        db.close()


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("wal", [False, True], ids=["rollback journal", "WAL"])
def test_a_store_on_a_read_only_mount_is_read_and_its_writes_refused_by_sqlite(
    tmp_path: Path, binds: Binds, wal: bool
) -> None:
    path = tmp_path / "store.db"
    _made(path, wal=wal)
    before = _files(tmp_path)
    binds.read_only(path)  # the file alone: its directory stays writable, SQLite may make a WAL's -shm there
    db = open_store(path, "test store", tables=TABLES, wal=wal)
    try:
        assert db.execute("SELECT value FROM readings").fetchall() == [(7,)]
        with pytest.raises(sqlite3.OperationalError, match="attempt to write a readonly database") as info:
            db.execute("INSERT INTO readings VALUES (8)")
        assert info.value.sqlite_errorcode & 0xFF == sqlite3.SQLITE_READONLY
    finally:
        db.close()
    assert _files(tmp_path)[path.name] == before[path.name]


def test_a_file_that_is_no_database_on_a_read_only_mount_is_still_refused_by_name(tmp_path: Path, binds: Binds) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(GARBAGE)
    binds.read_only(tmp_path)
    with pytest.raises(StoreUnreadable) as info:
        open_store(path, "test store", tables=TABLES)
    assert str(info.value) == (
        f"test store {path}: not an SQLite database, got 8192 bytes without SQLite's header; {STORE_FIX}"
    )


def test_a_store_that_is_not_there_cannot_be_made_on_a_read_only_mount(tmp_path: Path, binds: Binds) -> None:
    binds.read_only(tmp_path)
    with pytest.raises(OSError, match="Read-only file system") as info:
        open_store(tmp_path / "store.db", "test store", tables=TABLES)
    # why it could not be made, not that there is nothing to read
    assert (info.value.errno, info.value.filename) == (errno.EROFS, str(tmp_path / "store.db"))


# -- a reader: never makes, converts nor writes the file ---------------------------------------------------------


HOLD = """
from gateway.storage.files import open_store
db = open_store(Path({path!r}), "test store", tables=("readings",))
db.execute("SELECT 1 FROM readings").fetchall()
"""


def test_a_reader_reads_a_wal_store_another_process_holds_open_in_a_read_only_directory(
    tmp_path: Path, binds: Binds
) -> None:
    path = tmp_path / "store.db"
    _made(path, wal=True)
    with held_open(HOLD.format(path=str(path)), "db.close()"):
        before = _files(tmp_path)
        binds.read_only(tmp_path)
        db = open_reader(path, "test store", tables=TABLES, keeper=KEEPER)
        try:
            assert db.execute("SELECT value FROM readings").fetchall() == [(7,)]
            with pytest.raises(sqlite3.OperationalError, match="attempt to write a readonly database"):
                db.execute("INSERT INTO readings VALUES (8)")
        finally:
            db.close()
        assert _files(tmp_path) == before


def test_a_reader_says_who_keeps_a_wal_store_no_process_holds_open_in_a_read_only_directory(
    tmp_path: Path, binds: Binds, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.db"
    _made(path, wal=True)  # closed: SQLite removed its -wal and -shm, which a reader here cannot make
    binds.read_only(tmp_path)
    with pytest.raises(StoreUnavailable) as info:
        open_reader(path, "test store", tables=TABLES, keeper=KEEPER)
    message = (
        f"test store {path}: cannot be read by this process now, got a WAL file that no process holds open (SQLite's "
        f'"unable to open database file": the -shm beside it, which a reader needs, cannot be made here); '
        f"{KEEPER}"
    )
    assert str(info.value) == message
    assert isinstance(info.value, sqlite3.OperationalError)  # for the code that catches SQLite's errors
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("gateway.storage")] == [
        (logging.WARNING, message)
    ]


def test_a_reader_makes_no_file_that_is_not_there(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.db"
    with pytest.raises(StoreUnavailable) as info:
        open_reader(path, "test store", tables=TABLES, keeper=KEEPER)
    assert str(info.value) == f"test store {path}: cannot be read by this process now, got no such file; {KEEPER}"
    assert list(tmp_path.iterdir()) == []


def test_a_reader_leaves_a_rollback_journal_store_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _made(path, wal=False)
    db = open_reader(path, "test store", tables=TABLES, keeper=KEEPER)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not turned to WAL
        assert db.execute("SELECT value FROM readings").fetchall() == [(7,)]
        with pytest.raises(sqlite3.OperationalError, match="attempt to write a readonly database"):
            db.execute("INSERT INTO readings VALUES (8)")
    finally:
        db.close()
    assert os.listdir(tmp_path) == ["store.db"]


@pytest.mark.parametrize("damage", ["garbage", "foreign"])
def test_a_reader_refuses_a_damaged_or_foreign_file_as_a_store_does(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "store.db"
    if damage == "garbage":
        path.write_bytes(GARBAGE)
        what = "not an SQLite database, got 8192 bytes without SQLite's header"
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE mails (x)")
        db.close()
        what = "another store's file (none of the tables readings), got tables mails"
    data = path.read_bytes()
    with pytest.raises(StoreUnreadable) as info:
        open_reader(path, "test store", tables=TABLES, keeper=KEEPER)
    assert str(info.value) == f"test store {path}: {what}; {STORE_FIX}"
    assert _files(tmp_path) == {"store.db": data}
