"""A link or a file in place of the backup directory (or the share's) before a run: refused by name, nothing made,
written or handed over through it.

`<data_dir>/backups` is in the service user's data directory: that user (or a restore of its files) can leave a
symbolic link there. `sudo edgegw backup now` opened it by path, following the link: it wrote the backup into the
link's target and handed that directory to the service user. The links are real, planted by a real process of the
service user (setresuid); the "victim" stands for a directory such as /etc/sudoers.d.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.backup import archive
from tests.backup.conftest import RELEASE, write_config
from tests.backup.test_restore_config import SERVICE_USER, as_root
from tests.backup.test_root_links import _link_as_service_user

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
SECRET = b"root:$6$not-for-the-service-user\n"


def _box(top: Path) -> tuple[Path, Path, Path]:
    """(config, data dir, victim): the data directory the service user's, the victim root's."""
    data_dir = top / "data"
    shutil.copytree(RELEASE, data_dir)
    for p in [data_dir, *data_dir.rglob("*")]:
        os.chown(p, *SERVICE_USER)
    victim = top / "sudoers.d"
    victim.mkdir(mode=0o755)
    (victim / "shadow").write_bytes(SECRET)
    (victim / "shadow").chmod(0o600)
    return write_config(top / "gateway.toml", data_dir), data_dir, victim


def _create(config: Path, data_dir: Path, out_dir: Path) -> Path:
    return archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=NIGHT)


def _untouched(victim: Path) -> None:
    assert sorted(p.name for p in victim.iterdir()) == ["shadow"]
    st = victim.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o755)
    assert (victim / "shadow").read_bytes() == SECRET


@as_root
def test_roots_backup_refuses_a_link_the_service_user_put_in_place_of_the_backup_directory(
    searchable_tmp: Path,
) -> None:
    """Root wrote the backup into the victim and chown'd the victim to the service user."""
    config, data_dir, victim = _box(searchable_tmp)
    out_dir = data_dir / "backups"
    _link_as_service_user(victim, out_dir)
    with pytest.raises(archive.BackupError) as refused:
        _create(config, data_dir, out_dir)
    _untouched(victim)
    assert str(refused.value) == (
        f"backup: {out_dir} must be a directory, got a symbolic link to {victim} in {data_dir}, which uid "
        f"{SERVICE_USER[0]} may change (not only root or this user); nothing was made or written through it: if the "
        f"link is yours, name the directory it leads to in the config instead of {out_dir}; if not, a process with "
        f"those rights tampers with {data_dir}: find it, remove the link and back up again"
    )


@as_root
def test_roots_backup_refuses_a_link_above_the_backup_directory_too(searchable_tmp: Path) -> None:
    """`[backup] directory = <data_dir>/backups/nightly`: the link one step up leads root just as far."""
    config, data_dir, victim = _box(searchable_tmp)
    _link_as_service_user(victim, data_dir / "backups")
    with pytest.raises(archive.BackupError, match=r"backups must be a directory, got a symbolic link to"):
        _create(config, data_dir, data_dir / "backups" / "nightly")
    _untouched(victim)


@as_root
def test_roots_copy_refuses_a_link_in_a_share_the_service_user_owns(searchable_tmp: Path, tmp_path: Path) -> None:
    config, data_dir, victim = _box(searchable_tmp)
    made = _create(config, data_dir, data_dir / "backups")
    share = searchable_tmp / "share"
    share.mkdir()
    os.chown(share, *SERVICE_USER)
    _link_as_service_user(victim, share / "kawasaki")
    with pytest.raises(
        archive.BackupError, match=rf"^backup: {share / 'kawasaki'} must be a directory, got a symbolic"
    ):
        archive.copy(made, share / "kawasaki")
    _untouched(victim)


def test_a_file_in_place_of_the_backup_directory_is_named_with_the_fix(box: tuple[Path, Path]) -> None:
    """It was a bare NotADirectoryError, `backup: [Errno 20] Not a directory: …` in the journal."""
    config, data_dir = box
    out_dir = data_dir / "backups"
    out_dir.write_bytes(b"left by a restore")
    with pytest.raises(archive.BackupError) as refused:
        _create(config, data_dir, out_dir)
    assert str(refused.value) == (
        f"backup: {out_dir} must be a directory, got a file there; nothing was written through it: remove {out_dir} "
        "and back up again"
    )
    assert out_dir.read_bytes() == b"left by a restore"


def test_a_link_of_the_admins_own_in_a_directory_only_root_and_this_user_may_change_is_followed(
    box: tuple[Path, Path], tmp_path: Path
) -> None:
    """The backups moved to another disk by a link in a directory of this user's: that link is followed."""
    config, data_dir = box
    disk = tmp_path / "disk"
    disk.mkdir(mode=0o700)
    (tmp_path / "backups").symlink_to(disk)
    made = _create(config, data_dir, tmp_path / "backups" / "nightly")
    assert made.parent == tmp_path / "backups" / "nightly"
    assert [p.name for p in (disk / "nightly").iterdir()] == [made.name]
    assert (disk / "nightly").stat().st_mode & 0o777 == 0o700
