"""Where a backup is checked: on the data disk, not in /tmp (RAM on these boxes), and what a killed check leaves there.

Every disk here is a real file system (a small tmpfs plays /tmp), every leftover a real directory,
every run that holds one a real process.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, read_status, run_backup

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)


def _hidden(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if p.name.startswith("."))


@pytest.fixture
def small_tmpdir(tmp_path: Path, tmpfs: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR on a 128 KiB tmpfs: smaller than the 0.1.0 box's stores (290 KiB), margin or not."""
    tmp = tmpfs("128k", at=tmp_path / "T")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_the_nightly_backup_and_its_share_copy_are_checked_on_the_data_disk_when_tmpdir_cannot_hold_them(
    box: tuple[Path, Path], tmp_path: Path, small_tmpdir: Path, tmpfs: Callable[..., Path]
) -> None:
    """The nightly job checked its backup, then the share's copy, in /tmp: once the stores outgrew it,
    every night failed with `… to be checked, got … free there` while restore and verify worked."""
    config_path, data_dir = box
    share = tmpfs("64m", tmp_path / "share")
    job = Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config_path, config=BackupConfig(copy_to=share))
    before = _hidden(data_dir)
    path = run_backup(job, NIGHT)
    status = read_status(data_dir)
    assert status["ok"] is True, status.get("last_failure")
    assert status["last_success"]["copy"] == str(share / path.name)
    assert archive.verify(share / path.name, data_dir=data_dir).gateway_id == "fixture-gw"
    assert not list(small_tmpdir.iterdir())
    assert _hidden(data_dir) == before  # its .verify-* directories are gone


def test_the_share_copy_is_checked_in_the_directory_it_is_given(
    box: tuple[Path, Path], tmp_path: Path, small_tmpdir: Path
) -> None:
    config_path, data_dir = box
    path = archive.create(
        data_dir=data_dir, config_path=config_path, gateway_id="fixture-gw", out_dir=tmp_path / "out", now=NIGHT
    )
    before = _hidden(data_dir)
    copy = archive.copy_verified(path, tmp_path / "share", data_dir=data_dir)
    assert copy.read_bytes() == path.read_bytes()
    assert not list(small_tmpdir.iterdir())
    assert _hidden(data_dir) == before


# Run before a child's backup step: holds it as it opens its second member's copy (`00001`: the first one extracted,
# as at a power cut mid-way) until a byte comes on its stdin, saying "held" on its stdout first. A FIFO in place of the
# backup held it before; verify refuses a FIFO at once now, as one under a backup's name hung it for good.
HOLD = (
    "import os, sys\n"
    "def _hold(event, args, held=[]):\n"
    "    if event == 'open' and str(args[0]).endswith('00001') and not held:\n"
    "        held.append(1)\n"
    "        os.write(1, b'held\\n')\n"
    "        os.read(0, 1)\n"
    "sys.addaudithook(_hold)\n"
)


def wait_held(child: subprocess.Popen[bytes], what: str) -> None:
    """Returns once `child`, run with HOLD, is held; AssertionError with its stderr if it exits or takes over 30 s."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], 30)
    line = child.stdout.readline() if ready else b""
    if line != b"held\n":
        child.kill()
        _, err = child.communicate()
        raise AssertionError(f"{what} was not held at its second member, got {line!r} and {err.decode()!r}")


@contextlib.contextmanager
def _verify_waiting(path: Path, data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`archive.verify(path, data_dir=data_dir)` in a process of its own, held (HOLD) in its `.verify-*` directory
    with the first member extracted: yields the process (a byte on its stdin lets it go on) and that directory."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD + "from pathlib import Path; from gateway.backup import archive; "
            "archive.verify(Path(sys.argv[1]), data_dir=Path(sys.argv[2]))",
            str(path),
            str(data_dir),
        ],
        cwd=Path(__file__).parents[2],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_held(child, "verify")
        [work] = [p for p in data_dir.iterdir() if p.name.startswith(archive.VERIFY_PREFIX)]
        yield child, work
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def _age(path: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def _verify(path: Path, config: Path, data_dir: Path) -> None:
    archive.verify(path, data_dir=data_dir)


def _restore(path: Path, config: Path, data_dir: Path) -> None:
    archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)


@pytest.mark.parametrize("check", [_verify, _restore])
def test_the_next_check_removes_what_a_killed_verify_left_once_it_is_an_hour_old(
    box: tuple[Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    check: Callable[[Path, Path, Path], None],
) -> None:
    """A verify killed (a power cut at night, SIGKILL, a dropped ssh session) never removes its directory: a copy of
    every store on the data disk, one more each such night, seen by nobody until the disk is full."""
    config, data_dir = box
    path = archive.create(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=tmp_path / "share", now=NIGHT
    )
    with _verify_waiting(path, data_dir) as (child, left):
        child.kill()  # part of it extracted, as at a power cut
    assert left.is_dir()
    staging = data_dir / f"{archive.STAGING_PREFIX}kept"  # one a restore kept: it holds what a technician needs
    staging.mkdir()
    (staging / "00001").write_bytes(b"the rest of a backup")
    (staging / archive.KEPT_MARK).write_text("kept by a restore that could not put every file back")
    _age(staging, 5)
    check(path, config, data_dir)
    assert left.is_dir()  # a minute old: it may be a verify that has not locked its directory yet
    _age(left, 1.1)
    with caplog.at_level(logging.WARNING, logger="gateway.backup"):
        check(path, config, data_dir)
    assert not left.exists()
    assert f"backup: removed {left}, left by a verify that did not finish (killed, or a power cut)" in caplog.text
    assert (staging / "00001").read_bytes() == b"the rest of a backup"
    assert not [p for p in data_dir.iterdir() if p.name.startswith(archive.VERIFY_PREFIX)]


def test_a_running_verify_keeps_its_directory_however_long_it_takes(box: tuple[Path, Path], tmp_path: Path) -> None:
    """A verify reading a share that hangs for hours is not a killed one: its directory stays while it runs."""
    config, data_dir = box
    path = archive.create(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=tmp_path / "share", now=NIGHT
    )
    with _verify_waiting(path, data_dir) as (child, running):
        _age(running, 5)
        archive.verify(path, data_dir=data_dir)
        assert running.is_dir()
        _, err = child.communicate(b"go on")
        assert child.returncode == 0, err.decode()
    assert not running.exists()  # removed by its own verify, once done


def open_fifo_for_writing(fifo: Path, child: subprocess.Popen[bytes], what: str) -> int:
    """The write end of `fifo`, once `child` has opened it for reading (a FIFO opens for writing only then);
    AssertionError with the child's stderr if it exits or takes over 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or child.poll() is not None or time.monotonic() > deadline:
                child.kill()
                _, err = child.communicate()
                raise AssertionError(f"{what} did not open {fifo}, got {err.decode()!r}") from exc
            time.sleep(0.01)
    os.set_blocking(fd, True)
    return fd
