"""A share that is not mounted gets no copy: its bare mount point is the local disk, not off the box.

The file server down at boot, an automount that failed: `copy_to` then named a directory on the box's own
disk, the copy was made there (its missing directories too), verified and reported ok, and the box had no
backup off it. Every share here is a real mount (a tmpfs), unmounted for real.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, read_status, run_backup, status_line
from tests.backup.conftest import RELEASE, write_config
from tests.support.tmpfs import mount_tmpfs, unmount

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)


def _job(tmp_path: Path, copy_to: Path) -> Job:
    data_dir = tmp_path / "data"
    shutil.copytree(RELEASE, data_dir)
    config = write_config(tmp_path / "gateway.toml", data_dir)
    return Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config, config=BackupConfig(copy_to=copy_to))


def _refusal(share: Path, anchor: Path, data_dir: Path) -> str:
    return (
        f"backup: share {share} is not mounted: {anchor} is on the same file system as the data directory {data_dir}; "
        f"no copy made, nothing created there, the backup is on the box only: mount the share (`findmnt -T {anchor}` "
        "shows what is mounted there; /etc/fstab, the file server) or set [backup] copy_to to where it is mounted"
    )


def test_a_share_that_did_not_mount_gets_no_copy_and_the_night_fails(tmp_path: Path) -> None:
    mount_point = tmp_path / "srv-edgegw-backups"
    mount_tmpfs(mount_point, "16m")
    try:
        job = _job(tmp_path, mount_point / "kawasaki")
        first = run_backup(job, NIGHT)
        assert (mount_point / "kawasaki" / first.name).is_file()  # mounted: copied into a directory made there
    finally:
        unmount(mount_point)
    with pytest.raises(archive.BackupError) as failed:
        run_backup(job, NIGHT + timedelta(1))
    assert str(failed.value) == _refusal(mount_point / "kawasaki", mount_point, job.data_dir)
    assert list(mount_point.iterdir()) == []  # not even the directory
    assert (job.out_dir / archive.file_name("fixture-gw", NIGHT + timedelta(1))).is_file()  # kept on the box
    assert read_status(job.data_dir)["ok"] is False
    assert status_line(job.data_dir) == (
        f"backup: FAILED at {(NIGHT + timedelta(1)).isoformat()}: {_refusal(mount_point / 'kawasaki', mount_point, job.data_dir)}"
    )


def test_a_mount_point_never_mounted_gets_nothing_written_into_it(tmp_path: Path) -> None:
    mount_point = tmp_path / "srv-edgegw-backups"
    mount_point.mkdir()
    job = _job(tmp_path, mount_point)
    with pytest.raises(archive.BackupError) as failed:
        run_backup(job, NIGHT)
    assert str(failed.value) == _refusal(mount_point, mount_point, job.data_dir)
    assert list(mount_point.iterdir()) == []


def test_a_mounted_share_gets_its_directories_made_and_the_copy(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    """The check refuses only the local disk: under a mount, the directories copy_to names are made."""
    share = tmpfs("16m", at=tmp_path / "share")
    job = _job(tmp_path, share / "kawasaki" / "gw")
    path = run_backup(job, NIGHT)
    assert archive.verify(share / "kawasaki" / "gw" / path.name).gateway_id == "fixture-gw"
    assert read_status(job.data_dir)["last_success"]["copy"] == str(share / "kawasaki" / "gw" / path.name)
