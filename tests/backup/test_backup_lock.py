"""A backup and a restore of the same box never overlap: both hold the backup lock, an flock on the data directory.

Nothing stopped the nightly backup (or `edgegw backup now`) during a restore: one that fired then read the
stores while the restore swapped them and kept a generation of files from before and after it (the config
as it was, the buffer restored), which a later restore would put back as if it were whole; and its rotation
deleted the very file being restored, which the restore, finding it gone once the services were stopped,
refused, and started them again for nothing. Every backup and restore here is the real CLI, in a process of
its own where another one runs beside it; every lock is a real flock, every hold a real FIFO a child reads.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from gateway.backup import archive
from gateway.backup import cli as backup_cli
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, drawn_time, read_status, scheduler
from gateway.cli import build_parser
from tests.backup.test_restore_atomic import NIGHT, ROWS, _asked, _backup, _hook, _next_day, _rows, _systemctl
from tests.backup.test_restore_config import SERVICE_USER, as_root
from tests.backup.test_scratch import open_fifo_for_writing

REPO = Path(__file__).parents[2]
# a script run as a file imports from its own directory, not the working one: this tree's gateway, not the venv's
_THIS_TREE = dict(os.environ, PYTHONPATH=str(REPO))
NEXT_NIGHT = NIGHT + timedelta(days=1)

# `edgegw backup …` at a given time in a process of its own; with `hold`, held as it opens its first sqlite store
# (the config already copied into the backup) until the FIFO it then reads is closed
_CHILD = """
import sys
from datetime import datetime
from gateway.backup import cli
from gateway.cli import build_parser

fifo, hold, at, *argv = sys.argv[1:]
held = []

def audit(event, args):
    if hold == "hold" and event == "sqlite3.connect" and not held:
        held.append(args)
        with open(fifo, "rb") as f:
            f.read()

