"""A backup replaced after its run wrote it, by anything but a link (another file, a FIFO): the run's verify, copy
and rotation read only the file it wrote, and say what took its name.

Run as the service user, the nightly run reads only what that user may anyway; the error then only needs to be
clear. A FIFO at the name must not hang the run, which holds the backup lock."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.backup import archive

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)


def _replaced(final: Path, what: str) -> str:
    return (
        f"backup: {final} was replaced after the backup wrote it, got {what}; nothing read through it: a process with "
        f"the service user's rights changes the backup directory {final.parent}: find it, then remove {final} and "
        "back up again"
    )


@pytest.mark.parametrize(("put", "what"), [("copy", "another file"), ("fifo", "no regular file")])
def test_a_backup_replaced_after_it_was_written_is_neither_verified_nor_copied(
    box: tuple[Path, Path], tmp_path: Path, put: str, what: str
) -> None:
    config, data_dir = box
    with archive.create_held(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=data_dir / "backups", now=NIGHT
    ) as made:
        moved = made.path.with_name(made.path.name + ".moved")
        made.path.rename(moved)
        if put == "copy":
            shutil.copyfile(moved, made.path)  # the same bytes, not the file the run wrote
        else:
            os.mkfifo(made.path, 0o600)
        with pytest.raises(archive.BackupError) as refused:
            archive.verify(made, data_dir=data_dir)
        assert str(refused.value) == _replaced(made.path, what)
        with pytest.raises(archive.BackupError) as refused:
            archive.copy(made, tmp_path / "share")
        assert str(refused.value) == _replaced(made.path, what)
        assert [p.name for p in (tmp_path / "share").iterdir()] == []


def test_the_rotation_goes_on_in_the_directory_the_run_holds_whatever_its_name_has_become(
    box: tuple[Path, Path],
) -> None:
    config, data_dir = box
    out_dir = data_dir / "backups"
    older = [
        archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=NIGHT - d)
        for d in (timedelta(days=2), timedelta(days=1))
    ]
    with archive.create_held(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=NIGHT
    ) as made:
        out_dir.rename(data_dir / "moved")
        out_dir.mkdir()
        elsewhere = out_dir / older[0].name
        elsewhere.write_bytes(b"named like a backup, in the directory that has the name now")
        gone = archive.rotate(out_dir, 2, gateway_id="fixture-gw", keep=made, dir_fd=made.dir_fd)
    assert gone == [older[0]]
    assert sorted(p.name for p in (data_dir / "moved").iterdir()) == [older[1].name, made.name]
    assert elsewhere.read_bytes() == b"named like a backup, in the directory that has the name now"
