"""Rotation takes only this gateway id's files, by the time in their names: a share of several boxes, a renamed box.

Regression: rotation sorted every `edgegw-*.tar.gz` by name and kept the last `generations`. The names start
with the gateway id, so on a share two boxes copy to, the box whose id sorts last deleted the other's backups;
and a box given a new id that sorts first deleted each night's new backup right after checking it, then
crashed on it (FileNotFoundError, nothing recorded, the status still "ok" from the old id).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, read_status, run_backup, scheduler, status_line
from tests.backup.conftest import RELEASE, write_config

NIGHT = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


def _job(tmp_path: Path, gateway_id: str, config: BackupConfig, data_dir: Path | None = None) -> Job:
    if data_dir is None:
        data_dir = tmp_path / gateway_id / "data"
        shutil.copytree(RELEASE, data_dir)
    config_path = write_config(data_dir.parent / f"{gateway_id}.toml", data_dir, gateway_id)
    return Job(gateway_id=gateway_id, data_dir=data_dir, config_path=config_path, config=config)


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def test_boxes_sharing_a_share_each_keep_their_own_generations(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    share = tmpfs("64m", tmp_path / "share")
    config = BackupConfig(generations=2, copy_to=share)
    # "gw-a" is a prefix of "gw-a-01", and "gw-z" sorts after both
    boxes = [_job(tmp_path, gid, config) for gid in ("gw-z", "gw-a-01", "gw-a")]
    for night in range(3):
        for n, job in enumerate(boxes):
            run_backup(job, NIGHT + timedelta(days=night, minutes=n))
    assert _names(share) == sorted(
        archive.file_name(job.gateway_id, NIGHT + timedelta(days=night, minutes=n))
        for n, job in enumerate(boxes)
        for night in (1, 2)
    )
    for n, job in enumerate(boxes):
        assert [p.name for p in archive.list_backups(share, job.gateway_id)] == [
            archive.file_name(job.gateway_id, NIGHT + timedelta(days=night, minutes=n)) for night in (1, 2)
        ]


def test_files_of_another_shape_on_the_share_are_never_touched(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    share = tmpfs("64m", tmp_path / "share")
    strangers = ["edgegw-notes.tar.gz", "edgegw-gw-1-20261399T000000Z.tar.gz", "edgegw-gw-1-2026.tar.gz"]
    for name in strangers:
        (share / name).write_bytes(b"not a backup")
    job = _job(tmp_path, "gw-1", BackupConfig(generations=1, copy_to=share))
    made = [run_backup(job, NIGHT + timedelta(days=d)) for d in range(2)]
    assert _names(share) == sorted([*strangers, made[-1].name])


def test_a_renamed_box_keeps_its_new_backups_and_leaves_the_old_ids_alone(tmp_path: Path) -> None:
    config = BackupConfig(generations=3)
    old = _job(tmp_path, "gw-kuma-02", config)
    before = [run_backup(old, NIGHT + timedelta(days=d)) for d in range(3)]
    renamed = _job(tmp_path, "gw-kuma-01", config, data_dir=old.data_dir)  # sorts before the old id
    after = [run_backup(renamed, NIGHT + timedelta(days=d)) for d in range(5, 10)]
    assert archive.list_backups(renamed.out_dir, "gw-kuma-01") == after[2:]
    assert archive.list_backups(renamed.out_dir, "gw-kuma-02") == before  # another id's: left for the admin
    assert archive.list_backups(renamed.out_dir) == [*before, *after[2:]]  # `backup list`: all, by time
    status = read_status(renamed.data_dir)
    assert status["ok"] is True
    assert status["last_success"]["file"] == str(after[-1])
    assert after[-1].is_file()


def test_the_file_just_written_is_kept_when_the_clock_went_back(tmp_path: Path) -> None:
    job = _job(tmp_path, "gw-1", BackupConfig(generations=2))
    later = [run_backup(job, NIGHT + timedelta(days=d)) for d in range(2)]
    stepped_back = run_backup(job, NIGHT - timedelta(days=30))  # an RTC reset before NTP caught up
    assert stepped_back.is_file()
    assert archive.list_backups(job.out_dir) == [stepped_back, later[-1]]
    assert read_status(job.data_dir)["last_success"]["file"] == str(stepped_back)


def test_an_unexpected_error_is_recorded_as_a_failed_night_and_does_not_escape(tmp_path: Path) -> None:
    good = _job(tmp_path, "gw-1", BackupConfig())
    run_backup(good, NIGHT)
    # a real ValueError from deep inside (os.open refuses a NUL in the file name), no OSError nor BackupError
    job = Job(gateway_id="gw\x001", data_dir=good.data_dir, config_path=good.config_path, config=good.config)
    with pytest.raises(archive.BackupError) as caught:
        run_backup(job, NIGHT + timedelta(days=1))
    assert str(caught.value).startswith("backup: failed unexpectedly, got ValueError: ")
    status = json.loads((good.data_dir / "backup-status.json").read_text())
    assert status["ok"] is False
    assert status["last_failure"]["error"] == str(caught.value)
    assert status_line(good.data_dir) == f"backup: FAILED at {(NIGHT + timedelta(days=1)).isoformat()}: {caught.value}"
    now = [NIGHT + timedelta(days=2)]
    assert (
        scheduler(
            job, once=True, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + timedelta(seconds=s))
        )
        == 1
    )
