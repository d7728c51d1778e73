"""A backup directory the backup service may not write (EROFS) fails the night with the fix named.

edgegw-backup.service has ProtectSystem=strict: it may write only its StateDirectory (the data directory) and
ReadWritePaths=-/srv/edgegw-backups. A `copy_to` or `[backup] directory` anywhere else is read-only to it, and
the night failed with a bare "[Errno 30] Read-only file system". Here the read-only mount is a real one: a
read-only bind mount (tests/storage/read_only.py; needs root, as here and in CI).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, read_status, run_backup
from tests.backup.conftest import RELEASE, write_config
from tests.storage.read_only import Binds

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A directory mounted read-only, as ProtectSystem=strict leaves one outside the unit's writable paths."""
    mnt = tmp_path / "mnt"
    (mnt / "share").mkdir(parents=True)
    with Binds() as binds:
        yield binds.read_only(mnt)


def _job(tmp_path: Path, config: BackupConfig) -> Job:
    data_dir = tmp_path / "data"
    shutil.copytree(RELEASE, data_dir)
    return Job(
        gateway_id="gw1", data_dir=data_dir, config_path=write_config(tmp_path / "g.toml", data_dir), config=config
    )


def _fix(directory: Path) -> str:
    return (
        "read-only here: the backup service may write only under /srv/edgegw-backups and the data directory; "
        f"add ReadWritePaths={directory} with systemctl edit edgegw-backup.service"
    )


def test_a_read_only_copy_to_names_the_drop_in_that_allows_it(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    # a share that is mounted (another file system), read-only to the service as ProtectSystem=strict leaves it
    share = tmpfs("1m", tmp_path / "mnt" / "share", read_only=True)
    job = _job(tmp_path, BackupConfig(copy_to=share))
    with pytest.raises(archive.BackupError) as caught:
        run_backup(job, NIGHT)
    assert (
        str(caught.value) == f"backup: cannot write {share / '.edgegw-gw1-20261203T181200Z.tar.gz.part'}: {_fix(share)}"
    )
    status = read_status(job.data_dir)
    assert status["ok"] is False
    assert status["last_failure"]["error"] == str(caught.value)


def test_a_read_only_backup_directory_names_the_drop_in_that_allows_it(tmp_path: Path, read_only: Path) -> None:
    directory = read_only / "backups"  # not there yet: made by the backup, which the mount refuses
    job = _job(tmp_path, BackupConfig(directory=directory))
    with pytest.raises(archive.BackupError) as caught:
        run_backup(job, NIGHT)
    assert str(caught.value) == f"backup: cannot write {directory}: {_fix(directory)}"
    assert read_status(job.data_dir)["ok"] is False
