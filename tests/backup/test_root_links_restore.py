"""`sudo edgegw backup restore FILE` (root) checks the backup in a `.restore-staging-*` directory of the data
directory, which the service user owns: a link that user puts in its place never has root write, chmod or chown
anything outside it, and the box's data stays as it was.

As in test_root_links.py: `archive.restore` runs as root in a process of its own, stopped by an audit hook at the
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
from tests.backup.test_root_links_verify import PLANT

_STAGING = archive.STAGING_PREFIX

# Root's restore, stopped where `when` says to let the service user plant its link:
#   made: the first open after root made its staging directory (before it could hold it open)
#   extract: root opening the first member's copy in it (the directory made and in use)
_ROOT_RESTORE = """
import json, os, subprocess, sys
from datetime import datetime
from pathlib import Path
from gateway.backup import archive

when, uid, gid, data_dir, config, backup, victim, now, plant = sys.argv[1:]
state = {"mkdir": False, "busy": False, "planted": 0}

def planted():
    state["busy"] = True
    try:
        subprocess.run([sys.executable, "-c", plant, uid, gid, archive.STAGING_PREFIX, data_dir, victim], check=True)
        state["planted"] += 1
    finally:
        state["busy"] = False

def hook(event, args):
    if state["busy"] or state["planted"]:
        return
    if event == "os.mkdir" and archive.STAGING_PREFIX in str(args[0]):
        state["mkdir"] = True
    elif when == "made" and event == "open" and state["mkdir"]:
        planted()
    elif when == "extract" and event == "open" and str(args[0]).endswith("00000"):
        planted()

sys.addaudithook(hook)
try:
    aside = archive.restore(Path(backup), data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                            now=datetime.fromisoformat(now))
    print(json.dumps({"planted": state["planted"], "aside": str(aside)}))
except archive.BackupError as exc:
    print(json.dumps({"planted": state["planted"], "error": str(exc)}))
"""


def _restore_as_root(
    when: str, config: Path, data_dir: Path, backup: Path, victim: Path, *, script: str = _ROOT_RESTORE
) -> dict[str, Any]:
    """`script` (root's restore with its audit hook) run with `when`, the step at which the link is planted."""
    args = [when, *map(str, SERVICE_USER), str(data_dir), str(config), str(backup), str(victim), NIGHT.isoformat()]
    run = subprocess.run(
        [sys.executable, "-c", script, *args, PLANT], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    outcome["log"] = run.stderr
    return outcome


def _state(data_dir: Path, config: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """The box's data and config: bytes, owner and mode of each (the backups and hidden directories left out); a
    directory the service user renamed to `<name>.moved` counted under its own name, the move being that user's."""
    files = [config, *(p for p in data_dir.rglob("*") if p.is_file() and not p.is_symlink())]
    return {
        str(p).replace(".moved", ""): (p.read_bytes(), p.stat().st_uid, p.stat().st_gid, p.stat().st_mode)
        for p in sorted(files)
        if "backups" not in p.parts and not any(part.startswith(".") for part in p.relative_to(p.anchor).parts)
    }


@as_root
@pytest.mark.parametrize("when", ["made", "extract"])
def test_a_link_in_place_of_roots_restore_staging_directory_gets_nothing_written_outside(
    searchable_tmp: Path, when: str
) -> None:
    """Root made `.restore-staging-*` by path, chmod'd and chown'd it by path, opened it following links and wrote
    each member's copy by path: through the link, root's files in the victim directory, which was made the service
    user group's."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    backup = archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=NIGHT)
    (data_dir / "web" / "audit.head").write_bytes(b"after the backup\n")  # a restore would show
    before = _state(data_dir, config)
    victim_dir = victim.stat()
    outcome = _restore_as_root(when, config, data_dir, backup, victim)
    assert outcome["planted"] == 1
    _victim_untouched(victim)
    after_dir = victim.stat()
    assert (after_dir.st_uid, after_dir.st_gid, after_dir.st_mode) == (0, 0, victim_dir.st_mode)
    assert _state(data_dir, config) == before  # nothing restored: the box as it was
    assert "aside" not in outcome, outcome
    link = next(p for p in data_dir.iterdir() if p.name.startswith(_STAGING) and p.is_symlink())
    assert outcome["error"] == (
        f"backup {backup}: the directory {link} made to restore it from was replaced while it ran, got a symbolic "
        f"link to {victim}; nothing written through it, nothing was stopped or changed: a process with the service "
        f"user's rights changes the data directory {data_dir}: find it, then remove {link} and restore again"
    )
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".pre-restore-")]
    moved = [p for p in data_dir.iterdir() if p.name.startswith(_STAGING) and not p.is_symlink()]
    if when == "extract":
        assert moved == []  # root's own, renamed aside while root held it: emptied and removed
    else:
        assert [list(p.iterdir()) for p in moved] == [[]]  # renamed before root could hold it: left empty
