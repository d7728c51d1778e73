"""The nightly backup rotates its old generations even when the data disk lacks room to check the new one.

The backups are kept on the data disk (`<data_dir>/backups` unless `[backup] directory` says otherwise)
and checked there too (/tmp is RAM on these boxes): once the disk had less free than the stores' size
plus the 16 MiB margin, the check was refused after the backup was written, and the job stopped before
`rotate`. Each night then added one more unrotated backup to that same disk, which only took the room
the check lacked further away, until the disk was full and the gateway had no room left for readings.
Every disk here is a real file system (a tmpfs), every backup a real one.
"""

from __future__ import annotations

import os
import re
import shutil
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
BLOB = 2 << 20  # what an old generation holds more than tonight's (a file since deleted), incompressible


def _box(vol: Path, tmp_path: Path, old: int) -> tuple[Job, int]:
    """A box whose data directory, and so its backups, are on `vol`, with `old` backups of earlier nights that each
    take BLOB more than tonight's will; returns its job (2 generations kept) and what tonight's verify needs."""
    data_dir = vol / "data"
    shutil.copytree(RELEASE, data_dir)
    config = write_config(tmp_path / "gateway.toml", data_dir)
    job = Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config, config=BackupConfig(generations=2))
    (data_dir / "blob.bin").write_bytes(os.urandom(BLOB))
    for n in range(old, 0, -1):
        archive.create(
            data_dir=data_dir,
            config_path=config,
            gateway_id="fixture-gw",
            out_dir=job.out_dir,
            now=NIGHT - timedelta(n),
        )
    (data_dir / "blob.bin").unlink()
    # tonight's backup as it will be (taken where a backup leaves the backups out), then removed
    probe = archive.create(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=job.out_dir, now=NIGHT - timedelta(30)
    )
    declared = sum(m.size for m in archive.verify(probe).members)
    probe.unlink()
    return job, declared + archive.FREE_MARGIN_BYTES


def _leave_free(vol: Path, free: int) -> None:
    fill(vol)
    filler = vol / "filler"
    os.truncate(filler, filler.stat().st_size - (free - free_bytes(vol)))
    assert abs(free_bytes(vol) - free) < 64 << 10


def _kept(job: Job) -> list[str]:
    return [p.name for p in archive.list_backups(job.out_dir)]


def test_a_data_disk_short_of_room_to_check_the_backup_still_drops_the_oldest_generations_every_night(
    tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    vol = tmpfs("24m", at=tmp_path / "vol")
    job, need = _box(vol, tmp_path, old=2)
    _leave_free(vol, need - 3 * BLOB)  # rotating both old generations out, one a night, frees 2 BLOB: still short
    for night in range(3):
        now = NIGHT + timedelta(night)
        with pytest.raises(archive.BackupError) as failed:
            run_backup(job, now)
        name = archive.file_name("fixture-gw", now)
        assert re.fullmatch(
            rf"backup {re.escape(str(job.out_dir / name))}: its 7 files need \d+ bytes \(.*\) and a 16\.0 MiB margin "
            rf"in the data directory {re.escape(str(job.data_dir))} to be checked, got \d+ bytes \(.*\) free there; "
            r"nothing was extracted: free space there or verify the file on another box; "
            rf"{re.escape(name)} was written but not checked \(no room to check it, which says nothing against the "
            rf"file\): 1 older backup\(s\) rotated out of {re.escape(str(job.out_dir))} all the same, the newest 2 kept",
            str(failed.value),
        ), str(failed.value)
        assert _kept(job)[-1] == name
        assert len(_kept(job)) == 2  # not one more each night
        status = read_status(job.data_dir)
        assert status["ok"] is False
        assert status["last_failure"]["error"] == str(failed.value)


def test_the_room_the_rotation_frees_is_used_to_check_the_backup_the_same_night(
    tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    vol = tmpfs("24m", at=tmp_path / "vol")
    job, need = _box(vol, tmp_path, old=2)
    _leave_free(vol, need - BLOB // 2)  # short of room until one old generation is rotated out
    path = run_backup(job, NIGHT)
    assert _kept(job) == [archive.file_name("fixture-gw", NIGHT - timedelta(1)), path.name]
    assert read_status(job.data_dir)["ok"] is True


def test_a_copy_to_the_share_is_not_made_of_a_backup_that_could_not_be_checked(
    tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    """The share's own rotation would push a checked backup out for it."""
    vol = tmpfs("24m", at=tmp_path / "vol")
    job, need = _box(vol, tmp_path, old=1)
    share = tmp_path / "share"
    job = Job(
        gateway_id=job.gateway_id,
        data_dir=job.data_dir,
        config_path=job.config_path,
        config=BackupConfig(generations=2, copy_to=share),
    )
    _leave_free(vol, need - 3 * BLOB)
    with pytest.raises(archive.BackupError) as failed:
        run_backup(job, NIGHT)
    assert str(failed.value).endswith(
        f"0 older backup(s) rotated out of {job.out_dir} all the same, the newest 2 kept; not copied to {share}"
    )
    assert not share.exists()
