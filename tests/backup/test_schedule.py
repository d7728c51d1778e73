"""The window: config rules, the drawn time, and the scheduler driven by an injected clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gateway.backup import archive
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, drawn_time, next_run, run_backup, scheduler
from gateway.config import load_config
from gateway.errors import ConfigError

from .conftest import write_config

JST = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("04:00", "06:30", "the backup window touches operating hours 06:00-24:00, got 04:00-06:30"),
        ("23:00", "24:00", "the backup window touches operating hours 06:00-24:00, got 23:00-24:00"),
        ("03:00", "02:00", "window_start must be before window_end on the same night, got 03:00-02:00"),
        ("3:00", "05:00", "must be \"HH:MM\" between 00:00 and 24:00, got '3:00'"),
    ],
)
def test_a_window_outside_the_night_is_a_config_error(start: str, end: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BackupConfig(window_start=start, window_end=end)
    assert message in str(caught.value)


def test_operating_hours_may_be_allowed_explicitly() -> None:
    assert BackupConfig(window_start="12:00", window_end="13:00", allow_operating_hours=True).window_end == "13:00"
    assert BackupConfig(window_start="00:00", window_end="06:00").generations == 7


def test_the_drawn_time_stays_in_the_default_window_02_to_05_jst_every_night() -> None:
    config = BackupConfig()
    minutes = set()
    for d in range(366):
        at = drawn_time(config, "gw-0042", date(2026, 1, 1) + timedelta(days=d)).astimezone(JST)
        assert (2, 0) <= (at.hour, at.minute) < (5, 0)
        minutes.add(at.hour * 60 + at.minute)
    assert len(minutes) > 100  # drawn, not fixed: the fleet spreads over the window
    night = date(2026, 12, 4)
    assert drawn_time(config, "gw-0042", night) == drawn_time(config, "gw-0042", night)  # stable across restarts
    fleet = {drawn_time(config, f"gw-{i:04d}", night) for i in range(100)}
    assert len(fleet) > 50  # a hundred boxes do not all write to the file server at the same minute


def test_next_run_is_tonight_or_once_passed_tomorrow_night() -> None:
    config = BackupConfig()
    evening = datetime(2026, 12, 4, 21, 0, tzinfo=JST)
    tonight = drawn_time(config, "gw", date(2026, 12, 5))
    assert next_run(config, "gw", evening) == tonight
    assert next_run(config, "gw", tonight) == drawn_time(config, "gw", date(2026, 12, 6))


def test_the_scheduler_sleeps_until_the_drawn_time_and_backs_up_once(box: tuple[Path, Path]) -> None:
    config_path, data_dir = box
    config = BackupConfig()
    job = Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config_path, config=config)
    now = [datetime(2026, 12, 4, 0, 5, tzinfo=JST)]  # the systemd timer fires after local midnight
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += timedelta(seconds=seconds)

    assert scheduler(job, once=True, clock=lambda: now[0], sleep=sleep) == 0
    at = drawn_time(config, "fixture-gw", date(2026, 12, 4))
    assert now[0] == at
    assert max(slept) <= 300.0
    [made] = archive.list_backups(job.out_dir)
    assert made.name == archive.file_name("fixture-gw", at.astimezone(UTC))


def test_check_config_names_the_backup_window_error(tmp_path: Path) -> None:
    path = write_config(tmp_path / "g.toml", tmp_path / "data", backup='window_start = "04:00"\nwindow_end = "07:00"')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [
        "backup: the backup window touches operating hours 06:00-24:00, got 04:00-07:00; "
        "keep it within 00:00-06:00, or set allow_operating_hours = true"
    ]


def test_the_fleet_device_reports_the_newest_backup_outcome(box: tuple[Path, Path]) -> None:
    """What `run_backup` records is what the Device entity's lastBackup and the backup alarm read."""
    from gateway.fleet.system import last_backup

    config_path, data_dir = box
    assert last_backup(data_dir) is None
    job = Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config_path, config=BackupConfig())
    night = datetime(2026, 12, 4, 3, 0, tzinfo=JST)
    run_backup(job, night)
    assert last_backup(data_dir) == {"at": night.timestamp(), "ok": True}
    config_path.unlink()  # the next night's backup cannot read the configuration: a failure
    with pytest.raises(archive.BackupError):
        run_backup(job, night + timedelta(days=1))
    assert last_backup(data_dir) == {"at": (night + timedelta(days=1)).timestamp(), "ok": False}


def test_a_status_that_cannot_be_written_neither_fails_a_good_backup_nor_hides_a_failure(
    box: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    config_path, data_dir = box
    (data_dir / "backup-status.json").mkdir()  # in the way of the status's rename, as a root-owned one would be
    job = Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config_path, config=BackupConfig())
    night = datetime(2026, 12, 4, 3, 0, tzinfo=JST)
    path = run_backup(job, night)
    assert path.exists()
    assert "backup: outcome not recorded in" in caplog.text and not (data_dir / "backup-status.json.tmp").exists()
    config_path.unlink()
    with pytest.raises(archive.BackupError, match=r"gateway\.toml"):  # the night's own error, not the status's
        run_backup(job, night + timedelta(days=1))
