"""Backup files on real data directories: what they hold, verify, refusals, restore, rotation, the off-box copy."""

from __future__ import annotations

import shutil
import sqlite3
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.archive import BackupError
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, read_status, run_backup, status_line

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)  # 03:12 JST


def _rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(db_path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _backup(config: Path, data_dir: Path, now: datetime = NIGHT, *, include_secret_key: bool = False) -> Path:
    return archive.create(
        data_dir=data_dir,
        config_path=config,
        gateway_id="fixture-gw",
        out_dir=data_dir / "backups",
        now=now,
        include_secret_key=include_secret_key,
    )


def test_a_backup_holds_config_and_every_store_and_not_the_key(box: tuple[Path, Path]) -> None:
    config, data_dir = box
    path = _backup(config, data_dir)
    assert path.name == "edgegw-fixture-gw-20261203T181200Z.tar.gz"
    assert path.stat().st_mode & 0o777 == 0o600
    manifest = archive.verify(path)
    assert manifest.gateway_id == "fixture-gw"
    assert {m.name: m.schema_version for m in manifest.members} == {
        "config/gateway.toml": None,
        "data/buffer.db": 1,
        "data/config_versions.db": 1,
        "data/secrets.enc": None,  # still encrypted: the same bytes as on disk
        "data/web/accounts.db": 1,
        "data/web/audit.db": 1,
        "data/web/audit.head": None,
    }
    with tarfile.open(path) as tar:
        secrets = tar.extractfile("data/secrets.enc")
        assert secrets is not None and secrets.read() == (data_dir / "secrets.enc").read_bytes()
    with_key = _backup(config, data_dir, NIGHT + timedelta(days=1), include_secret_key=True)
    assert "data/secrets.key" in {m.name for m in archive.verify(with_key).members}


def test_restore_brings_the_night_back_and_keeps_what_it_replaced(box: tuple[Path, Path]) -> None:
    config, data_dir = box
    path = _backup(config, data_dir)
    before = _rows(data_dir / "buffer.db", "SELECT seq, body FROM outbox ORDER BY seq")
    # the next day: readings delivered and the config changed
    with sqlite3.connect(data_dir / "buffer.db") as db:
        db.execute("DELETE FROM outbox WHERE seq < 500")
    config.write_text(config.read_text().replace('kind = "weather"', 'kind = "river-level"'))
    old_config = config.read_text()
    aside = archive.restore(
        path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT + timedelta(days=1)
    )
    assert _rows(data_dir / "buffer.db", "SELECT seq, body FROM outbox ORDER BY seq") == before
    assert 'kind = "weather"' in config.read_text()
    assert (aside / "gateway.toml").read_text() == old_config
    assert len(_rows(aside / "data" / "buffer.db", "SELECT seq FROM outbox")) == 501  # seq 500-1000
    assert (data_dir / "secrets.key").exists()  # the box's key stays: the backup had none
    assert (data_dir / "buffer.db").stat().st_mode & 0o777 == 0o640


def test_a_second_restore_within_the_same_second_keeps_both_sets_aside(box: tuple[Path, Path]) -> None:
    config, data_dir = box
    path = Path(shutil.copy(_backup(config, data_dir), data_dir.parent))  # a restore moves data/backups aside
    at = NIGHT + timedelta(days=1)
    first = archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=at)
    second = archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=at)
    assert (first.name, second.name) == (".pre-restore-20261204T181200Z", ".pre-restore-20261204T181200Z-2")
    assert (first / "data" / "buffer.db").exists() and (second / "data" / "buffer.db").exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not-a-backup"])
