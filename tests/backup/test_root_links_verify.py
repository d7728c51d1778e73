"""`sudo edgegw backup now` verifies its backup (root) in a `.verify-*` directory of the data directory, which the
service user owns: a link that user puts in its place never has root write, or chown, anything outside it.

As in test_root_links.py: `archive.verify` runs as root in a process of its own, stopped by an audit hook at the
exact step where the link does most harm; the link is planted by a real process of the service user (setresuid).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.backup import archive
from tests.backup.test_restore_config import SERVICE_USER, as_root
from tests.backup.test_root_links import NIGHT, REPO, _box, _victim_untouched

# Planted as the service user: every `prefix`* directory of `parent` renamed aside (`.moved`), a link to `victim`
# in its place.
PLANT = """
import os, sys
uid, gid, prefix, parent, victim = sys.argv[1:]
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
for name in sorted(os.listdir(parent)):
    path = os.path.join(parent, name)
    if name.startswith(prefix) and not os.path.islink(path) and not name.endswith(".moved"):
        os.rename(path, path + ".moved")
        os.symlink(victim, path)
"""

# Root's verify, stopped where `when` says to let the service user plant its link:
#   made: the first open after root made its verify directory (before it could hold it open)
#   extract: root opening the first member's copy in it (the directory made and in use)
_ROOT_VERIFY = """
import json, os, subprocess, sys
from pathlib import Path
from gateway.backup import archive

when, uid, gid, data_dir, backup, victim, plant = sys.argv[1:]
state = {"mkdir": False, "busy": False, "planted": 0}

def planted():
    state["busy"] = True
    try:
        subprocess.run([sys.executable, "-c", plant, uid, gid, ".verify-", data_dir, victim], check=True)
        state["planted"] += 1
    finally:
        state["busy"] = False

def hook(event, args):
    if state["busy"] or state["planted"]:
        return
    if event == "os.mkdir" and ".verify-" in str(args[0]):
        state["mkdir"] = True
    elif when == "made" and event == "open" and state["mkdir"]:
        planted()
    elif when == "extract" and event == "open" and str(args[0]).endswith("00000"):
        planted()

sys.addaudithook(hook)
try:
    manifest = archive.verify(Path(backup), data_dir=Path(data_dir))
    print(json.dumps({"planted": state["planted"], "members": len(manifest.members)}))
except archive.BackupError as exc:
    print(json.dumps({"planted": state["planted"], "error": str(exc)}))
"""


def _verify_as_root(when: str, data_dir: Path, backup: Path, victim: Path) -> dict[str, Any]:
    args = [when, *map(str, SERVICE_USER), str(data_dir), str(backup), str(victim), PLANT]
    run = subprocess.run(
        [sys.executable, "-c", _ROOT_VERIFY, *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    outcome["log"] = run.stderr
    return outcome


def _snapshot(data_dir: Path) -> dict[str, bytes]:
    """The box's data (the backups left out), byte for byte."""
    return {
        str(p.relative_to(data_dir)): p.read_bytes()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and not p.is_symlink() and "backups" not in p.parts and not p.name.startswith(".verify-")
    }


@as_root
@pytest.mark.parametrize("when", ["made", "extract"])
def test_a_link_in_place_of_roots_verify_directory_gets_no_file_written_outside(
    searchable_tmp: Path, when: str
) -> None:
    """Root made `.verify-*` by path, opened it following links and wrote each member's copy (`00000`, …) by path:
    through the link, into the victim directory, root's files with the backup's bytes."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    backup = archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=NIGHT)
    before = _snapshot(data_dir)
    victim_dir = victim.stat()
    outcome = _verify_as_root(when, data_dir, backup, victim)
    assert outcome["planted"] == 1
    _victim_untouched(victim)
    after_dir = victim.stat()
    assert (after_dir.st_uid, after_dir.st_gid, after_dir.st_mode) == (0, 0, victim_dir.st_mode)
    assert _snapshot(data_dir) == before
    assert "members" not in outcome, outcome
    link = next(p for p in data_dir.iterdir() if p.name.startswith(".verify-") and p.is_symlink())
    assert outcome["error"] == (
        f"backup {backup}: the directory {link} made to check it was replaced while it ran, got a symbolic link to "
        f"{victim}; nothing written through it, the file is not verified: a process with the service user's "
        f"rights changes the data directory {data_dir}: find it, then remove {link} and verify again"
    )
    # root's own directory, renamed aside: emptied (a copy of the stores) and removed once it was held
    moved = [p for p in data_dir.iterdir() if p.name.startswith(".verify-") and not p.is_symlink()]
    if when == "extract":
        assert moved == []
    else:
        # renamed before root could hold it: left as root made it, empty
        assert [list(p.iterdir()) for p in moved] == [[]]
