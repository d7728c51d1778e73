"""What a killed `create` leaves in the backup directory is removed by the next one; a running create's stays.

`create` copies every store into a hidden `.staging-*` directory beside the backups before it writes the tar.
One killed there (`kill -9`, a power cut) left that directory for good, a full copy of the box's data each
time, on a share or a small disk: its name said nothing of whose it was, and no lock said whether its create
still ran. Every create here runs in a real process, held mid-way by a real sqlite lock on one of its stores,
and is really killed; every directory is a real one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, run_backup
from tests.backup.conftest import RELEASE, write_config
from tests.backup.test_restore_config import SERVICE_USER, as_root

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
REPO = Path(__file__).parents[2]
HELD_STORE = "zz-held.db"  # snapshot last: the create is mid-way, its other copies made, when it waits for this one

# `archive.create` in a process of its own, as `edgegw backup now` or the nightly job runs it
_CREATE = """
import sys
from datetime import datetime
from pathlib import Path
from gateway.backup import archive

data_dir, config, out_dir, gateway_id, now = sys.argv[1:]
print(archive.create(data_dir=Path(data_dir), config_path=Path(config), gateway_id=gateway_id,
                     out_dir=Path(out_dir), now=datetime.fromisoformat(now)))
"""


def _box(root: Path, gateway_id: str = "fixture-gw") -> tuple[Path, Path]:
    """(config, data dir) of a box with a rollback-journal store, which a writer's exclusive lock keeps unread."""
    data_dir = root / "data"
    shutil.copytree(RELEASE, data_dir)
    db = sqlite3.connect(data_dir / HELD_STORE)
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    db.close()
    return write_config(root / "gateway.toml", data_dir, gateway_id), data_dir


@contextlib.contextmanager
def _store_held(data_dir: Path) -> Iterator[None]:
    """HELD_STORE write-locked (a writer mid-commit): a snapshot of it waits until the `with` ends."""
    db = sqlite3.connect(data_dir / HELD_STORE, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


def _stagings(out_dir: Path) -> set[Path]:
    return {p for p in out_dir.iterdir() if p.name.startswith(".staging-")} if out_dir.is_dir() else set()


def _create_under_way(
    config: Path, data_dir: Path, out_dir: Path, gateway_id: str, now: datetime
) -> tuple[subprocess.Popen[bytes], Path]:
    """A create in a process of its own, once it has made its staging directory and copied the config into it
    (HELD_STORE must be held: it then waits there); returns the process and that directory."""
    before = _stagings(out_dir)
    child = subprocess.Popen(
        [sys.executable, "-c", _CREATE, str(data_dir), str(config), str(out_dir), gateway_id, now.isoformat()],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    # the config written whole, not only made: a kill between the two would leave an empty staging directory
    whole = config.stat().st_size
    while not (made := [p for p in _stagings(out_dir) - before if _size_of(p / "config") == whole]):
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            out, err = child.communicate()
            raise AssertionError(f"the create made no staging directory, got {out.decode()!r} {err.decode()!r}")
        time.sleep(0.01)
    return child, made[0]


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _killed(child: subprocess.Popen[bytes]) -> None:
    child.kill()  # SIGKILL: no handler, no finally, nothing removed
    child.communicate()
    assert child.returncode == -9


def _size(directory: Path) -> int:
    return sum(p.lstat().st_size for p in directory.rglob("*"))


def test_a_killed_creates_staging_directory_is_removed_by_the_next_backup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, data_dir = _box(tmp_path)
    job = Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config, config=BackupConfig())
    with _store_held(data_dir):
        child, left = _create_under_way(config, data_dir, job.out_dir, "fixture-gw", NIGHT)
        _killed(child)
    size = _size(left)
    assert size > 0
    assert [p.name for p in job.out_dir.iterdir()] == [left.name]  # what the kill left: no .part yet
    mtime = datetime.fromtimestamp(left.stat().st_mtime, UTC).isoformat(timespec="seconds")
    with caplog.at_level(logging.INFO, logger="gateway.backup"):
        path = run_backup(job, NIGHT + timedelta(days=1))  # the next night's, minutes or a day later
    assert sorted(job.out_dir.iterdir()) == [path]
    removed = [r for r in caplog.records if "did not finish" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in removed] == [
        (
            logging.INFO,
            f"backup: removed {left} ({size} bytes), left by a backup that did not finish (killed, or a power cut); "
            f"last written {mtime}",
        )
    ]


def test_a_running_creates_staging_directory_stays_whoevers_box_it_is(tmp_path: Path) -> None:
    """One backup directory (a share) written by this box and another: a create of either that runs is left alone,
    however long it takes; the killed one goes."""
    share = tmp_path / "share"
    config, data_dir = _box(tmp_path / "here")
    other_config, other_data = _box(tmp_path / "other", "fixture-gw-02")
    with _store_held(data_dir), _store_held(other_data):
        dead, left = _create_under_way(config, data_dir, share, "fixture-gw", NIGHT)
        _killed(dead)
        mine, running = _create_under_way(config, data_dir, share, "fixture-gw", NIGHT + timedelta(minutes=1))
        theirs, their_running = _create_under_way(other_config, other_data, share, "fixture-gw-02", NIGHT)
        try:
            here, scratch = _box(tmp_path / "scratch")  # the next create, on a data directory nobody holds
            (scratch / HELD_STORE).unlink()
            made = archive.create(
                data_dir=scratch, config_path=here, gateway_id="fixture-gw", out_dir=share, now=NIGHT + timedelta(1)
            )
            assert not left.exists()
            assert _stagings(share) == {running, their_running}
            assert made.exists()
        except BaseException:
            for child in (mine, theirs):
                child.kill()
                child.communicate()
            raise
    # let go, each running create ends as it would have: its backup written, its staging directory removed
    for child in (mine, theirs):
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode()
        assert Path(out.decode().strip()).exists()
    assert _stagings(share) == set()


def _left_by_an_older_release(out_dir: Path, gateway_id: str, age_s: float) -> Path:
    """A `.staging-*` directory as a killed create of a release before the lock left it: a random name, the box's
    config and some stores' copies, no lock file; last written `age_s` ago."""
    out_dir.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".staging-"))
    write_config(staging / "config", Path("/var/lib/edgegw"), gateway_id)
    (staging / "0").write_bytes(b"SQLite format 3\x00 half a store")
    then = time.time() - age_s
    os.utime(staging, (then, then))
    return staging