def test_a_damaged_backup_is_refused_by_verify_and_restore(box: tuple[Path, Path], damage: str) -> None:
    config, data_dir = box
    path = _backup(config, data_dir)
    raw = bytearray(path.read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "flipped":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = bytearray(b"hello")
    path.write_bytes(bytes(raw))
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    assert str(caught.value).startswith(f"backup {path}: ")
    assert "use another generation" in str(caught.value) or "not an edgegw backup" in str(caught.value)
    buffer_before = (data_dir / "buffer.db").read_bytes()
    with pytest.raises(BackupError):
        archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    assert (data_dir / "buffer.db").read_bytes() == buffer_before
    assert not list(data_dir.glob(".pre-restore-*"))


def test_a_member_changed_after_the_fact_fails_its_checksum(box: tuple[Path, Path], tmp_path: Path) -> None:
    config, data_dir = box
    path = _backup(config, data_dir)
    unpacked = tmp_path / "unpacked"
    with tarfile.open(path) as tar:
        tar.extractall(unpacked, filter="data")
        names = tar.getnames()
    member = unpacked / "config" / "gateway.toml"
    # the same size, so that the checksum finds it (a size the manifest does not declare is refused earlier)
    member.write_text(member.read_text().replace('id = "fixture-gw"', 'id = "evil-gw-01"'))
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            tar.add(unpacked / name, arcname=name, recursive=False)
    with pytest.raises(BackupError) as caught:
        archive.verify(path)
    assert str(caught.value) == (
        f"backup {path}: config/gateway.toml does not match its checksum; the file is damaged, use another generation"
    )


def test_another_gateways_backup_needs_force_and_a_newer_edgegw_is_refused(
    box: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, data_dir = box
    path = _backup(config, data_dir)
    with pytest.raises(BackupError) as caught:
        archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="other-gw", now=NIGHT)
    assert str(caught.value) == (
        f"backup {path}: taken by gateway 'fixture-gw', got this gateway 'other-gw'; nothing was stopped or "
        "changed: pass --force to restore its data and config onto this box keeping the id 'other-gw', or "
        "--take-id to give this box the id 'fixture-gw' too (it replaces that box)"
    )
    archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="other-gw", now=NIGHT, force=True)
    monkeypatch.setattr(archive, "__version__", "9.0.0")  # the release that wrote the next backup
    newer = _backup(config, data_dir, NIGHT + timedelta(days=1))
    monkeypatch.undo()
    with pytest.raises(BackupError) as caught:
        archive.restore(newer, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    assert "written by edgegw 9.0.0, newer than this 0.1.0; a downgrade is refused" in str(caught.value)


def test_generations_are_rotated_and_each_copy_off_the_box_is_verified(
    box: tuple[Path, Path], tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    config, data_dir = box
    share = tmpfs("64m", tmp_path / "share")  # the mounted file-server share
    job = Job(
        gateway_id="fixture-gw",
        data_dir=data_dir,
        config_path=config,
        config=BackupConfig(generations=7, copy_to=share),
    )
    made = [run_backup(job, NIGHT + timedelta(days=d)) for d in range(10)]
    kept = archive.list_backups(job.out_dir)
    assert kept == made[3:]
    assert [p.name for p in archive.list_backups(share)] == [p.name for p in made[3:]]
    status = read_status(data_dir)
    assert status["ok"] is True and status["last_success"]["file"] == str(made[-1])
    assert status_line(data_dir) == f"backup: ok at {(NIGHT + timedelta(days=9)).isoformat()} ({made[-1]})"


def test_a_failed_backup_is_logged_at_error_and_shown_in_status(
    box: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, data_dir = box
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the share should be mounted")
    job = Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config, config=BackupConfig(copy_to=blocked))
    with pytest.raises(BackupError):
        run_backup(job, NIGHT)
    assert [r.levelname for r in caplog.records if r.message.startswith("backup failed")] == ["ERROR"]
    line = status_line(data_dir)
    assert line is not None and line.startswith(f"backup: FAILED at {NIGHT.isoformat()}: backup: ")


def test_a_data_directory_given_relative_is_verified_and_restored_into(
    box: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gateway.data_dir = "data"` (a development box, `edgegw --config` from its directory): the sqlite check
    opened each store by a file URI, which a relative path cannot be, and every verify and restore failed."""
    config, data_dir = box
    path = _backup(config, data_dir)
    monkeypatch.chdir(data_dir.parent)
    relative = Path(data_dir.name)
    assert archive.verify(path, data_dir=relative).gateway_id == "fixture-gw"
    aside = archive.restore(path, data_dir=relative, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    assert (aside / "data" / "buffer.db").is_file()  # the box's, moved aside for the backup's
