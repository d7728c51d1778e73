"""What a killed restore leaves in the data directory is removed once it is an hour old; what a restore kept stays.

A restore stages the whole backup in a hidden `.restore-staging-*` directory on the data disk. One killed
(`kill -9`, a power cut, the ssh session dropping while it checked the file) left it there for good: no
lock said whether a restore still ran, nothing removed it, and each such restore left another copy of
every store until the data disk was full. Every restore here runs in a real process, every leftover is
a real directory, every disk a real file system.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, run_backup
from tests.backup.test_restore_atomic import set_immutable
from tests.backup.test_scratch import HOLD, wait_held

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
REPO = Path(__file__).parents[2]


def _backup(config: Path, data_dir: Path, share: Path) -> Path:
    return archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=share, now=NIGHT)


def _staging(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.iterdir() if p.name.startswith(archive.STAGING_PREFIX))


def _age(path: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


@contextlib.contextmanager
def _staging_from(path: Path, config: Path, data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`archive.stage` of `path`, in a process of its own, held (HOLD) in its staging directory with the first member
    extracted (as a restore reading a share that hangs, or a large file); yields the process (a byte on its stdin lets
    it go on) and that directory."""
    code = HOLD + (
        "from pathlib import Path\n"
        "from gateway.backup import archive\n"
        "path, config, data_dir = map(Path, sys.argv[1:])\n"
        "with archive.stage(path, data_dir=data_dir, config_path=config, gateway_id='fixture-gw') as staged:\n"
        "    print(staged.directory)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path), str(config), str(data_dir)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_held(child, "the restore")
        [work] = _staging(data_dir)
        yield child, work
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def _verify(path: Path, config: Path, data_dir: Path) -> None:
    archive.verify(path, data_dir=data_dir)


def _restore(path: Path, config: Path, data_dir: Path) -> None:
    archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)


def _nightly(path: Path, config: Path, data_dir: Path) -> None:
    run_backup(Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config, config=BackupConfig()), NIGHT)


@pytest.mark.parametrize("check", [_verify, _restore, _nightly])
def test_the_next_check_removes_what_a_killed_restore_left_once_it_is_an_hour_old(
    box: tuple[Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    check: Callable[[Path, Path, Path], None],
) -> None:
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    with _staging_from(path, config, data_dir) as (child, left):
        child.kill()  # part of it staged, as at a power cut
    assert left.is_dir()
    check(path, config, data_dir)
    assert _staging(data_dir) == [left]  # a minute old: it may be a restore that has not locked it yet
    _age(left, 1.1)
    with caplog.at_level(logging.WARNING, logger="gateway.backup"):
        check(path, config, data_dir)
    assert _staging(data_dir) == []
    assert f"backup: removed {left}, left by a restore that did not finish (killed, or a power cut)" in caplog.text


def test_a_running_restore_keeps_its_staging_directory_however_long_it_takes(
    box: tuple[Path, Path], tmp_path: Path
) -> None:
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    with _staging_from(path, config, data_dir) as (child, running):
        _age(running, 5)
        archive.verify(path, data_dir=data_dir)
        assert running.is_dir()
        out, err = child.communicate(b"go on")
        assert child.returncode == 0, err.decode()
        assert out.decode().strip() == str(running)
    assert not running.exists()  # removed by its own restore, once done


# archive.restore in a process of its own; as web/accounts.db is about to go aside, the aside directory's data/
# and data/web/ are made immutable (chattr +i: as a disk error would, nothing may enter or leave them), so that
# this move fails and the three files moved before it cannot go back
_STUCK = """
import array, fcntl, os, sys
from datetime import UTC, datetime
from pathlib import Path
from gateway.backup import archive
from tests.backup.audit_paths import renamed

backup, data_dir, config = map(Path, sys.argv[1:])
aside = data_dir / ".pre-restore-20261204T000000Z" / "data"

def immutable(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    buf = array.array("i", [0])
    fcntl.ioctl(fd, 0x80086601, buf)
    buf[0] |= 0x10
    fcntl.ioctl(fd, 0x40086602, buf)
    os.close(fd)

def audit(event, args):
    if event == "os.rename" and renamed(args, 0) == str(data_dir / "web" / "accounts.db"):
        immutable(aside / "web")
        immutable(aside)

sys.addaudithook(audit)
try:
    archive.restore(backup, data_dir=data_dir, config_path=config, gateway_id="fixture-gw",
                    now=datetime(2026, 12, 4, tzinfo=UTC))
except archive.RestoreIncomplete as exc:
    print(exc)
    raise SystemExit(3)
"""


@pytest.fixture
def aside_made_immutable(box: tuple[Path, Path]) -> Iterator[Path]:
    """The aside directory's data/ that `_STUCK` makes immutable; made mutable again in teardown."""
    _, data_dir = box
    aside = data_dir / ".pre-restore-20261204T000000Z" / "data"
    probe = data_dir / "probe"
    probe.mkdir()
    try:
        set_immutable(probe, True)
        set_immutable(probe, False)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"cannot make {probe} immutable here, got {exc.strerror}: needs root and ext4 or tmpfs")
        raise
    probe.rmdir()
    yield aside
    for path in (aside, aside / "web"):
        if path.is_dir():
            set_immutable(path, False)


def test_the_staging_directory_of_a_restore_that_could_not_put_every_file_back_is_kept_for_good(
    box: tuple[Path, Path], tmp_path: Path, aside_made_immutable: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It holds the part of the backup not in place, and the message sends the technician there."""
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    child = subprocess.run(
        [sys.executable, "-c", _STUCK, str(path), str(data_dir), str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 3, child.stderr
    [kept] = _staging(data_dir)
    assert "3 file(s) did not go back" in child.stdout
    assert f"the rest of the backup's under {kept}; " in child.stdout
    mark = (kept / archive.KEPT_MARK).read_text()
    assert mark.startswith(child.stdout.strip())
    assert mark.endswith("Delete this directory once the data directory is right again.\n")
    held = sorted(p.name for p in kept.iterdir())
    _age(kept, 24 * 30)
    with caplog.at_level(logging.WARNING, logger="gateway.backup"):
        archive.verify(path, data_dir=data_dir)
    assert _staging(data_dir) == [kept]
    assert sorted(p.name for p in kept.iterdir()) == held
    assert "removed" not in caplog.text
