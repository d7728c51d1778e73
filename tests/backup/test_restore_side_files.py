"""A restore moves every sqlite side file of a store it replaces aside with the store, the rollback journal too.

config_versions.db keeps a rollback journal: a gateway killed in the middle of a commit (a stop that
timed out, a power cut) leaves a hot `-journal` beside it. The restore moved the store aside and put
the backup's in its place, but left the journal: SQLite plays a hot journal back into whatever file
has that name at the next open, so the gateway's first start wrote the old store's pages into the
restored one (the restore silently undone, or the file corrupted), and the copy kept in
`.pre-restore-*` had lost the journal it needed. A side file whose store is gone (deleted by hand)
was left too, and played into the backup's store the same way. Every store here is real SQLite,
every hot journal one left by a real process killed mid-transaction.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.control.config_versions import ConfigVersions

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
NEXT_NIGHT = datetime(2026, 12, 4, 18, 12, tzinfo=UTC)
ROWS = 900  # the 0.1.0 buffer's outbox

# what the gateway was doing when it was killed: a commit touching many pages (rewritten, freed) or a
# few, with a cache of one page so that SQLite writes the pages, and fills the journal, before the commit
KILLED_MID_COMMIT = {
    "many pages": "UPDATE versions SET text = text || 'z' WHERE version < 12; DELETE FROM versions WHERE version % 2 = 0",
    "a few pages": "UPDATE versions SET text = text || 'z' WHERE version = 46",
}


def _versions(path: Path) -> tuple[list[tuple[int, str, int]], list[tuple[str]]]:
    """Each stored config's (version, first words, length) and integrity_check's answer, as the gateway opens it."""
    store = ConfigVersions(path)
    try:
        rows = store.conn.execute("SELECT version, substr(text, 1, 20), length(text) FROM versions ORDER BY version")
        return [(int(v), str(t), int(n)) for v, t, n in rows], store.conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        store.close()


def _record(path: Path, label: str, n: int, at: float) -> None:
    store = ConfigVersions(path)
    try:
        for i in range(n):
            store.record(f"{label} config {i} " + "x" * 3000, actor="admin", at=at + i)
    finally:
        store.close()


def _kill_mid_commit(db: Path, statements: str) -> None:
    """A real process that writes `statements` in one transaction and dies (SIGKILL-like) before committing."""
    child = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA cache_size = 1')\n"
        "db.execute('BEGIN')\n"
        "db.execute('CREATE TABLE scratch(x)')\n"
        "for s in sys.argv[2].split(';'):\n"
        "    db.execute(s)\n"
        "os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", child, str(db), statements], check=False).returncode == 9
    journal = db.with_name(db.name + "-journal")
    assert journal.stat().st_size > 512  # hot: SQLite rolls it back into db at the next open


def _backup(config: Path, data_dir: Path, share: Path) -> Path:
    return archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=share, now=NIGHT)


def _side_files(directory: Path, name: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(name) and p.name != name)


@pytest.mark.parametrize("statements", KILLED_MID_COMMIT.values(), ids=KILLED_MID_COMMIT.keys())
def test_a_hot_journal_goes_aside_with_its_store_and_the_restored_store_is_the_backups(
    box: tuple[Path, Path], tmp_path: Path, statements: str
) -> None:
    config, data_dir = box
    store = data_dir / "config_versions.db"
    _record(store, "backup-era", 5, 1.0)
    backed_up = _versions(store)
    path = _backup(config, data_dir, tmp_path / "share")
    _record(store, "later", 40, 100.0)
    committed = _versions(store)  # what the gateway had committed when it was killed
    _kill_mid_commit(store, statements)

    aside = archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NEXT_NIGHT)

    assert _side_files(data_dir, "config_versions.db") == []
    assert _versions(store) == backed_up  # the gateway's first open: the restore stands, the file is whole
    assert backed_up[1] == [("ok",)] and len(backed_up[0]) == 6
    kept = aside / "data"
    assert _side_files(kept, "config_versions.db") == ["config_versions.db-journal"]
    assert _versions(kept / "config_versions.db") == committed  # the journal rolled back into its own store


def test_side_files_of_a_store_deleted_by_hand_are_moved_aside_before_the_backups_store_takes_its_name(
    box: tuple[Path, Path], tmp_path: Path
) -> None:
    """A technician deleted a store that would not open, but not its `-journal`, nor the buffer's `-wal` and `-shm`:
    SQLite reads them as the restored store's own."""
    config, data_dir = box
    store = data_dir / "config_versions.db"
    _record(store, "backup-era", 5, 1.0)
    backed_up = _versions(store)
    path = _backup(config, data_dir, tmp_path / "share")
    _record(store, "later", 40, 100.0)
    _kill_mid_commit(store, KILLED_MID_COMMIT["many pages"])
    store.unlink()
    buffer = data_dir / "buffer.db"
    wal = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA journal_mode = WAL')\n"
        "db.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "db.execute('DELETE FROM outbox WHERE seq < 500')\n"  # committed, in the -wal only
        "os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", wal, str(buffer)], check=False).returncode == 9
    assert (data_dir / "buffer.db-wal").stat().st_size > 0
    buffer.unlink()
    left = {"config_versions.db-journal", "buffer.db-wal", "buffer.db-shm"}
    assert {p.name for p in data_dir.iterdir()} >= left

    aside = archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NEXT_NIGHT)

    assert not left & {p.name for p in data_dir.iterdir()}
    assert left <= {p.name for p in (aside / "data").iterdir()}
    assert _versions(store) == backed_up
    db = sqlite3.connect(buffer)
    try:
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == ROWS
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
