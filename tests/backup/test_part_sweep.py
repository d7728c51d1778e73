"""A killed run's `.part` file goes at the next run, never one a running run still writes, however long it takes.

`create` writes the backup as `.<name>.part` and renames it once whole; `copy` does the same on the share. A run
killed before the rename (`kill -9`, a power cut) left a `.part` as big as a whole backup, which the next run
removed only once it was an hour old: a box backed up again within the hour (`backup now` after a failed
nightly, a technician trying twice) kept it, on a small disk or a share. And the hour was a guess the other way
too: a run stalled that long on a hung share lost its `.part` under its feet. A running run holds a lock on its
`.part`, as on its staging directory (create_staging.py): the next run removes every one whose lock it gets.
Every run here is a real process, held or killed at the rename of its `.part`; every file is a real one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.backup import archive
from tests.backup.test_restore_config import SERVICE_USER, as_root

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
REPO = Path(__file__).parents[2]

# `archive.create` (argv "create") or `archive.copy` (argv "copy") in a process of its own, held just before it
# renames its `.part` (or, with HELD_AT=chown, just before root hands the whole `.part` to the service user): it
# prints the `.part`'s path, then waits for a line on stdin; at the end it prints its file
_RUN = """
import os, sys
from datetime import datetime
from pathlib import Path
from gateway.backup import archive
from tests.backup.audit_paths import renamed

def held(event, args):
    if os.environ.get("HELD_AT") == "chown":
        if event != "os.chown" or not isinstance(args[0], int):
            return
        part = os.readlink(f"/proc/self/fd/{args[0]}")
    elif event == "os.rename":
        part = renamed(args, 0)
    else:
        return
    if part.endswith(".part"):
        print(part, flush=True)
        sys.stdin.readline()

what, *rest = sys.argv[1:]
sys.addaudithook(held)
if what == "create":
    data_dir, config, out_dir, now = rest
    print(archive.create(data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                         out_dir=Path(out_dir), now=datetime.fromisoformat(now)))
else:
    backup, share = rest
    print(archive.copy(Path(backup), Path(share)))
"""


@contextlib.contextmanager
def _held_at_rename(*args: str, at: str = "rename") -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """The run of `_RUN` with `args`, held where its `.part` is whole and about to be renamed (`at` "chown": about
    to be handed to the service user); yields it and the `.part`. Killed on leaving if the test did not let it go."""
    child = subprocess.Popen(
        [sys.executable, "-c", _RUN, *args],
        cwd=REPO,
        env={**os.environ, "HELD_AT": at},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.endswith(".part\n"):
            child.kill()
            out, err = child.communicate()
            raise AssertionError(f"the run wrote no .part, got {line + out!r} {err!r}")
        yield child, Path(line.strip())
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def _create(config: Path, data_dir: Path, out_dir: Path, now: datetime) -> tuple[str, ...]:
    return ("create", str(data_dir), str(config), str(out_dir), now.isoformat())


def _killed(child: subprocess.Popen[str]) -> None:
    child.kill()  # SIGKILL: no handler, no finally, nothing removed
    child.communicate()
    assert child.returncode == -9


def _aged(path: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def _parts(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(".part"))


def test_a_killed_creates_part_goes_at_the_next_create_however_young(
    box: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, data_dir = box
    out_dir = tmp_path / "backups"
    with _held_at_rename(*_create(config, data_dir, out_dir, NIGHT)) as (child, left):
        _killed(child)
    assert _parts(out_dir) == [left] and left.stat().st_size > 0  # a whole backup's bytes, under no final name
    with caplog.at_level(logging.WARNING, logger="gateway.backup"):
        made = archive.create(  # `backup now` a minute later
            data_dir=data_dir,
            config_path=config,
            gateway_id="fixture-gw",
            out_dir=out_dir,
            now=NIGHT + timedelta(0, 60),
        )
    assert sorted(out_dir.iterdir()) == [made]
    assert [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()] == [
        f"backup: removed {left}, left by a backup that did not finish (killed, or a power cut)"
    ]


def test_a_running_creates_part_stays_however_long_since_it_was_written(box: tuple[Path, Path], tmp_path: Path) -> None:
    """A create stalled two hours (a hung share, a stopped process) still writes its `.part`: the next create leaves
    it, and the stalled one ends with a whole backup."""
    config, data_dir = box
    out_dir = tmp_path / "backups"
    with _held_at_rename(*_create(config, data_dir, out_dir, NIGHT)) as (child, running):
        _aged(running, 2)
        made = archive.create(
            data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=NIGHT + timedelta(1)
        )
        assert running.exists()
        out, err = child.communicate("go on\n", timeout=60)
    assert child.returncode == 0, err
    stalled = Path(out.strip())
    assert sorted(out_dir.iterdir()) == sorted([stalled, made])
    archive.verify(stalled)


def test_a_killed_copys_part_on_the_share_goes_at_the_next_copy(
    box: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, data_dir = box
    out_dir, share = tmp_path / "backups", tmp_path / "share"
    first, second = (
        archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=night)
        for night in (NIGHT, NIGHT + timedelta(0, 60))
    )
    with _held_at_rename("copy", str(first), str(share)) as (child, left):
        _killed(child)
    assert _parts(share) == [left]
    with caplog.at_level(logging.WARNING, logger="gateway.backup"):
        copied = archive.copy(second, share)
    assert sorted(share.iterdir()) == [copied]
    assert f"backup: removed {left}, left by a backup that did not finish (killed, or a power cut)" in caplog.text


# `archive.create` as the service user (the nightly job's), in a process of its own
_NIGHTLY = """
import os, sys
from datetime import datetime
from pathlib import Path
from gateway.backup import archive
import _strptime  # as root, what datetime.strptime imports on its way, from a Python under /root

uid, gid, data_dir, config, out_dir, now = sys.argv[1:]
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
print(archive.create(data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                     out_dir=Path(out_dir), now=datetime.fromisoformat(now)))
"""


@as_root
def test_a_killed_root_backups_part_that_the_service_user_cannot_open_goes_once_an_hour_old(
    searchable_box: tuple[Path, Path],
) -> None:
    """`sudo edgegw backup now` killed: its `.part` stays root's (0600), so the nightly job cannot take its lock to
    tell a running one from a dead one; the time since it was last written decides, as before the lock."""
    config, data_dir = searchable_box
    out_dir = data_dir / "backups"
    out_dir.mkdir(mode=0o700)
    for p in [data_dir, *data_dir.rglob("*"), config]:
        os.chown(p, *SERVICE_USER)
    with _held_at_rename(*_create(config, data_dir, out_dir, NIGHT), at="chown") as (child, left):
        _killed(child)
    assert left.stat().st_uid == 0 and left.stat().st_size > 0

    def nightly(night: int) -> Path:
        now = NIGHT + timedelta(night)
        args = [*map(str, SERVICE_USER), str(data_dir), str(config), str(out_dir), now.isoformat()]
        run = subprocess.run(
            [sys.executable, "-c", _NIGHTLY, *args], cwd=REPO, capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, run.stderr
        return Path(run.stdout.strip())

    made = [nightly(1)]
    assert _parts(out_dir) == [left]  # written a moment ago: it may be a running one's
    _aged(left, 1.1)
    made.append(nightly(2))
    # root's staging directory stays too, named by each nightly run with the command that removes it (test_staging_sweep)
    assert sorted(p for p in out_dir.iterdir() if not p.name.startswith(".staging-")) == sorted(made)
