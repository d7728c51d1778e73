"""A store swapped for a link between the check of its name and its snapshot: no other file gets into the backup.

`create` checks each store's name through no link (`_open_source`), then has SQLite open the store by that name: as
root in a child process (confined_snapshot.py), as the service user in the run itself. A link the service user puts
there in between had root's SQLite snapshot whatever it names, a root-only database, into a backup the service user
owns and copies to the share. Root's run happens in a process of its own whose audit hook lets the service user (a
real process, setresuid) plant the link at the exact moment: as the snapshot's child process starts. The service
user's own run (here: a process that drops to it) can only read what that user may read anyway: it is refused by
name all the same rather than backing up another file.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.backup.conftest import RELEASE, write_config
from tests.backup.test_restore_config import SERVICE_USER, as_root

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
REPO = Path(__file__).parents[2]
MARK = "root-only-row-4f1c"

# as the service user: the store renamed aside and a link to the victim put in its place
_PLANT = """
import os, sys
uid, gid, store, victim = sys.argv[1:]
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
os.rename(store, store + ".moved")
os.symlink(victim, store)
"""

# `archive.create` as `who` ("root", or "service" for a process that drops to the service user first), the link
# planted as the snapshot of `store` starts: root's child process, the service user's sqlite3.connect
_RUN = """
import json, os, subprocess, sys
from datetime import datetime
from pathlib import Path

who, uid, gid, data_dir, config, out_dir, store, victim, now, plant = sys.argv[1:]
state = {"planted": 0, "busy": False}

def planted():
    state["busy"] = True
    try:
        if who == "root":
            subprocess.run([sys.executable, "-c", plant, uid, gid, store, victim], check=True)
        else:
            os.rename(store, store + ".moved")
            os.symlink(victim, store)
        state["planted"] += 1
    finally:
        state["busy"] = False

def hook(event, args):
    if state["busy"] or state["planted"]:
        return
    # the store's path (or its name in the data directory) among the snapshot child's arguments
    if who == "root" and event == "subprocess.Popen" and any(str(a).endswith("buffer.db") for a in args[1]):
        planted()
    elif who == "service" and event == "sqlite3.connect" and str(args[0]).startswith(f"file:{store}?"):
        planted()

from gateway.backup import archive  # before the drop: this interpreter's files are root's

if who == "service":
    os.setresgid(int(gid), int(gid), int(gid))
    os.setgroups([])
    os.setresuid(int(uid), int(uid), int(uid))
sys.addaudithook(hook)
try:
    made = archive.create(data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                          out_dir=Path(out_dir), now=datetime.fromisoformat(now))
    print(json.dumps({"planted": state["planted"], "made": str(made)}))
except archive.BackupError as exc:
    print(json.dumps({"planted": state["planted"], "error": str(exc)}))
"""


def _box(top: Path, victim_owner: tuple[int, int]) -> tuple[Path, Path, Path, Path]:
    """(config, data dir, backup directory, victim database): everything but the victim the service user's."""
    data_dir = top / "data"
    shutil.copytree(RELEASE, data_dir)
    out_dir = data_dir / "backups"
    out_dir.mkdir(mode=0o700)
    config = write_config(top / "gateway.toml", data_dir)
    for p in [data_dir, *data_dir.rglob("*"), config]:
        os.chown(p, *SERVICE_USER)
    victim_dir = top / "victim"
    victim_dir.mkdir(mode=0o755)
    victim = victim_dir / "secret.db"
    db = sqlite3.connect(victim)
    db.execute("CREATE TABLE secret (x)")
    db.execute("INSERT INTO secret VALUES (?)", (MARK,))
    db.commit()
    db.close()
    victim.chmod(0o600)
    os.chown(victim, *victim_owner)
    return config, data_dir, out_dir, victim


def _run(who: str, config: Path, data_dir: Path, out_dir: Path, victim: Path) -> dict[str, Any]:
    store = data_dir / "buffer.db"
    args = [who, *map(str, SERVICE_USER), str(data_dir), str(config), str(out_dir), str(store), str(victim)]
    run = subprocess.run(
        [sys.executable, "-c", _RUN, *args, NIGHT.isoformat(), _PLANT],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return outcome


def _holds_the_mark(backup: Path) -> bool:
    with tarfile.open(backup) as tar:
        for member in tar:
            data = tar.extractfile(member)
            if data is not None and MARK.encode() in data.read():
                return True
    return False


@as_root
def test_roots_snapshot_of_a_store_swapped_for_a_link_takes_nothing_from_outside_the_data_directory(
    searchable_tmp: Path,
) -> None:
    """Root's snapshot child opened the store by name: the backup held the root-only database as buffer.db."""
    config, data_dir, out_dir, victim = _box(searchable_tmp, (0, 0))
    outcome = _run("root", config, data_dir, out_dir, victim)
    assert outcome["planted"] == 1
    if "made" in outcome:
        assert not _holds_the_mark(Path(outcome["made"])), "the root-only database is in the backup"
    store = data_dir / "buffer.db"
    assert outcome.get("error") == (
        f"backup: {store} was replaced while the backup ran, got a symbolic link to {victim}; no backup written, "
        f"nothing read through it: a process with the service user's rights changes the data directory {data_dir}: "
        "find it, put the file back and back up again"
    )
    assert [p.name for p in out_dir.iterdir()] == []


@as_root
def test_the_service_users_snapshot_of_a_store_swapped_for_a_link_is_refused_by_name(searchable_tmp: Path) -> None:
    """Only what the service user may read could get in (here its own database outside the data directory), and
    it did, silently, as buffer.db: now the run says what happened."""
    config, data_dir, out_dir, victim = _box(searchable_tmp, SERVICE_USER)
    victim.parent.chmod(0o755)
    outcome = _run("service", config, data_dir, out_dir, victim)
    assert outcome["planted"] == 1
    if "made" in outcome:
        assert not _holds_the_mark(Path(outcome["made"])), "another database is in the backup as buffer.db"
    assert outcome.get("error", "").startswith(
        f"backup: {data_dir / 'buffer.db'} was replaced while the backup ran, got a symbolic link to {victim}; "
    )
    assert [p.name for p in out_dir.iterdir()] == []


def test_a_backup_still_snapshots_every_store(box: tuple[Path, Path]) -> None:
    """The snapshot by the data directory held open: every store of the release is in the backup, checked."""
    from gateway.backup import archive

    config, data_dir = box
    made = archive.create(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=data_dir / "backups", now=NIGHT
    )
    manifest = archive.verify(made)
    stores = sorted(m.name for m in manifest.members if m.sqlite)
    assert stores == ["data/buffer.db", "data/config_versions.db", "data/web/accounts.db", "data/web/audit.db"]
