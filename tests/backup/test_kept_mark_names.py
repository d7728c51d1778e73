"""A restore that cannot mark the directory it keeps says which directory, by the name a technician can look at.

A restore reaches its staging directory through a held descriptor (/proc/self/fd/<n>), so that a link the
service user puts in its place is never followed. The warning of a restore that could neither put every file
back nor write its `KEPT-BY-RESTORE` mark quoted that descriptor's path: gone with the process, nothing to `ls`.
The restore here runs in a real process; the directories it cannot change are made immutable (chattr +i), as
a disk error would leave them.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.backup import archive
from tests.backup.test_restore_atomic import set_immutable

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
REPO = Path(__file__).parents[2]

# archive.restore in a process of its own; as web/accounts.db is about to go aside, the aside directory's data/ and
# data/web/ and the restore's staging directory are made immutable: that move fails, the files moved before it cannot
# go back, and the mark that keeps the staging directory cannot be written into it
_STUCK_UNMARKED = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from gateway.backup import archive
from tests.backup.audit_paths import renamed
from tests.backup.test_restore_atomic import set_immutable

backup, data_dir, config = map(Path, sys.argv[1:])
aside = data_dir / ".pre-restore-20261204T000000Z" / "data"

def audit(event, args):
    if event == "os.rename" and renamed(args, 0) == str(data_dir / "web" / "accounts.db"):
        [staging] = [p for p in data_dir.iterdir() if p.name.startswith(archive.STAGING_PREFIX)]
        for directory in (aside / "web", aside, staging):
            set_immutable(directory, True)

sys.addaudithook(audit)
try:
    archive.restore(backup, data_dir=data_dir, config_path=config, gateway_id="fixture-gw",
                    now=datetime(2026, 12, 4, tzinfo=UTC))
except archive.RestoreIncomplete:
    raise SystemExit(3)
"""


@pytest.fixture
def mutable_again(box: tuple[Path, Path]) -> Iterator[None]:
    """Every directory under the box's data directory made mutable again in teardown; skips where chattr +i is not
    available (not root, or a file system without it)."""
    _, data_dir = box
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
    yield
    for directory in [p for p in data_dir.rglob("*") if p.is_dir() and not p.is_symlink()]:
        set_immutable(directory, False)


def test_a_kept_directory_that_cannot_be_marked_is_named_by_its_path(
    box: tuple[Path, Path], tmp_path: Path, mutable_again: None
) -> None:
    config, data_dir = box
    backup = archive.create(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=tmp_path / "share", now=NIGHT
    )
    child = subprocess.run(
        [sys.executable, "-c", _STUCK_UNMARKED, str(backup), str(data_dir), str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 3, child.stderr
    [kept] = [p for p in data_dir.iterdir() if p.name.startswith(archive.STAGING_PREFIX)]
    assert not (kept / archive.KEPT_MARK).exists() and (kept / archive.UNDER_WAY_MARK).exists()
    assert child.stderr.splitlines() == [
        f"backup restore: cannot mark {kept} as kept, got {os.strerror(errno.EPERM)}; its {archive.UNDER_WAY_MARK} "
        "mark keeps it all the same"
    ]
