"""A backup that runs out of room leaves no partial file behind, and says which directory is full.

Its `.part` file (on the data disk, or the copy's on the share) used to stay after ENOSPC, never removed:
each failed night left one more, the disk stayed full, and the message (`[Errno 28] No space left on
device`) named no directory. A killed run's `.part` stays too: the next run removes this box's stale ones.
Every disk here is a real file system (a tmpfs).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, read_status, run_backup
from tests.backup.conftest import RELEASE, write_config
from tests.support.tmpfs import fill, free_bytes

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
BLOB = 600_000  # incompressible: the backup is at least this big


def _box(data_dir: Path, tmp_path: Path, config: BackupConfig) -> Job:
    shutil.copytree(RELEASE, data_dir)
    (data_dir / "blob.bin").write_bytes(os.urandom(BLOB))
    path = write_config(tmp_path / "gateway.toml", data_dir)
    return Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=path, config=config)


def _leave_free(vol: Path, free: int) -> None:
    fill(vol)
    filler = vol / "filler"
    os.truncate(filler, filler.stat().st_size - (free - free_bytes(vol)))


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_full_share_keeps_no_partial_copy_and_names_the_share(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    share = tmpfs("4m", at=tmp_path / "share")
    job = _box(tmp_path / "data", tmp_path, BackupConfig(generations=3, copy_to=share))
    _leave_free(share, BLOB // 2)
    for night in range(2):  # a night that fails does not leave what the next one must find room beside
        with pytest.raises(archive.BackupError) as failed:
            run_backup(job, NIGHT + timedelta(night))
        kept = job.out_dir / archive.file_name("fixture-gw", NIGHT + timedelta(night))
        assert str(failed.value) == (
            f"backup copy {share / kept.name}: no room for its {kept.stat().st_size} bytes in {share}, got No space "
            f"left on device; the partial copy is removed, the backup itself is kept on the box: free space on the "
            f"share (`df -h {share}`)"
        )
        assert _hidden(share) == []
        assert read_status(job.data_dir)["last_failure"]["error"] == str(failed.value)
    (share / "filler").unlink()  # the file server's admin makes room
    copy = share / run_backup(job, NIGHT + timedelta(2)).name
    assert sorted(p.name for p in share.iterdir()) == [copy.name]


def test_a_full_data_disk_keeps_no_partial_backup_and_names_the_directory(
    tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    vol = tmpfs("8m", at=tmp_path / "vol")
    job = _box(vol / "data", tmp_path, BackupConfig(generations=3))
    stores = sum(f.stat().st_size for f in job.data_dir.rglob("*") if f.is_file())
    _leave_free(vol, stores + BLOB)  # room for the staged copies, not for the tar beside them
    with pytest.raises(archive.BackupError) as failed:
        run_backup(job, NIGHT)
    name = archive.file_name("fixture-gw", NIGHT)
    assert str(failed.value) == (
        f"backup: no room for {name} in {job.out_dir}, got No space left on device; the partial file is removed, the "
        f"backups kept there are as they were: free space in {job.out_dir} (`df -h {job.out_dir}`, `df -i` for "
        "inodes), or point [backup] directory at a larger disk"
    )
    assert os.listdir(job.out_dir) == []


def _part(directory: Path, gateway_id: str, at: datetime, age_s: float) -> Path:
    """A `.part` as a run killed while it wrote left it, last written `age_s` ago."""
    directory.mkdir(parents=True, exist_ok=True)
    part = directory / f".{archive.file_name(gateway_id, at)}.part"
    part.write_bytes(b"\x1f\x8b half a backup")
    then = time.time() - age_s
    os.utime(part, (then, then))
    return part


def test_a_killed_runs_partial_files_are_removed_by_the_next_run_and_no_one_elses(
    tmp_path: Path, tmpfs: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    share = tmpfs("16m", at=tmp_path / "share")
    job = _box(tmp_path / "data", tmp_path, BackupConfig(copy_to=share))
    old = 2 * archive.STALE_AFTER_S
    stale = [_part(d, "fixture-gw", NIGHT - timedelta(1), old) for d in (job.out_dir, share)]
    # another box's on the shared share, and one being written now (by a run of this box on another disk), which
    # holds its lock as a running run does (part_file.py)
    others = [_part(share, "fixture-gw-02", NIGHT - timedelta(1), old), _part(share, "fixture-gw", NIGHT, 0.0)]
    with open(others[1], "rb+") as running, caplog.at_level(logging.WARNING, logger="gateway.backup"):
        fcntl.flock(running, fcntl.LOCK_EX)
        run_backup(job, NIGHT + timedelta(hours=1))
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in others)
    removed = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert removed == [
        f"backup: removed {p}, left by a backup that did not finish (killed, or a power cut)" for p in stale
    ]
