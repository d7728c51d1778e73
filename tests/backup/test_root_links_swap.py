"""`sudo edgegw backup restore FILE` (root) renames the box's files aside into a `.pre-restore-*` directory and the
backup's into their place, all inside the data directory, which the service user owns: a link that user puts in
place of a sub-directory (`web`), of the aside directory or of one inside it never has root move, write or chown
anything outside the data directory; the restore is refused and the box's data stays as it was.

As in test_root_links.py: `archive.restore` runs as root in a process of its own, stopped by an audit hook at the
exact step where the link does most harm; the link is planted by a real process of the service user (setresuid).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.backup import archive
from tests.backup.test_restore_config import as_root
from tests.backup.test_root_links import NIGHT, _box, _victim_untouched
from tests.backup.test_root_links_restore import _restore_as_root, _state

# Root's restore, stopped where `where` says to let the service user replace a directory by a link to the victim:
#   web: data/web, once the box's files in it went aside and before the backup's go in
#   aside: the .pre-restore-* directory, at the first open after root made it (before it could hold it open)
#   aside-web: .pre-restore-*/data/web, made and handed over, at the first rename (the box's files go into it)
_ROOT_SWAP = """
import glob, json, os, subprocess, sys
from datetime import datetime
from pathlib import Path
from gateway.backup import archive

where, uid, gid, data_dir, config, backup, victim, now, plant = sys.argv[1:]
state = {"mkdir": False, "busy": False, "planted": 0}

def planted(prefix, parent):
    state["busy"] = True
    try:
        subprocess.run([sys.executable, "-c", plant, uid, gid, prefix, parent, victim], check=True)
        state["planted"] += 1
    finally:
        state["busy"] = False

def hook(event, args):
    if state["busy"] or state["planted"]:
        return
    web = os.path.join(data_dir, "web")
    if where == "web" and event == "os.rename" and os.path.isdir(web) and not os.listdir(web):
        planted("web", data_dir)
    elif event == "os.mkdir" and ".pre-restore-" in str(args[0]):
        state["mkdir"] = True
    elif where == "aside" and event == "open" and state["mkdir"]:
        planted(".pre-restore-", data_dir)
    elif where == "aside-web" and event == "os.rename":
        planted("web", glob.glob(os.path.join(data_dir, ".pre-restore-*", "data"))[0])

sys.addaudithook(hook)
try:
    aside = archive.restore(Path(backup), data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                            now=datetime.fromisoformat(now))
    print(json.dumps({"planted": state["planted"], "aside": str(aside)}))
except archive.BackupError as exc:
    print(json.dumps({"planted": state["planted"], "error": str(exc)}))
"""


@as_root
@pytest.mark.parametrize("where", ["web", "aside", "aside-web"])
def test_a_link_in_place_of_a_directory_the_swap_renames_into_moves_nothing_outside(
    searchable_tmp: Path, where: str
) -> None:
    """Root renamed `data/web/*` and `.pre-restore-*/data/web/*` by path, made, copied into and chown'd the aside
    directory by path: through the link, the box's files went into the victim directory (or root's files were made
    there, handed to the service user), and the restore said it was done."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    backup = archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=NIGHT)
    (data_dir / "web" / "audit.head").write_bytes(b"after the backup\n")  # a restore would show
    before = _state(data_dir, config)
    victim_dir = victim.stat()
    outcome = _restore_as_root(where, config, data_dir, backup, victim, script=_ROOT_SWAP)
    assert outcome["planted"] == 1
    _victim_untouched(victim)
    after_dir = victim.stat()
    assert (after_dir.st_uid, after_dir.st_gid, after_dir.st_mode) == (0, 0, victim_dir.st_mode)
    assert _state(data_dir, config) == before  # nothing restored: the box as it was
    assert "aside" not in outcome, outcome
    aside = next((p for p in data_dir.glob(".pre-restore-*") if not p.name.endswith(".moved")), None)
    if where == "web":
        link, moved = data_dir / "web", f" (that directory is now {data_dir / 'web.moved'})"
    elif where == "aside":
        assert aside is not None
        link, moved = aside, ""
    else:
        assert aside is not None
        link, moved = aside / "data" / "web", f" (that directory is now {aside / 'data' / 'web.moved'})"
    assert link.is_symlink()
    assert outcome["error"] == (
        f"backup restore: the directory {link} was replaced while the restore ran, got a symbolic link to "
        f"{victim}; nothing restored, nothing moved or written through it: every file is back where it was{moved} "
        f"and {config} is unchanged: a process with the service user's rights changes the data directory "
        f"{data_dir}: find it, put {link} right and restore again"
    )