sys.addaudithook(audit)
raise SystemExit(cli.run(build_parser().parse_args(argv), now=lambda: datetime.fromisoformat(at)))
"""


@contextlib.contextmanager
def _child(
    fifo: Path, argv: list[str], *, at: datetime, hold: bool
) -> Iterator[tuple[subprocess.Popen[bytes], BinaryIO, str]]:
    """`edgegw <argv>` run by `_CHILD`, held where it opens `fifo` (a backup it restores from, or `hold`'s point);
    yields the process, the FIFO's write end, and the process as the lock's holder is named (its command line)."""
    os.mkfifo(fifo)
    script = fifo.with_name("child.py")
    script.write_text(_CHILD)
    args = [sys.executable, str(script), str(fifo), "hold" if hold else "-", at.isoformat(), *argv]
    child = subprocess.Popen(args, cwd=REPO, env=_THIS_TREE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        fd = open_fifo_for_writing(fifo, child, " ".join(argv[:2]))
        with open(fd, "wb") as writer:
            yield child, writer, f"pid {child.pid} (`{' '.join(args)}`)"
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def _cli(argv: list[str], **kw: Any) -> int:
    """`edgegw <argv>` in this process, at NIGHT."""
    return backup_cli.run(build_parser().parse_args(argv), now=lambda: NIGHT, **kw)


def _restore_argv(path: Path, config: Path, manager: str = "none") -> list[str]:
    return ["backup", "restore", str(path), "--service-manager", manager, "-c", str(config)]


def _generation(path: Path, tmp_path: Path) -> tuple[bool, int]:
    """A backup's config (True: the one edited after the first backup) and its buffer's rows."""
    look = tmp_path / f"look-{path.name}"
    with tarfile.open(path) as tar:
        text = tar.extractfile("config/gateway.toml").read().decode()  # type: ignore[union-attr]
        tar.extract("data/buffer.db", look, filter="data")
    return "river-level" in text, _rows(look / "data")


def _night_clock() -> tuple[Callable[[], datetime], Callable[[float], None]]:
    """A clock the scheduler's sleeps move forward, from just after local midnight of 2026-12-04 in Tokyo."""
    now = [drawn_time(BackupConfig(), "fixture-gw", date(2026, 12, 4)) - timedelta(hours=2)]

    def sleep(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    return (lambda: now[0]), sleep


def test_a_restore_during_a_backup_waits_for_it_then_refuses_naming_it_and_changes_nothing(
    box: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    _next_day(config, data_dir)
    buffer_before, config_before = (data_dir / "buffer.db").read_bytes(), config.read_text()
    rows_before = _rows(data_dir)
    with _child(tmp_path / "hold", ["backup", "now", "-c", str(config)], at=NEXT_NIGHT, hold=True) as (
        child,
        writer,
        holder,
    ):
        started = time.monotonic()
        code = _cli(_restore_argv(path, config), lock_wait_s=0.3)
        waited = time.monotonic() - started
        assert (data_dir / "buffer.db").read_bytes() == buffer_before  # checked before the backup goes on
        writer.close()
        out, err = child.communicate()
    assert code == 1
    assert waited >= 0.3
    assert caplog.messages == [
        f"backup restore: waiting up to 0.3 s for the backup lock on {data_dir}, held by {holder}"
    ]
    assert capsys.readouterr().err == (
        f"backup restore: the backup lock on {data_dir} is held by {holder}, got no lock within 0.3 s; nothing was "
        "stopped or changed: let it end and restore again\n"
    )
    assert (data_dir / "buffer.db").read_bytes() == buffer_before
    assert config.read_text() == config_before
    assert not list(data_dir.glob(".pre-restore-*"))
    assert child.returncode == 0, err.decode()
    assert _generation(Path(out.decode().strip()), tmp_path) == (True, rows_before)  # the box at one moment


def test_a_restore_that_waited_for_a_backup_runs_once_it_ends_and_the_backup_is_of_the_box_before_it(
    box: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The generation the backup keeps is the box before the restore, whole: not its config from before and its
    buffer from after."""
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    backed_up = config.read_text()
    _next_day(config, data_dir)
    rows_before = _rows(data_dir)
    codes: list[int] = []
    with _child(tmp_path / "hold", ["backup", "now", "-c", str(config)], at=NEXT_NIGHT, hold=True) as (
        child,
        writer,
        _,
    ):
        restore = threading.Thread(target=lambda: codes.append(_cli(_restore_argv(path, config))), name="restore")
        restore.start()
        while restore.is_alive() and not any("waiting up to" in m for m in caplog.messages):
            time.sleep(0.01)
        writer.close()  # the backup goes on: a restore that did not wait has swapped the files meanwhile
        out, err = child.communicate()
        restore.join()
    assert child.returncode == 0, err.decode()
    assert codes == [0], capsys.readouterr().err
    assert _generation(Path(out.decode().strip()), tmp_path) == (True, rows_before)
    assert _rows(data_dir) == ROWS  # restored after it
    assert config.read_text() == backed_up


def test_the_nightly_backup_skips_the_night_of_a_restore_and_a_killed_restore_blocks_nothing(
    box: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The restore is held while it checks its backup's files (a share that hangs): it holds the lock meanwhile."""
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    job = Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config, config=BackupConfig())
    clock, sleep = _night_clock()
    with _child(tmp_path / "hold", _restore_argv(path, config), at=NIGHT, hold=True) as (child, _, holder):
        assert scheduler(job, once=True, clock=clock, sleep=sleep, lock_wait_s=0.2) == 0  # skipped, not failed
        assert archive.list_backups(job.out_dir) == []
        assert caplog.messages[-1] == (
            f"backup: tonight's backup skipped: the backup lock on {data_dir} is held by {holder}, got no lock within "
            "0.2 s; a backup taken beside a restore would mix files from before and after it: the next night's runs as "
            "usual"
        )
        assert _cli(["backup", "now", "-c", str(config)], lock_wait_s=0) == 1
        assert capsys.readouterr().err == (
            f"backup: the backup lock on {data_dir} is held by {holder}, got no lock within 0 s; no backup taken: let "
            "it end and take the backup again\n"
        )
        assert "last_failure" not in read_status(data_dir)  # nothing failed on the box
        child.kill()  # kill -9: no chance to let go of anything
        child.wait()
    assert scheduler(job, once=True, clock=clock, sleep=sleep, lock_wait_s=0) == 0
    assert len(archive.list_backups(job.out_dir)) == 1


def test_a_nightly_backup_while_a_restore_stops_and_starts_the_services_is_skipped_and_rotates_nothing(
    box: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The restore's file is the one generation kept: a backup taken then rotated it out from under the restore."""
    config, data_dir = box
    config.write_text(config.read_text().replace("[backup]\n", "[backup]\ngenerations = 1\n"))
    path = _backup(config, data_dir, data_dir / "backups")
    backed_up = config.read_text()
    _next_day(config, data_dir)
    nightly = _hook(
        tmp_path,
        "nightly",
        "from datetime import date, timedelta\n"
        "from pathlib import Path\n"
        "from gateway.backup.config import BackupConfig\n"
        "from gateway.backup.schedule import Job, drawn_time, scheduler\n"
        "config, data_dir = map(Path, sys.argv[1:])\n"
        "job = Job(gateway_id='fixture-gw', data_dir=data_dir, config_path=config,"
        " config=BackupConfig(generations=1))\n"
        "now = [drawn_time(job.config, 'fixture-gw', date(2026, 12, 4)) - timedelta(hours=2)]\n"
        "def sleep(seconds):\n"
        "    now[0] += timedelta(seconds=seconds)\n"
        "sys.exit(scheduler(job, once=True, clock=lambda: now[0], sleep=sleep, lock_wait_s=0.2))\n",
    )
    log = tmp_path / "nightly.log"
    run_nightly = f"{nightly} {config} {data_dir} >> {log} 2>&1"
    calls = _systemctl(tmp_path, monkeypatch, on_stop=run_nightly, on_start=run_nightly)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the hook imports this tree's gateway, wherever the venv points
    assert _cli(_restore_argv(path, config, "systemd")) == 0, capsys.readouterr().err
    # the restore ran in this process: named by its pid and its command line, pytest's, whatever that is
    head = f"backup: tonight's backup skipped: the backup lock on {data_dir} is held by pid {os.getpid()} (`"
    tail = (
        "`), got no lock within 0.2 s; a backup taken beside a restore would mix files from before and after it: the "
        "next night's runs as usual"
    )
    assert [call.split()[0] for call in _asked(calls)] == ["stop", "start"]
    lines = [line for line in log.read_text().splitlines() if not line.startswith("backup: waiting up to")]
    assert [line.startswith(head) and line.endswith(tail) for line in lines] == [True, True], lines
    assert archive.list_backups(data_dir / "backups") == [path]
    assert _rows(data_dir) == ROWS
    assert config.read_text() == backed_up


# The service user's backup, as far as the lock: taken in the data directory, then held until its stdin closes.
# Started as root (this Python lives under /root) and in the data directory (pytest's tmp_path is root's alone),
# then the user's own.
_TAKE = """
import os, sys
from pathlib import Path
from gateway.backup import archive

uid, gid, data_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.chdir(data_dir)
os.setgroups([])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
with archive.box_locked(Path("."), within_s=0, where="backup", fix="-"):
    print("locked", os.getresuid(), flush=True)
    sys.stdin.read()
"""


@as_root
@pytest.mark.parametrize("who", [SERVICE_USER, (4999, SERVICE_USER[1])], ids=["the-service-user", "one-of-its-group"])
def test_a_root_restore_and_the_service_users_backup_exclude_each_other_and_neither_leaves_the_other_locked_out(
    box: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], who: tuple[int, int]
) -> None:
    """Root's restore and the edgegw user's nightly backup (`sudo edgegw backup restore` beside the timer's job)."""
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    for p in [data_dir, *data_dir.rglob("*")]:
        os.chown(p, *SERVICE_USER)
    data_dir.chmod(0o750)  # /var/lib/edgegw, the service user's: StateDirectoryMode=0750
    script = tmp_path / "take.py"
    script.write_text(_TAKE)
    args = [sys.executable, str(script), str(who[0]), str(who[1]), str(data_dir)]

    def take() -> subprocess.Popen[str]:
        child = subprocess.Popen(
            args, cwd=REPO, env=_THIS_TREE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        if (said := child.stdout.readline()) != f"locked {(who[0],) * 3}\n":
            child.kill()
            child.communicate()
            raise AssertionError(f"the lock not taken as uid {who[0]}, got {said!r}")
        return child

    backup = take()
    try:
        assert _cli(_restore_argv(path, config), lock_wait_s=0) == 1
    finally:
        backup.communicate("")
    assert backup.returncode == 0
    assert capsys.readouterr().err == (
        f"backup restore: the backup lock on {data_dir} is held by pid {backup.pid} (`{' '.join(args)}`), got no lock "
        "within 0 s; nothing was stopped or changed: let it end and restore again\n"
    )
    assert _cli(_restore_argv(path, config)) == 0
    after = take()  # the next night's, after the root restore
    after.communicate("")
    assert after.returncode == 0
