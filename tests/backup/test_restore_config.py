"""A restore's config: written whole through a rename under the config apply's lock, keeping mode and owner.

It used to be copied into the file in place, without the lock: a power cut mid-copy (or a full /etc)
left a truncated gateway.toml, and an apply from another process could interleave with it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.archive import BackupError
from gateway.control.ops_config import lock_path
from tests.backup.conftest import write_config
from tests.support.tmpfs import fill

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
SERVICE_USER = (4321, 4322)  # uid, gid: edgegw on the box, not root
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root (as in CI)")


def _backup(config: Path, data_dir: Path) -> Path:
    return archive.create(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=data_dir / "backups", now=NIGHT
    )


def _restore(path: Path, config: Path, data_dir: Path) -> Path:
    return archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)


def _edited(config: Path) -> str:
    """The config changed after the backup, so that a restore shows."""
    text = config.read_text().replace('kind = "weather"', 'kind = "river-level"')
    config.write_text(text)
    return text


def test_the_config_is_replaced_by_a_rename_keeping_its_mode(box: tuple[Path, Path]) -> None:
    config, data_dir = box
    backed_up = config.read_text()
    path = _backup(config, data_dir)
    _edited(config)
    config.chmod(0o660)  # root:edgegw 0660 as the package installs it
    before = config.stat().st_ino
    _restore(path, config, data_dir)
    assert config.read_text() == backed_up
    assert config.stat().st_ino != before  # a new file renamed into place, not the old one rewritten
    assert config.stat().st_mode & 0o777 == 0o660
    assert sorted(p.name for p in config.parent.iterdir() if p.name.startswith(f".{config.name}")) == [
        f".{config.name}.lock"  # no staged or temporary file left
    ]


@as_root
def test_a_root_restore_keeps_the_configs_owner_and_gives_the_lock_it_makes_to_the_service_user(
    box: tuple[Path, Path],
) -> None:
    config, data_dir = box
    path = _backup(config, data_dir)
    os.chown(config, *SERVICE_USER)
    os.chown(data_dir, *SERVICE_USER)  # /var/lib/edgegw is the service user's
    assert not lock_path(config).exists()
    _restore(path, config, data_dir)  # `sudo edgegw backup restore`
    assert (config.stat().st_uid, config.stat().st_gid) == SERVICE_USER  # the gateway can still read it
    lock = lock_path(config).stat()
    assert (lock.st_uid, lock.st_gid) == SERVICE_USER  # the gateway's next apply can still open it


@as_root
def test_a_root_restore_gives_the_previous_files_directory_to_the_service_user(box: tuple[Path, Path]) -> None:
    """They were the service user's files: it lists and deletes what holds them (root made it only 0700 root's)."""
    config, data_dir = box
    path = _backup(config, data_dir)
    for p in [config, data_dir, *data_dir.rglob("*")]:
        os.chown(p, *SERVICE_USER)
    aside = _restore(path, config, data_dir)  # `sudo edgegw backup restore`
    owners = {str(p.relative_to(aside)): (p.stat().st_uid, p.stat().st_gid) for p in [aside, *aside.rglob("*")]}
    assert "data/web/accounts.db" in owners
    assert owners == dict.fromkeys(owners, SERVICE_USER)


def test_a_restore_onto_a_full_etc_leaves_the_config_and_the_data_as_they_were(
    box: tuple[Path, Path], tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    _, data_dir = box
    etc = tmpfs("1m", at=tmp_path / "etc")
    config = write_config(etc / "gateway.toml", data_dir)
    config.write_text(config.read_text() + "# a long comment\n" * 4096)  # more than the room a rewrite frees
    path = _backup(config, data_dir)
    current = write_config(config, data_dir).read_text()
    buffer_before = (data_dir / "buffer.db").read_bytes()
    fill(etc)
    with pytest.raises(BackupError) as failed:
        _restore(path, config, data_dir)
    assert str(failed.value) == (
        f"backup restore: {config} not written, got No space left on device; nothing restored, every file is as it "
        f"was: make room under {etc} (or give write access to it) and restore again"
    )
    assert config.read_text() == current
    assert (data_dir / "buffer.db").read_bytes() == buffer_before
    assert not list(data_dir.glob(".pre-restore-*"))
    assert sorted(p.name for p in etc.iterdir()) == [".gateway.toml.lock", "filler", "gateway.toml"]


def test_a_restore_waits_for_an_apply_that_holds_the_config_lock(box: tuple[Path, Path]) -> None:
    config, data_dir = box
    backed_up = config.read_text()
    path = _backup(config, data_dir)
    edited = _edited(config)
    held = threading.Event()
    seen: list[tuple[str, bool]] = []

    def apply_elsewhere() -> None:  # another process's config apply, mid-way
        fd = os.open(lock_path(config), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.set()
            threading.Event().wait(0.3)
            seen.append((config.read_text(), any(data_dir.glob(".pre-restore-*"))))  # just before it lets go
        finally:
            os.close(fd)

    other = threading.Thread(target=apply_elsewhere, name="apply-elsewhere")
    other.start()
    try:
        assert held.wait(10)
        _restore(path, config, data_dir)
    finally:
        other.join()
    assert seen == [(edited, False)]  # nothing touched while the lock was held
    assert config.read_text() == backed_up


def test_a_restore_that_cannot_have_the_config_lock_says_which_and_restores_nothing(box: tuple[Path, Path]) -> None:
    config, data_dir = box
    path = _backup(config, data_dir)
    edited = _edited(config)
    buffer_before = (data_dir / "buffer.db").read_bytes()
    lock = lock_path(config)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)  # a stuck apply
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(BackupError) as failed:
            archive.restore(
                path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT, lock_wait_s=0
            )
    finally:
        os.close(fd)
    assert str(failed.value) == (
        f"backup restore: the config lock {lock} is held by another process, got no lock within 0 s; nothing "
        f"restored: a config apply is under way, let it end and restore again (`fuser -v {lock}` names the process)"
    )
    assert config.read_text() == edited
    assert (data_dir / "buffer.db").read_bytes() == buffer_before
    assert not list(data_dir.glob(".pre-restore-*"))
