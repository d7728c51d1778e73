"""A salvage is complete or not there: the damaged file stays in place until the salvaged one replaces it whole.

Covers a -wal left without its database file (SQLite would delete it, and every acknowledged reading in it),
a gateway killed mid-salvage, and a salvage on a full disk.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.errors import BufferUnavailable
from tests.buffer.readings import ns, reading
from tests.buffer.test_salvage import outbox_leaf_near, page_size, readable
from tests.support.tmpfs import fill, tmpfs

__all__ = ["tmpfs"]  # the fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
CFG = BufferConfig(durability=Durability.FULL, commit_interval_ms=1, reserve_bytes=0)

# appends `n` readings, says when they are committed, then waits to be killed: no close, no checkpoint
_APPENDER = """
import asyncio, sys, time
from pathlib import Path
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from tests.buffer.readings import reading

async def main():
    box = await Outbox.open(Path(sys.argv[1]), BufferConfig(durability=Durability.FULL, reserve_bytes=0), ["orion"])
    await box.append_many([reading(i, f"e{i % 5}", pad=100) for i in range(int(sys.argv[2]))])
    print("committed", flush=True)
    time.sleep(600)

asyncio.run(main())
"""

# opens a damaged buffer with a salvage that stops after its first 100 rows, and says so
_SALVAGER = """
import asyncio, sys, time
from pathlib import Path
from gateway.buffer import salvage
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox

def stop(rows):
    print("copied", rows, flush=True)
    time.sleep(600)

salvage._CHUNK = 100
salvage.progress = stop
asyncio.run(Outbox.open(Path(sys.argv[1]), BufferConfig(durability=Durability.FULL, reserve_bytes=0), ["orion"]))
"""


# the same, stopped once the damaged file is moved aside and before the salvaged one takes its name
_SWAPPER = """
import asyncio, os, sys, time
from pathlib import Path
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox

rename = os.replace
def replace(src, dst):
    rename(src, dst)
    if Path(src).name == "buffer.db":
        print("moved", flush=True)
        time.sleep(600)

os.replace = replace
asyncio.run(Outbox.open(Path(sys.argv[1]), BufferConfig(durability=Durability.FULL, reserve_bytes=0), ["orion"]))
"""


def _run_until(script: str, line: str, *args: str) -> None:
    """Run `script` in a child process until it prints `line`, then kill -9 it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        got = proc.stdout.readline().decode()
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    assert got.startswith(line), (got, err.decode())


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _orphan_wal(db: Path, lost: str) -> bytes:
    """A buffer whose writer was killed with 300 readings in its -wal, then its file `lost`; the -wal's bytes."""
    _run_until(_APPENDER, "committed", str(db), "300")
    orphan = Path(f"{db}-wal").read_bytes()
    assert len(orphan) > 50_000  # the readings are in the -wal, not yet in the file
    if lost == "missing":  # a technician moved the file away, or a power cut lost its directory entry
        db.unlink()
    else:  # ext4 after a power cut: the file's length reset, its data gone
        db.write_bytes(b"")
    Path(f"{db}-shm").unlink()
    return orphan


