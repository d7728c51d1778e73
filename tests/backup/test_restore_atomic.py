"""A restore is all or nothing, checks the data disk's room before it stops anything, and extracts once, beside the data.

It used to verify into /tmp (RAM on these boxes) before the services stopped, verify again after, then
move the current files aside and write the backup's into the data directory one by one: a full data
disk or a file that would not move left part of the data directory restored, the rest moved aside,
and the services were started again on that. Every backup here is real, every disk a real file system
(a size- or inode-limited tmpfs), every failure a real one (a full disk, an immutable file).
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.cli import main
from tests.backup.conftest import RELEASE, write_config
from tests.support.tmpfs import fill, free_bytes

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
ROWS = 900  # the 0.1.0 buffer's outbox
UNITS = ("edgegw-kiosk.service", "edgegw-web.service", "edgegw.service")
STOPPED = f"stop {' '.join(UNITS)}"
STARTED = f"start {' '.join(reversed(UNITS))}"
# <linux/fs.h>: the ioctls read and write an int, whatever their declared long says
_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x10


def _tree(root: Path) -> dict[str, object]:
    """Every file and directory under `root`, hidden ones too: bytes, inode and mode, so a move shows."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = ("dir", st.st_mode) if p.is_dir() else (p.read_bytes(), st.st_ino, st.st_mode)
    return out


def _rows(data_dir: Path) -> int:
    db = sqlite3.connect(data_dir / "buffer.db")
    try:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def _next_day(config: Path, data_dir: Path) -> None:
    """Readings delivered and the config changed since the backup, so that a restore shows in both."""
    db = sqlite3.connect(data_dir / "buffer.db")
    try:
        with db:
            db.execute("DELETE FROM outbox WHERE seq < 500")
    finally:
        db.close()
    config.write_text(config.read_text().replace('kind = "weather"', 'kind = "river-level"'))


def _backup(config: Path, data_dir: Path, share: Path, now: datetime = NIGHT) -> Path:
    return archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=share, now=now)