def test_an_older_releases_leftover_goes_once_an_hour_old_if_its_config_names_this_box(tmp_path: Path) -> None:
    """Its name says nothing of whose it is, but the config copied into it first does; a create of this box does not
    run that long, and none of an older release runs beside this one."""
    config, data_dir = _box(tmp_path)
    (data_dir / HELD_STORE).unlink()
    share = tmp_path / "share"
    old = 2 * archive.STALE_AFTER_S
    stale = _left_by_an_older_release(share, "fixture-gw", old)
    kept = [
        _left_by_an_older_release(share, "fixture-gw-02", old),  # another box's, on the shared share
        _left_by_an_older_release(share, "fixture-gw", 60.0),  # one that may still run
    ]
    archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=share, now=NIGHT)
    assert not stale.exists()
    assert _stagings(share) == set(kept)


def test_one_without_its_lock_file_goes_once_an_hour_old(tmp_path: Path) -> None:
    """A create killed between making its directory and its lock file; a fresh one is a create about to lock it."""
    config, data_dir = _box(tmp_path)
    (data_dir / HELD_STORE).unlink()
    share = tmp_path / "share"
    share.mkdir()
    left = []
    for token, age_s in (("0123abcd", 2 * archive.STALE_AFTER_S), ("4567ef01", 60.0)):
        staging = share / f".staging-fixture-gw-{token}"
        staging.mkdir(mode=0o700)
        then = time.time() - age_s
        os.utime(staging, (then, then))
        left.append(staging)
    archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=share, now=NIGHT)
    assert _stagings(share) == {left[1]}


# `archive.create` as the service user (the nightly job's), in a process of its own
_CREATE_AS_SERVICE_USER = """
import os, sys
from datetime import UTC, datetime
from pathlib import Path
from gateway.backup import archive

uid, gid, data_dir, config, out_dir = sys.argv[1:]
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
print(archive.create(data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                     out_dir=Path(out_dir), now=datetime(2026, 12, 5, tzinfo=UTC)))
"""


@as_root
def test_a_killed_root_backups_leftover_is_named_to_the_service_user_with_the_command(searchable_tmp: Path) -> None:
    """`sudo edgegw backup now` killed: its staging directory stays root's. Handing it to the service user while
    root still wrote into it would let that user plant a link for root to write through; the nightly job, as the
    service user, cannot remove it, so it says how, and its own backup still succeeds."""
    config, data_dir = _box(searchable_tmp)
    out_dir = data_dir / "backups"
    out_dir.mkdir(mode=0o700)
    for p in [data_dir, *data_dir.rglob("*"), config]:
        os.chown(p, *SERVICE_USER)
    with _store_held(data_dir):
        child, left = _create_under_way(config, data_dir, out_dir, "fixture-gw", NIGHT)
        _killed(child)
    assert left.stat().st_uid == 0 and (left / "config").stat().st_uid == 0  # root's, all along
    then = time.time() - 2 * archive.STALE_AFTER_S
    os.utime(left, (then, then))

    def nightly() -> subprocess.CompletedProcess[str]:
        args = [*map(str, SERVICE_USER), str(data_dir), str(config), str(out_dir)]
        return subprocess.run(
            [sys.executable, "-c", _CREATE_AS_SERVICE_USER, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )

    run = nightly()
    assert run.returncode == 0, run.stderr
    assert sorted(out_dir.iterdir()) == sorted([left, Path(run.stdout.strip())])
    assert f"backup: cannot tell whether {left} (last written " in run.stderr
    assert run.stderr.rstrip().endswith(
        "got Permission denied; if no backup runs as root now, it was left by one that did not finish: "
        f"as root: sudo rm -rf {left}"
    )
