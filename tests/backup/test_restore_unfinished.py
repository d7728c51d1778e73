"""No backup keeps a part-restored box, and a restore cut short during its renames says where each file is.

A restore that could not put every file back kept its staging directory and left the services stopped, but
the nightly backup still ran: it kept the mixed data directory as a good generation, and its rotation pushed
out one taken before the restore, a whole one. A restore killed during its renames (a power cut, SIGKILL)
left no word at all: its staging directory, holding the backup's files not yet in place, was removed as a
leftover an hour later, and the backups went on. And `archive.restore` took no backup lock, so a backup could
run beside it. Every restore cut short here is a real process killed at a real rename.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, read_status, run_backup, status_line
from tests.backup.conftest import write_config
from tests.backup.test_restore_atomic import NIGHT, _backup, _next_day, _rows, set_immutable
from tests.backup.test_restore_config import SERVICE_USER, as_root
from tests.backup.test_restore_leftovers import _STUCK, _age, _staging
from tests.backup.test_restore_leftovers import aside_made_immutable as aside_made_immutable

REPO = Path(__file__).parents[2]

# archive.restore in a process of its own, killed (SIGKILL: nothing runs after it, as at a power cut) as it is
# about to put the backup's buffer.db in place: the box's files are aside by then, the backup's not all in place
_KILLED_AT_A_RENAME = """
import os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from gateway.backup import archive
from tests.backup.audit_paths import renamed

backup, data_dir, config = sys.argv[1:]

def audit(event, args):
    if event == "os.rename" and renamed(args, 1) == os.path.join(data_dir, "buffer.db"):
        os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(audit)
archive.restore(Path(backup), data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                now=datetime(2026, 12, 4, tzinfo=UTC))
"""


def _job(config: Path, data_dir: Path, share: Path) -> Job:
    return Job(gateway_id="fixture-gw", data_dir=data_dir, config_path=config, config=BackupConfig(directory=share))


def _child(script: str, *args: object) -> subprocess.CompletedProcess[str]:
    """`script` run by this Python in a process of its own, with `args`; its output captured."""
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], cwd=REPO, capture_output=True, text=True, check=False
    )


def _restore_killed(path: Path, config: Path, data_dir: Path) -> Path:
    """The restore of `path` killed half-way through its renames; returns its staging directory, which stays."""
    child = _child(_KILLED_AT_A_RENAME, path, data_dir, config)
    assert child.returncode == -signal.SIGKILL, child.stderr
    [staging] = _staging(data_dir)
    return staging


def test_a_restore_killed_during_its_renames_leaves_a_mark_that_says_where_each_file_is(
    box: tuple[Path, Path], tmp_path: Path
) -> None:
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    _next_day(config, data_dir)
    staging = _restore_killed(path, config, data_dir)
    [aside] = sorted(data_dir.glob(".pre-restore-*"))
    assert not (data_dir / "buffer.db").exists()  # the box's went aside, the backup's did not come: a mixed box
    assert (aside / "data" / "buffer.db").is_file()
    mark = (staging / archive.UNDER_WAY_MARK).read_text()
    assert mark.startswith(f"backup restore: {path} into {data_dir}, started 2026-12-04T00:00:00+00:00, was cut short")
    assert f"The previous files are under {aside}, the backup's not yet in place under {staging};" in mark
    assert archive.unfinished_restores(data_dir) == [staging / archive.UNDER_WAY_MARK]
    held = sorted(p.name for p in staging.iterdir())
    assert len(held) > 1  # the mark, and the backup's files not yet in place
    # a day later, the next check leaves it where a killed verify's or stage's leftovers are removed
    _age(staging, 24)
    archive.verify(path, data_dir=data_dir)
    assert _staging(data_dir) == [staging]
    assert sorted(p.name for p in staging.iterdir()) == held


def test_no_backup_is_taken_while_a_restore_cut_short_left_its_mark(
    box: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The nightly run fails, recorded for the alarms, with nothing written and nothing rotated; a whole restore
    lifts it and the next backup is taken."""
    config, data_dir = box
    share = tmp_path / "share"
    path = _backup(config, data_dir, share)
    _next_day(config, data_dir)
    staging = _restore_killed(path, config, data_dir)
    before = sorted(share.iterdir())
    with pytest.raises(archive.BackupError) as refused:
        run_backup(_job(config, data_dir, share), NIGHT.replace(day=5))
    assert str(refused.value) == (
        f"backup: no backup taken: a restore into {data_dir} did not finish, and the data directory may hold files "
        f"from before and after it; {staging / archive.UNDER_WAY_MARK} says where each part is: put the data "
        f"directory right (or restore again), then delete {staging} and back up again"
    )
    assert sorted(share.iterdir()) == before
    assert read_status(data_dir)["last_failure"]["error"] == str(refused.value)
    assert status_line(data_dir) == (  # `edgegw status`, before the night's failure and after it
        f"backup: REFUSED until a restore that did not finish is put right: {staging / archive.UNDER_WAY_MARK} says "
        f"where each part of the data directory is; then delete {staging}"
    )
    # restored again, whole: the mark no longer holds, and the backups go on
    with caplog.at_level(logging.WARNING, logger="gateway.backup"):
        archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT.replace(day=5))
    assert _rows(data_dir) == 900
    assert archive.unfinished_restores(data_dir) == []
    assert f"backup restore: {staging / archive.UNDER_WAY_MARK} no longer holds" in caplog.text
    taken = run_backup(_job(config, data_dir, share), NIGHT.replace(day=6))
    assert taken.is_file()
    assert read_status(data_dir)["ok"] is True
    assert status_line(data_dir) == f"backup: ok at 2026-12-06T18:12:00+00:00 ({taken})"