def _box_on(vol: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The 0.1.0 box with its data directory on the file system mounted at `vol`, its config off it."""
    data_dir = vol / "data"
    shutil.copytree(RELEASE, data_dir)
    return write_config(tmp_path / "gateway.toml", data_dir), data_dir


def _systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_stop: str = ":", on_start: str = ":") -> Path:
    """A `systemctl` on PATH for which every unit runs, that records what it is asked and runs `on_stop`
    once the units are stopped, `on_start` as they start (what happens on the box meanwhile); returns its record."""
    calls = tmp_path / "systemctl.calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\nif [ "$1" = stop ]; then {on_stop} || exit 1; fi\n'
        f'if [ "$1" = start ]; then {on_start}; fi\n'
    )
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return calls


def _asked(calls: Path) -> list[str]:
    return [line for line in calls.read_text().splitlines() if not line.startswith("is-active")]


def _hook(tmp_path: Path, name: str, body: str) -> str:
    """A Python script run by the fake systemctl's `stop`, as the shell command that runs it."""
    script = tmp_path / f"{name}.py"
    script.write_text(f"import os, sys\n{body}")
    return f"{sys.executable} {script}"


def _restore(config: Path, path: Path, manager: str = "systemd") -> int:
    return main(["backup", "restore", str(path), "--service-manager", manager, "-c", str(config)])


def test_a_data_disk_without_room_for_the_backup_is_refused_before_anything_stops(
    tmp_path: Path, tmpfs: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """/tmp had room, so verify passed and the services stopped; the data disk then filled half-way through."""
    vol = tmpfs("24m", at=tmp_path / "vol")
    config, data_dir = _box_on(vol, tmp_path)
    path = _backup(config, data_dir, tmp_path / "share")
    declared = sum(m.size for m in archive.verify(path).members)
    _next_day(config, data_dir)
    fill(vol)
    os.truncate(vol / "filler", (vol / "filler").stat().st_size - declared // 2)  # room for half the backup
    calls = _systemctl(tmp_path, monkeypatch)
    before, config_before, free = _tree(data_dir), config.read_text(), free_bytes(vol)
    assert _restore(config, path) == 1
    assert capsys.readouterr().err.strip() == (
        f"backup {path}: its 7 files need {declared} bytes ({declared / (1 << 20):.1f} MiB) and a 16.0 MiB margin "
        f"in the data directory {data_dir} to be restored, got {free} bytes ({free / (1 << 20):.1f} MiB) free there; "
        "nothing was stopped or changed: free space there (the .pre-restore-* directories of earlier restores can "
        "go, and .restore-staging-* ones a killed restore left) and restore again"
    )
    assert not calls.exists()  # not even asked what runs
    assert _tree(data_dir) == before
    assert config.read_text() == config_before


def set_immutable(path: Path, on: bool) -> None:
    """The file's or directory's immutable attribute (chattr +i) set or cleared."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf)
        buf[0] = buf[0] | _FS_IMMUTABLE_FL if on else buf[0] & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, buf)
    finally:
        os.close(fd)


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """`immutable(path)` sets the file's or directory's immutable attribute (chattr +i); cleared in teardown.

    Not even root may rename such a file, nor move a file into or out of such a directory: a rename
    that fails on a real file system, the way a disk error would, at a point of the restore's choosing.
    """
    made: list[Path] = []

    def make(path: Path) -> None:
        try:
            set_immutable(path, True)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EPERM):
                pytest.skip(f"cannot make {path} immutable here, got {exc.strerror}: needs root and ext4 or tmpfs")
            raise
        made.append(path)

    yield make
    for path in made:
        set_immutable(path, False)


@pytest.mark.parametrize(
    ("fixed", "failing"),
    [
        ("web/audit.db", "web/audit.db"),  # the fifth of six files to move: four are aside already
        ("web", "web/accounts.db"),  # a directory nothing may leave
    ],
)
def test_a_restore_that_fails_half_way_puts_every_file_back_and_says_so(
    box: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    immutable: Callable[[Path], None],
    fixed: str,
    failing: str,
) -> None:
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    _next_day(config, data_dir)
    immutable(data_dir / fixed)
    calls = _systemctl(tmp_path, monkeypatch)
    before, config_before = _tree(data_dir), config.read_text()
    assert _restore(config, path) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"backup restore: cannot move {data_dir / failing} aside, got Operation not permitted; nothing restored, "
        f"every file is as it was (the data directory {data_dir} and {config}): see what stops it there "
        "(`lsattr -d` shows a file or directory made immutable, `dmesg` a disk error) and restore again",
        f"backup restore: started {' '.join(reversed(UNITS))} again, on the files as they were",
    ]
    assert _tree(data_dir) == before  # the same files, inodes and modes: no .pre-restore-*, no staging left
    assert config.read_text() == config_before
    assert _asked(calls) == [STOPPED, STARTED]


def test_a_config_that_cannot_be_written_puts_every_data_file_back(
    box: tuple[Path, Path], tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    """The config is written last, after the data's renames: a full /etc undoes all of them."""
    _, data_dir = box
    etc = tmpfs("1m", at=tmp_path / "etc")
    config = write_config(etc / "gateway.toml", data_dir)
    config.write_text(config.read_text() + "# a long comment\n" * 4096)  # more than the room a rewrite frees
    path = _backup(config, data_dir, tmp_path / "share")
    write_config(config, data_dir)
    _next_day(config, data_dir)
    fill(etc)
    before, config_before = _tree(data_dir), config.read_text()
    with pytest.raises(archive.BackupError) as failed:
        archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    assert str(failed.value).startswith(f"backup restore: {config} not written, got No space left on device; ")
    assert _tree(data_dir) == before
    assert config.read_text() == config_before


@pytest.mark.parametrize("free_inodes", range(12))
def test_a_data_disk_that_fills_while_the_services_stop_gets_the_whole_backup_or_keeps_its_files(
    tmp_path: Path,
    tmpfs: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    free_inodes: int,
) -> None:
    """The services write their last files as they stop, and the data disk runs out: of inodes here, exact to
    one, so that each count stops the restore at another step (the old one needed ten, one for each file
    it wrote). Whatever the step, the data directory is the backup's whole or exactly what it was."""
    vol = tmpfs("24m", at=tmp_path / "vol", inodes=300)
    assert os.statvfs(vol).f_files == 300
    config, data_dir = _box_on(vol, tmp_path)
    path = _backup(config, data_dir, tmp_path / "share")
    backed_up = config.read_text()
    _next_day(config, data_dir)
    fill_inodes = _hook(
        tmp_path,
        "fill_inodes",
        f"d = {str(vol / 'filler')!r}\nos.mkdir(d)\nn = 0\n"
        f"while os.statvfs(d).f_ffree > {free_inodes}:\n    open(os.path.join(d, str(n)), 'x').close()\n    n += 1\n",
    )
    calls = _systemctl(tmp_path, monkeypatch, on_stop=fill_inodes)
    before, config_before = _tree(data_dir), config.read_text()
    code = _restore(config, path)
    err = capsys.readouterr().err.splitlines()
    assert len(os.listdir(vol / "filler")) > 100  # the hook filled the disk (a failed hook fails the stop)
    if code == 0:
        assert _rows(data_dir) == ROWS
        assert config.read_text() == backed_up
        assert not [p for p in data_dir.iterdir() if p.name.startswith(".restore")]
    else:
        assert len(err) == 2, err
        assert "got No space left on device; nothing restored, every file is as it was" in err[0]
        assert err[1] == f"backup restore: started {' '.join(reversed(UNITS))} again, on the files as they were"
        assert _tree(data_dir) == before
        assert config.read_text() == config_before
    assert _asked(calls) == [STOPPED, STARTED]
    if free_inodes == 0:
        assert code == 1  # not even the .pre-restore-* directory can be made
    if free_inodes == 11:
        assert code == 0


def test_a_restore_extracts_nothing_into_tmpdir(
    box: tuple[Path, Path], tmp_path: Path, tmpfs: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """/tmp is a small RAM disk on these boxes: a backup is checked on the data disk, where it is restored."""
    tmp = tmpfs("4m", at=tmp_path / "T")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    _next_day(config, data_dir)
    assert _restore(config, path, "none") == 0
    assert _rows(data_dir) == ROWS
    assert not list(tmp.iterdir())
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".") and not p.name.startswith(".pre-restore-")]


def test_verify_checks_a_backup_beside_the_data_directory_not_in_tmpdir(
    box: tuple[Path, Path],
    tmp_path: Path,
    tmpfs: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp = tmpfs("4m", at=tmp_path / "T")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    before = _tree(data_dir)
    assert main(["backup", "verify", str(path), "-c", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok, gateway fixture-gw, ")
    assert not list(tmp.iterdir())
    assert _tree(data_dir) == before  # its scratch directory is gone


def test_a_restore_extracts_the_backup_once_before_the_services_stop(
    box: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files the restore puts in place are the very ones (same inodes) that were on the data disk, checked,
    when the services were asked to stop: nothing was extracted again while they were down."""
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    _next_day(config, data_dir)
    seen = tmp_path / "inodes"
    record = _hook(
        tmp_path,
        "record_inodes",
        f"inodes = [os.stat(os.path.join(r, f)).st_ino for r, _, fs in os.walk({str(data_dir)!r}) for f in fs]\n"
        f"open({str(seen)!r}, 'w').write(' '.join(map(str, inodes)))\n",
    )
    calls = _systemctl(tmp_path, monkeypatch, on_stop=record)
    assert _restore(config, path) == 0
    assert _rows(data_dir) == ROWS
    at_stop = {int(n) for n in seen.read_text().split()}
    restored = [m.name.removeprefix("data/") for m in archive.verify(path).members if m.name.startswith("data/")]
    assert {name: (data_dir / name).stat().st_ino in at_stop for name in restored} == dict.fromkeys(restored, True)
    assert _asked(calls) == [STOPPED, STARTED]


def test_a_backup_file_replaced_after_it_was_checked_is_checked_again_and_its_new_content_restored(
    box: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What was checked before the stop is put in place only if the file is still the one checked."""
    config, data_dir = box
    share = tmp_path / "share"
    path = _backup(config, data_dir, share)
    _next_day(config, data_dir)
    later_rows = _rows(data_dir)
    later = Path(shutil.move(_backup(config, data_dir, share, NIGHT + timedelta(days=1)), tmp_path / "later.tar.gz"))
    replace = _hook(tmp_path, "replace", f"os.replace({str(later)!r}, {str(path)!r})\n")
    calls = _systemctl(tmp_path, monkeypatch, on_stop=replace)
    db = sqlite3.connect(data_dir / "buffer.db")
    try:
        with db:
            db.execute("DELETE FROM outbox")
    finally:
        db.close()
    assert _restore(config, path) == 0
    assert later_rows < ROWS and _rows(data_dir) == later_rows
    assert _asked(calls) == [STOPPED, STARTED]
