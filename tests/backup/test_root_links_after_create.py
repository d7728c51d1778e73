"""After `create` made the backup, root's nightly steps (verify, rotate, the copy to the share) act in the backup
directory the run holds open, through no name the service user swapped meanwhile.

`sudo edgegw backup now` runs the whole night as root, in `<data_dir>/backups`, which the service user owns: between
two steps that user may rename the finished backup and put a link (to /etc/shadow) under its name, or rename the
directory itself and put a link to another directory in its place. Root's verify read, its copy copied onto the share
and its rotation deleted by path, through those links. As in test_root_links.py, `run_backup` runs as root in a
process of its own, stopped by an audit hook at the step; the links are planted by a real process of the service
user (setresuid); the "victim" stands for a root-only directory such as /etc/sudoers.d.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.backup import archive
from gateway.backup.schedule import read_status
from tests.backup.test_restore_config import SERVICE_USER, as_root
from tests.backup.test_root_links import NIGHT, REPO, SECRET, _box, _link_as_service_user, _victim_untouched

# Planted as the service user: `final`, the finished backup renamed aside (`.moved`) and a link to the victim's
# file in its place; `directory`, the backup directory itself renamed aside and a link to the victim in its place.
_PLANT = """
import os, sys
uid, gid, what, out_dir, victim = sys.argv[1:]
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
if what == "directory":
    os.rename(out_dir, out_dir + ".moved")
    os.symlink(victim, out_dir)
for name in sorted(os.listdir(out_dir)) if what == "final" else []:
    path = os.path.join(out_dir, name)
    if name.startswith("edgegw-") and name.endswith(".tar.gz") and not os.path.islink(path):
        os.rename(path, path + ".moved")
        os.symlink(os.path.join(victim, "shadow"), path)
"""

# Root's nightly run (`run_backup`), stopped by its audit hook where `when` says:
#   verify: root making its `.verify-*` directory to check the new backup (the backup written, not yet read)
#   rotate: root's first listing once that check is over (the rotation's)
#   copy: root reaching the share's directory to copy the checked backup there
_ROOT_NIGHT = """
import json, os, subprocess, sys
from datetime import datetime
from pathlib import Path
from gateway.backup import archive
from gateway.backup.schedule import read_status
from gateway.backup.config import BackupConfig
from gateway.backup.schedule import Job, run_backup

when, uid, gid, data_dir, config, share, victim, now, generations, plant = sys.argv[1:]
out_dir = os.path.join(data_dir, "backups")
state = {"checked": False, "busy": False, "planted": 0}

def planted(what):
    state["busy"] = True
    try:
        subprocess.run([sys.executable, "-c", plant, uid, gid, what, out_dir, victim], check=True)
        state["planted"] += 1
    finally:
        state["busy"] = False

def hook(event, args):
    if state["busy"] or state["planted"]:
        return
    if event == "os.rmdir" and ".verify-" in str(args[0]):
        state["checked"] = True
    elif when == "verify" and event == "os.mkdir" and ".verify-" in str(args[0]):
        planted("final")
    elif when == "rotate" and state["checked"] and event in ("os.listdir", "os.scandir"):
        planted("directory")
    elif when == "copy" and state["checked"] and event == "open" and str(args[0]) == os.path.basename(share):
        planted("final")

copy_to = Path(share) if share else None
job = Job(gateway_id="fixture-gw", data_dir=Path(data_dir), config_path=Path(config),
          config=BackupConfig(generations=int(generations), copy_to=copy_to))
sys.addaudithook(hook)
try:
    made = run_backup(job, datetime.fromisoformat(now))
    print(json.dumps({"planted": state["planted"], "made": str(made)}))
except archive.BackupError as exc:
    print(json.dumps({"planted": state["planted"], "error": str(exc)}))