@pytest.mark.parametrize("lost", ["missing", "empty"])
async def test_a_wal_left_without_its_database_file_is_salvaged_and_kept(
    tmp_path: Path, lost: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "buffer.db"
    orphan = _orphan_wal(db, lost)
    with caplog.at_level(logging.CRITICAL):
        box = await Outbox.open(db, CFG, ["orion"])
    try:
        assert ns(await box.read("orion", 1000)) == list(range(300))
        stats = await box.stats()
    finally:
        await box.close()
    [moved] = [tmp_path / n for n in _files(tmp_path) if re.fullmatch(r"buffer\.db\.corrupt-\d{8}T\d{6}", n)]
    assert _read(Path(f"{moved}-wal")) == orphan  # kept aside as it was, never deleted
    assert _files(tmp_path) == sorted(["buffer.db", moved.name, f"{moved.name}-wal"])
    state = "is missing" if lost == "missing" else "is empty (0 bytes)"
    detail = f"buffer.db-wal of {len(orphan)} bytes was left without its database file: buffer.db {state}"
    assert caplog.messages == [
        f"buffer: database {db} is damaged ({detail}); moved it to {moved} and salvaged 300 readings into a "
        "fresh buffer, none was lost; 0 dead letters kept; the uplinks' cursors kept. Keep the damaged file for "
        "analysis"
    ]
    assert stats.salvage is not None and (stats.salvage.saved_rows, stats.salvage.detail) == (300, detail)
    # the moved pair still opens in plain SQLite with every reading: what a technician would look at
    conn = sqlite3.connect(moved.as_uri() + "?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (300,)
    finally:
        conn.close()


async def _damaged_buffer(db: Path, n: int) -> dict[int, object]:
    """A real buffer of `n` readings with one outbox leaf garbled; the rows SQLite still reads by seq."""
    box = await Outbox.open(db, CFG, ["orion"])
    await box.append_many([reading(i, f"e{i % 5}", pad=100) for i in range(n)])
    await box.close()
    return _garble(db)


def _garble(db: Path) -> dict[int, object]:
    data = bytearray(db.read_bytes())
    size = page_size(bytes(data))
    victim = outbox_leaf_near(db, len(data) // size // 2)
    data[(victim - 1) * size : victim * size] = b"\xa5" * size
    db.write_bytes(bytes(data))
    return dict(readable(db))


async def test_a_salvage_killed_midway_leaves_the_damaged_file_in_place_and_is_done_again(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    still = await _damaged_buffer(db, 600)
    assert 500 < len(still) < 600
    damaged = db.read_bytes()
    _run_until(_SALVAGER, "copied 100", str(db))
    assert db.read_bytes() == damaged  # not moved aside, nor replaced by the 100 rows copied so far
    assert "buffer.db.salvage" in _files(tmp_path)
    box = await Outbox.open(db, CFG, ["orion"])
    try:
        stats = await box.stats()
        await box.append(reading(999))
        got = await box.read("orion", 1000)
    finally:
        await box.close()
    assert stats.rows == len(still) and stats.salvage is not None and stats.salvage.saved_rows == len(still)
    assert [r.seq for r in got] == [*sorted(still), 601]  # every readable row, and new seqs above the old
    [moved] = [n for n in _files(tmp_path) if n.startswith("buffer.db.corrupt-")]
    assert (tmp_path / moved).read_bytes() == damaged
    assert _files(tmp_path) == ["buffer.db", moved]  # the interrupted attempt left nothing behind


async def test_a_salvage_killed_between_its_renames_is_put_in_place_at_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    still = await _damaged_buffer(db, 300)
    damaged = db.read_bytes()
    _run_until(_SWAPPER, "moved", str(db))
    assert not db.exists() and "buffer.db.salvaged" in _files(tmp_path)
    box = await Outbox.open(db, CFG, ["orion"])
    try:
        assert [r.seq for r in await box.read("orion", 1000)] == sorted(still)
    finally:
        await box.close()
    [moved] = [n for n in _files(tmp_path) if n.startswith("buffer.db.corrupt-")]
    assert (tmp_path / moved).read_bytes() == damaged
    assert _files(tmp_path) == ["buffer.db", moved]


async def test_a_salvage_on_a_full_disk_fails_whole_and_succeeds_once_there_is_room(
    tmpfs: Callable[..., Path],
) -> None:
    disk = tmpfs("4m")
    db = disk / "buffer.db"
    still = await _damaged_buffer(db, 400)
    damaged = db.read_bytes()
    fill(disk)
    with pytest.raises(BufferUnavailable) as failed:
        await Outbox.open(db, CFG, ["orion"])
    assert str(failed.value).startswith(
        f"buffer: cannot salvage {db}, damaged (database disk image is malformed), got a full disk ("
    )
    assert str(failed.value).endswith(
        f"; the damaged file is left as it is: free space in {disk} (the salvage writes a copy of what it still "
        "holds, up to the file's size) and start again"
    )
    assert db.read_bytes() == damaged
    assert _files(disk) == ["buffer.db", "filler"]
    (disk / "filler").unlink()
    box = await Outbox.open(db, CFG, ["orion"])
    try:
        assert [r.seq for r in await box.read("orion", 1000)] == sorted(still)
    finally:
        await box.close()


async def test_the_reserve_file_is_released_to_make_room_for_a_salvage(tmpfs: Callable[..., Path]) -> None:
    disk = tmpfs("4m")
    db = disk / "buffer.db"
    still = await _damaged_buffer(db, 400)
    reserve = disk / "buffer.db.reserve"
    reserve.write_bytes(bytes(1024 * 1024))
    fill(disk)
    box = await Outbox.open(db, BufferConfig(durability=Durability.FULL, reserve_bytes=1024 * 1024), ["orion"])
    try:
        assert [r.seq for r in await box.read("orion", 1000)] == sorted(still)
    finally:
        await box.close()
    assert not reserve.exists() or reserve.stat().st_size <= 1024 * 1024
