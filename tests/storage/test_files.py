"""The small stores' files: WAL mode reached however many connections open a new file at once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.storage.files import create_private, durable_connection, wal_mode


def test_connections_opening_a_new_file_at_once_all_get_wal_mode(tmp_path: Path) -> None:
    # SQLite refuses one of two connections converting the same new file at once, without waiting: the
    # gateway, the web UI and the CLI opening a new box's store together. Before wal_mode: 5-15 of 2,400 failed.
    failures: list[BaseException] = []
    modes: list[str] = []

    def open_it(path: Path) -> None:
        try:
            create_private(path)
            with durable_connection(path) as db:
                modes.append(str(db.execute("PRAGMA journal_mode").fetchone()[0]))
        except BaseException as exc:
            failures.append(exc)

    for n in range(200):
        threads = [threading.Thread(target=open_it, args=(tmp_path / f"{n}.db",)) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    assert modes == ["wal"] * 2400


def test_only_a_busy_file_is_waited_for(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()  # not a database: an error of its own, raised at once
    db = sqlite3.connect(":memory:")
    wal_mode(db)  # an in-memory database answers "memory": nothing to wait for
    db.close()
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        wal_mode(sqlite3.connect(tmp_path / "dir.db"), within_s=60)