"""


def _night_as_root(
    when: str, config: Path, data_dir: Path, victim: Path, *, share: Path | None = None, generations: int = 7
) -> dict[str, Any]:
    args = [when, *map(str, SERVICE_USER), str(data_dir), str(config), str(share or "")]
    args += [str(victim), NIGHT.isoformat(), str(generations), _PLANT]
    run = subprocess.run(
        [sys.executable, "-c", _ROOT_NIGHT, *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    outcome["log"] = run.stderr
    return outcome


def _replaced(final: Path, victim: Path) -> str:
    return (
        f"backup: {final} was replaced after the backup wrote it, got a symbolic link to {victim / 'shadow'}; nothing "
        "read through it: a process with the service user's rights changes the backup directory "
        f"{final.parent}: find it, then remove {final} and back up again"
    )


@as_root
def test_a_link_swapped_in_for_the_backup_before_roots_verify_is_not_read(searchable_tmp: Path) -> None:
    """Root's verify opened the backup by path: it read the victim's file and wrote its first bytes into the error
    (`Not a gzipped file (b'ro')`), which the status file, the service user's, keeps."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    final = out_dir / archive.file_name("fixture-gw", NIGHT)
    outcome = _night_as_root("verify", config, data_dir, victim)
    assert outcome["planted"] == 1
    _victim_untouched(victim)
    assert outcome.get("error") == _replaced(final, victim), outcome
    assert final.is_symlink()  # the service user's link, left for the technician to find
    assert read_status(data_dir)["last_failure"]["error"] == _replaced(final, victim)


@as_root
def test_a_link_swapped_in_for_the_backup_before_roots_copy_puts_nothing_of_the_victim_on_the_share(
    searchable_tmp: Path, tmpfs: Callable[..., Path], tmp_path: Path
) -> None:
    """Root's copy opened the checked backup by path again: the victim's file went onto the share, root's there."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    share = tmpfs("8m", at=tmp_path / "share")
    final = out_dir / archive.file_name("fixture-gw", NIGHT)
    outcome = _night_as_root("copy", config, data_dir, victim, share=share)
    assert outcome["planted"] == 1
    _victim_untouched(victim)
    assert outcome.get("error") == _replaced(final, victim), outcome
    on_share = {p.name: p.read_bytes() for p in share.rglob("*") if p.is_file()}
    assert not [name for name, data in on_share.items() if SECRET in data], on_share
    assert not [name for name in on_share if name.endswith(".part")]


@as_root
def test_a_backup_directory_swapped_for_a_link_before_roots_rotation_has_nothing_deleted_where_it_leads(
    searchable_tmp: Path,
) -> None:
    """Root's rotation listed and deleted by the directory's path: through the link, the victim's files named like
    this box's backups went, root's."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    older = out_dir / archive.file_name("fixture-gw", NIGHT - timedelta(days=1))
    older.write_bytes(b"last night's")
    os.chown(older, *SERVICE_USER)
    theirs = [archive.file_name("fixture-gw", NIGHT - timedelta(days=n)) for n in (2, 3)]
    for name in theirs:
        (victim / name).write_bytes(b"root's own, named like a backup")
        (victim / name).chmod(0o600)
    outcome = _night_as_root("rotate", config, data_dir, victim, generations=1)
    assert outcome["planted"] == 1
    assert sorted(p.name for p in victim.iterdir()) == sorted(["shadow", *theirs])
    assert (victim / "shadow").read_bytes() == SECRET
    # the rotation went on in the directory the run held, now named backups.moved
    final = archive.file_name("fixture-gw", NIGHT)
    assert outcome.get("made") == str(out_dir / final), outcome
    assert sorted(p.name for p in out_dir.with_name("backups.moved").iterdir()) == [final]


@as_root
def test_roots_backup_list_refuses_a_link_the_service_user_put_in_place_of_the_backup_directory(
    searchable_tmp: Path,
) -> None:
    """`sudo edgegw backup list` listed whatever directory the link named, and the sizes of its files."""
    _, data_dir, out_dir, victim = _box(searchable_tmp)
    (victim / archive.file_name("fixture-gw", NIGHT)).write_bytes(b"root's own, named like a backup")
    out_dir.rmdir()
    _link_as_service_user(victim, out_dir)
    with pytest.raises(archive.BackupError) as refused:
        archive.list_backups(out_dir)
    assert str(refused.value) == (
        f"backup: {out_dir} must be a directory, got a symbolic link to {victim} in {data_dir}, which uid "
        f"{SERVICE_USER[0]} may change (not only root or this user); nothing was made or written through it: if the "
        f"link is yours, name the directory it leads to in the config instead of {out_dir}; if not, a process with "
        f"those rights tampers with {data_dir}: find it, remove the link and back up again"
    )