def test_no_backup_is_taken_after_a_restore_that_could_not_put_every_file_back_until_a_whole_one(
    box: tuple[Path, Path], tmp_path: Path, aside_made_immutable: Path
) -> None:
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    child = _child(_STUCK, path, data_dir, config)
    assert child.returncode == 3, child.stderr
    [kept] = _staging(data_dir)
    with pytest.raises(archive.BackupError, match=r"a restore into .* did not finish") as refused:
        _backup(config, data_dir, tmp_path / "later")
    assert f"; {kept / archive.KEPT_MARK} says where each part is" in str(refused.value)
    assert not (tmp_path / "later").exists()
    # put right the quickest way, by restoring again: the marks go (both: the kept one, and the one of a restore
    # under way it leaves in case the kept one cannot be written), and the backups go on
    for stuck in (aside_made_immutable, aside_made_immutable / "web"):
        set_immutable(stuck, False)
    archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT.replace(day=5))
    assert _rows(data_dir) == 900
    assert archive.unfinished_restores(data_dir) == []
    assert [m for m in (archive.KEPT_MARK, archive.UNDER_WAY_MARK) if (kept / m).exists()] == []
    assert _backup(config, data_dir, tmp_path / "later").is_file()


# archive.restore in a process of its own, SIGINT at the rename of buffer.db into place: the swap takes every rename
# back; as the staging directory is then removed, the child says whether the mark of a restore under way is still in it
_INTERRUPTED = """
import os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from gateway.backup import archive
from tests.backup.audit_paths import renamed

backup, data_dir, config = sys.argv[1:]
fired = []

def audit(event, args):
    if event == "os.rename" and renamed(args, 1) == os.path.join(data_dir, "buffer.db") and not fired:
        fired.append(args)
        os.kill(os.getpid(), signal.SIGINT)
    if event == "shutil.rmtree" and os.path.basename(os.fspath(args[0])).startswith(archive.STAGING_PREFIX):
        print("marked" if os.path.exists(os.path.join(args[0], archive.UNDER_WAY_MARK)) else "unmarked", flush=True)

sys.addaudithook(audit)
archive.restore(Path(backup), data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                now=datetime(2026, 12, 4, tzinfo=UTC))
"""


def test_a_restore_that_put_every_file_back_removes_its_mark_first(box: tuple[Path, Path], tmp_path: Path) -> None:
    """Killed between its undo and the staging directory's removal, it must not stop the backups of a whole box."""
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    child = _child(_INTERRUPTED, path, data_dir, config)
    assert child.returncode == -signal.SIGINT, child.stderr
    assert child.stdout.split() == ["unmarked"], child.stderr
    assert archive.unfinished_restores(data_dir) == []
    assert _backup(config, data_dir, tmp_path / "later").is_file()


