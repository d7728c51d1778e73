"""`sudo edgegw backup now` (root) reads the stores in the data directory, which the service user owns: a file that
user swaps for a link (to a root-only file) between the listing and the copy never gets that file into a backup,
which the service user then owns and may read.

As in test_root_links.py: `archive.create` runs as root in a process of its own, stopped by an audit hook as it
opens the file; the link is planted then by a real process of the service user (setresuid).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.backup.test_restore_config import SERVICE_USER, as_root
from tests.backup.test_root_links import NIGHT, REPO, SECRET, _box, _victim_untouched

# Planted as the service user: `path` renamed aside (`.moved`), a link to `target` in its place.
_PLANT = """
import os, sys
uid, gid, path, target = sys.argv[1:]
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
os.rename(path, path + ".moved")
os.symlink(target, path)
"""

# Root's backup, stopped as it first opens a file named `name` in the data directory
_ROOT_RUN = """
import json, os, subprocess, sys
from datetime import datetime
from pathlib import Path
from gateway.backup import archive

uid, gid, data_dir, config, out_dir, name, path, target, now, plant = sys.argv[1:]
state = {"busy": False, "planted": 0}

def hook(event, args):
    if state["busy"] or state["planted"] or event != "open" or not str(args[0]).endswith(name):
        return
    state["busy"] = True
    try:
        subprocess.run([sys.executable, "-c", plant, uid, gid, path, target], check=True)
        state["planted"] += 1
    finally:
        state["busy"] = False

sys.addaudithook(hook)
try:
    made = archive.create(data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                          out_dir=Path(out_dir), now=datetime.fromisoformat(now))
    print(json.dumps({"planted": state["planted"], "made": str(made)}))
except archive.BackupError as exc:
    print(json.dumps({"planted": state["planted"], "error": str(exc)}))
"""


def _backup_as_root(config: Path, data_dir: Path, out_dir: Path, swapped: Path, target: Path) -> dict[str, Any]:
    args = [*map(str, SERVICE_USER), str(data_dir), str(config), str(out_dir), swapped.name, str(swapped)]
    run = subprocess.run(
        [sys.executable, "-c", _ROOT_RUN, *args, str(target), NIGHT.isoformat(), _PLANT],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return outcome


@as_root
def test_a_plain_file_swapped_for_a_link_to_a_root_only_file_is_not_read_into_the_backup(
    searchable_tmp: Path,
) -> None:
    """Root listed web/audit.head, then opened it by path, following links: the service user's link to the stand-in
    for /etc/shadow had it copied into a backup the service user owns."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    swapped = data_dir / "web" / "audit.head"
    outcome = _backup_as_root(config, data_dir, out_dir, swapped, victim / "shadow")
    assert outcome["planted"] == 1
    _victim_untouched(victim)
    for p in out_dir.rglob("*"):  # no backup, nor any part or staging copy of one, holds the secret
        assert not p.is_file() or SECRET not in p.read_bytes(), p
    assert "made" not in outcome, outcome
    assert outcome["error"] == (
        f"backup: {swapped} was replaced while the backup ran, got a symbolic link to {victim / 'shadow'}; no backup "
        f"written, nothing read through it: a process with the service user's rights changes the data directory "
        f"{data_dir}: find it, put the file back and back up again"
    )
    assert not list(out_dir.glob("edgegw-*")), list(out_dir.iterdir())
    assert (data_dir / "web" / "audit.head.moved").read_bytes() == (
        Path(__file__).parents[1] / "storage" / "fixtures" / "0.1.0" / "web" / "audit.head"
    ).read_bytes()
