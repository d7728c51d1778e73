"""migrate on a disk that fills up midway: the error says the store, the file and what failed, never SQLite's
bare words nor "cannot rollback", and the file stays at the version it had."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.storage.files import open_store
from gateway.storage.schema import MigrationFailed, migrate, read_version
from tests.support.tmpfs import fill, tmpfs

__all__ = ["tmpfs"]  # the fixture, used by name

FIRST = ("CREATE TABLE mails (id INTEGER PRIMARY KEY, body TEXT)",)


def _full_store(disk: Path, *, wal: bool) -> tuple[Path, sqlite3.Connection]:
    path = disk / "mail.db"
    db = open_store(path, "mail queue", tables=("mails",), wal=wal)
    migrate(db, path, FIRST, store="mail queue")
    db.executemany("INSERT INTO mails (body) VALUES (?)", [("x" * 1000,)] * 150)
    fill(disk)
    return path, db


def test_a_step_failing_on_a_full_disk_raises_migration_failed(tmpfs: Callable[..., Path]) -> None:
    # with a rollback journal the step that needs the journal fails, and SQLite has ended the transaction already
    path, db = _full_store(tmpfs("2m"), wal=False)
    try:
        with pytest.raises(MigrationFailed) as failed:
            migrate(db, path, (*FIRST, "UPDATE mails SET body = body || body || body"), store="mail queue")
        assert str(failed.value) == (
            f"mail queue: migration of {path} from schema version 1 to 2 failed, got OperationalError: database or "
            "disk is full; the file is unchanged at version 1, run the previous edgegw release or restore a backup"
        )
        assert (read_version(db), db.in_transaction) == (1, False)
    finally:
        db.close()


def test_a_commit_failing_on_a_full_disk_names_the_store_and_the_file(tmpfs: Callable[..., Path]) -> None:
    # in WAL mode the steps change pages in memory; writing them to the -wal at COMMIT is what fails
    disk = tmpfs("2m")
    path, db = _full_store(disk, wal=True)
    try:
        with pytest.raises(MigrationFailed) as failed:
            migrate(
                db,
                path,
                (
                    *FIRST,
                    "ALTER TABLE mails ADD COLUMN purpose TEXT NOT NULL DEFAULT ''",
                    "UPDATE mails SET body = body || body",
                ),
                store="mail queue",
            )
        assert str(failed.value) == (
            f"mail queue: migration of {path} from schema version 1 to 3 failed, got OperationalError on commit: "
            f"database or disk is full; the file is unchanged at version 1, free space in {disk} if the disk is "
            "full, else run the previous edgegw release or restore a backup"
        )
        assert (read_version(db), db.in_transaction) == (1, False)
    finally:
        db.close()