def test_a_restore_waits_for_a_backup_that_runs(box: tuple[Path, Path], tmp_path: Path) -> None:
    """`archive.restore` holds the backup lock as the CLI's restore does: Busy, with nothing changed, while it is held."""
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    _next_day(config, data_dir)
    rows = _rows(data_dir)
    held, release = threading.Event(), threading.Event()

    def backup_running() -> None:
        with archive.box_locked(data_dir, within_s=0, where="test", fix="-"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=backup_running)
    holder.start()
    try:
        assert held.wait(10)
        with pytest.raises(archive.Busy, match=r"backup restore: the backup lock on .* got no lock within 0\.3 s"):
            archive.restore(
                path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT, box_wait_s=0.3
            )
    finally:
        release.set()
        holder.join()
    assert _rows(data_dir) == rows < 900  # the next day's rows: nothing restored
    archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    assert _rows(data_dir) == 900


# `archive.create` as the service user (the nightly job's), in a process of its own; prints the backup or the refusal
_AS_SERVICE_USER = """
import os, sys
from datetime import UTC, datetime
from pathlib import Path
from gateway.backup import archive

uid, gid, data_dir, config, out_dir = sys.argv[1:]
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
try:
    print(archive.create(data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                         out_dir=Path(out_dir), now=datetime(2026, 12, 5, tzinfo=UTC)))
except archive.BackupError as exc:
    print(exc)
"""


@as_root
def test_the_service_users_backup_sees_the_mark_of_a_root_restore_cut_short(
    searchable_box: tuple[Path, Path], searchable_tmp: Path
) -> None:
    """`sudo edgegw backup restore` makes its staging directory as root; the nightly job runs as the service user."""
    config, data_dir = searchable_box
    path = _backup(config, data_dir, searchable_tmp / "share")
    for p in [data_dir, *data_dir.rglob("*"), config]:
        os.chown(p, *SERVICE_USER)
    data_dir.chmod(0o750)  # /var/lib/edgegw, the service user's: StateDirectoryMode=0750
    staging = _restore_killed(path, config, data_dir)
    nightly = searchable_tmp / "nightly"
    nightly.mkdir()
    os.chown(nightly, *SERVICE_USER)
    child = _child(_AS_SERVICE_USER, *SERVICE_USER, data_dir, config, nightly)
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith(f"backup: no backup taken: a restore into {data_dir} did not finish"), child.stdout
    assert f"; {staging / archive.UNDER_WAY_MARK} says where each part is" in child.stdout
    assert list(nightly.iterdir()) == []


# `archive.restore` as the service user, in a process of its own; prints where the previous files went
_RESTORE_AS_SERVICE_USER = """
import os, sys
from datetime import UTC, datetime
from pathlib import Path
from gateway.backup import archive
from gateway.config import load_config

uid, gid, backup, data_dir, config = sys.argv[1:]
# as root, what the restore imports on its way, from a Python under /root: the config's checks, the config lock
load_config(Path(config))
import gateway.control.ops_config
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
print(archive.restore(Path(backup), data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                      now=datetime(2026, 12, 5, tzinfo=UTC)))
"""


@as_root
def test_the_service_users_whole_restore_after_a_root_one_cut_short_ends_well_and_says_what_is_left(
    searchable_box: tuple[Path, Path], searchable_tmp: Path
) -> None:
    """It cannot remove the root restore's mark: that is a warning for the technician, not a failed restore."""
    _, data_dir = searchable_box
    etc = searchable_tmp / "etc"
    etc.mkdir()
    config = write_config(etc / "gateway.toml", data_dir)
    share = searchable_tmp / "share"
    path = _backup(config, data_dir, share)
    for p in [data_dir, *data_dir.rglob("*"), etc, config, share, path]:
        os.chown(p, *SERVICE_USER)
    data_dir.chmod(0o750)
    staging = _restore_killed(path, config, data_dir)
    child = _child(_RESTORE_AS_SERVICE_USER, *SERVICE_USER, path, data_dir, config)
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith(f"{data_dir}/.pre-restore-20261205T000000Z")
    assert _rows(data_dir) == 900
    assert (
        f"backup restore: cannot remove {staging / archive.UNDER_WAY_MARK}, got Permission denied; this restore "
        f"replaced the data directory, so it no longer holds: delete {staging} as root, or no backup is taken"
    ) in child.stderr
    assert archive.unfinished_restores(data_dir) == [staging / archive.UNDER_WAY_MARK]
