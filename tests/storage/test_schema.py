"""The shared migration helper on real sqlite files: forward steps, nothing written when current, rollback, downgrade."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import BufferUnavailable
from gateway.storage.schema import MigrationFailed, SchemaTooNew, migrate, read_version

STEPS = (
    "CREATE TABLE t (a INTEGER NOT NULL)",
    "ALTER TABLE t ADD COLUMN b TEXT NOT NULL DEFAULT 'x'; CREATE INDEX t_b ON t (b)",
)


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_new_file_is_taken_through_every_step_and_a_current_one_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = _connect(path)
    done = migrate(db, path, STEPS, store="s")
    assert (done.before, done.after, done.changed) == (0, 2, True)
    assert read_version(db) == 2
    db.execute("INSERT INTO t (a) VALUES (1)")
    db.close()
    before = _digest(path)
    db = _connect(path)
    again = migrate(db, path, STEPS, store="s")
    db.close()
    assert (again.before, again.after, again.changed) == (2, 2, False)
    assert _digest(path) == before


def test_semicolons_in_comments_and_strings_do_not_cut_a_statement(tmp_path: Path) -> None:
    """The mail queue's schema comments its columns ("…; NULL once done"): a step is cut where sqlite says a
    statement ends, not at every semicolon."""
    step = (
        "CREATE TABLE m (\n"
        "    payload BLOB,  -- the token; NULL once done\n"
        "    note TEXT NOT NULL DEFAULT 'a;b'\n"
        ");\n"
        "CREATE INDEX m_note ON m (note) WHERE note <> ';'\n"
    )
    path = tmp_path / "m.db"
    db = _connect(path)
    assert migrate(db, path, (step,), store="m").after == 1
    db.execute("INSERT INTO m (payload) VALUES (NULL)")
    assert db.execute("SELECT note FROM m").fetchall() == [("a;b",)]
    assert db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall() == [("m_note",)]
    db.close()


def test_a_callable_step_migrates_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = _connect(path)
    migrate(db, path, STEPS[:1])
    db.executemany("INSERT INTO t (a) VALUES (?)", [(1,), (2,)])

    def double(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE t SET a = a * 2")

    migrate(db, path, (*STEPS[:1], double))
    assert [a for (a,) in db.execute("SELECT a FROM t ORDER BY a")] == [2, 4]
    assert read_version(db) == 2


def test_a_failing_step_leaves_the_file_as_it_was_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = _connect(path)
    migrate(db, path, STEPS[:1])
    db.execute("INSERT INTO t (a) VALUES (7)")
    db.close()
    before = _digest(path)
    db = _connect(path)
    broken = (*STEPS, "CREATE TABLE u (x); INSERT INTO nowhere VALUES (1)")
    with pytest.raises(MigrationFailed) as caught:
        migrate(db, path, broken, store="s")
    db.close()
    assert str(caught.value) == (
        f"s: migration of {path} from schema version 2 to 3 failed, got OperationalError: no such table: nowhere; "
        "the file is unchanged at version 1, run the previous edgegw release or restore a backup"
    )
    assert _digest(path) == before  # step 2 had succeeded in the same transaction: rolled back too
    db = _connect(path)
    assert read_version(db) == 1
    assert [name for (name,) in db.execute("SELECT name FROM sqlite_master ORDER BY name")] == ["t"]


def test_a_file_from_a_newer_edgegw_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = _connect(path)
    db.execute("PRAGMA user_version = 5")
    db.close()
    before = _digest(path)
    db = _connect(path)
    with pytest.raises(SchemaTooNew) as caught:
        migrate(db, path, STEPS)
    assert (
        str(caught.value) == f"{path}: schema version newer than this edgegw knows (2), got version 5; upgrade edgegw"
    )
    assert caught.value.params == {"version": 5, "path": str(path)}
    with pytest.raises(BufferUnavailable):  # a store's own error class when it gives one
        migrate(db, path, STEPS, BufferUnavailable)
    db.close()
    assert _digest(path) == before
