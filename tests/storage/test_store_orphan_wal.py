"""A store's -wal left without its database file (missing, or emptied by a power cut) is refused and kept:
SQLite, opening the file, would delete the -wal and every commit in it."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.storage.files import StoreUnreadable, open_reader, open_store

ROOT = Path(__file__).resolve().parents[2]

# commits 200 audit events and exits without closing: the commits stay in the -wal, as after kill -9
_WRITER = """
import os, sys
from pathlib import Path
from gateway.storage.files import open_store
db = open_store(Path(sys.argv[1]), "audit log", tables=("events",), pragmas=("synchronous=FULL",))
db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, what TEXT)")
for i in range(200):
    db.execute("INSERT INTO events (what) VALUES (?)", (f"event {i}",))
os._exit(0)
"""


def _crashed_store(path: Path) -> bytes:
    subprocess.run(
        [sys.executable, "-c", _WRITER, str(path)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True
    )
    Path(f"{path}-shm").unlink()
    return Path(f"{path}-wal").read_bytes()


# a reader never opens a file that is not there (StoreUnavailable, "no such file"): only an empty one is its case
@pytest.mark.parametrize(
    ("opener", "lost", "state"),
    [
        ("open_store", "missing", "is missing"),
        ("open_store", "empty", "is empty (0 bytes)"),
        ("open_reader", "empty", "is empty (0 bytes)"),
    ],
)
def test_a_wal_without_its_database_file_is_refused_and_kept(
    tmp_path: Path, opener: str, lost: str, state: str
) -> None:
    path = tmp_path / "audit.db"
    wal = _crashed_store(path)
    if lost == "missing":
        path.unlink()
    else:
        path.write_bytes(b"")
    tables = ("events",)
    if opener == "open_store":
        opening = functools.partial(open_store, path, "audit log", tables=tables)
    else:
        opening = functools.partial(open_reader, path, "audit log", tables=tables, keeper="the gateway (edgegw run)")
    with pytest.raises(StoreUnreadable) as refused:
        opening()
    assert str(refused.value) == (
        f"audit log {path}: a -wal without its database file (audit.db {state}), got {path}-wal of {len(wal)} "
        "bytes, the store's last commits, which SQLite would delete on opening; keep the -wal; the file is "
        "left as it is: restore another backup generation (`edgegw backup list`), or stop the services and "
        "move the file aside to start the store empty, losing everything it held"
    )
    assert Path(f"{path}-wal").read_bytes() == wal
