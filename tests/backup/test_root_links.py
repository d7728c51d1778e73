"""`sudo edgegw backup now` (root) writes and hands over files in the backup directory, which the service user owns:
a link that user plants there never has root write, truncate or chown anything outside it.

The service user can rename any entry of its own directory and put a symbolic link under its name: root's staging
directory, the `.part` file, the finished backup. Each test runs `archive.create` (or `archive.copy`) as root in a
process of its own, whose audit hook stops it at the exact step where the link does most harm; the link is then
planted by a real process of the service user (setresuid), not by root on its behalf. The "victim" stands for a
directory such as /etc/sudoers.d: root's, which the service user may not write into, holding a root-only file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.backup import archive
from tests.backup.conftest import RELEASE, write_config
from tests.backup.test_restore_config import SERVICE_USER, as_root

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
REPO = Path(__file__).parents[2]
SECRET = b"root:$6$not-for-the-service-user\n"

# Planted as the service user (the interpreter is root's to run: the child drops to the service user itself):
# `what` is "staging" (root's staging directory) or "final" (the finished backup),
# each renamed aside (`.moved`) and replaced by a link into the victim directory.
_PLANT = """
import os, sys
uid, gid, what, out_dir, victim = sys.argv[1:]
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
for name in sorted(os.listdir(out_dir)):
    path = os.path.join(out_dir, name)
    if os.path.islink(path) or name.endswith(".moved"):
        continue
    if what == "staging" and name.startswith(".staging-"):
        os.rename(path, path + ".moved")
        os.symlink(victim, path)
    elif what == "final" and name.startswith("edgegw-") and name.endswith(".tar.gz"):
        os.rename(path, path + ".moved")
        os.symlink(os.path.join(victim, "shadow"), path)
"""

# Root's run, stopped by its audit hook where `when` says to let the service user plant its link:
#   staging-made: the first open after root made its staging directory (before it could hold it open)
#   staging-lock: root opening the staging directory's lock file (the directory made and in use)
#   final-chown: the first chown once the finished backup has its final name (root hands it over)
_ROOT_RUN = """
import json, os, re, subprocess, sys
from datetime import datetime
from pathlib import Path
from gateway.backup import archive

when, uid, gid, data_dir, config, out_dir, victim, now, plant = sys.argv[1:]
state = {"mkdir": False, "busy": False, "planted": 0}

def planted(what):
    state["busy"] = True
    try:
        subprocess.run([sys.executable, "-c", plant, uid, gid, what, out_dir, victim], check=True)
        state["planted"] += 1
    finally:
        state["busy"] = False

def finished():
    return any(re.fullmatch(r"edgegw-.*\\.tar\\.gz", n) and os.path.isfile(os.path.join(out_dir, n))
               for n in os.listdir(out_dir))

def hook(event, args):
    if state["busy"] or state["planted"]:
        return
    if event == "os.mkdir" and ".staging-" in str(args[0]):
        state["mkdir"] = True
    elif when == "staging-made" and event == "open" and state["mkdir"]:
        planted("staging")
    elif when == "staging-lock" and event == "open" and "CREATE-UNDER-WAY" in str(args[0]):
        planted("staging")
    elif when == "final-chown" and event == "os.chown" and finished():
        planted("final")

sys.addaudithook(hook)
try:
    made = archive.create(data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                          out_dir=Path(out_dir), now=datetime.fromisoformat(now))
    print(json.dumps({"planted": state["planted"], "made": str(made)}))
except archive.BackupError as exc:
    print(json.dumps({"planted": state["planted"], "error": str(exc)}))
"""


def _box(top: Path) -> tuple[Path, Path, Path, Path]:
    """(config, data dir, backup directory, victim): the data and the backup directory the service user's."""
    data_dir = top / "data"
    shutil.copytree(RELEASE, data_dir)
    out_dir = data_dir / "backups"
    out_dir.mkdir(mode=0o700)
    for p in [data_dir, *data_dir.rglob("*")]:
        os.chown(p, *SERVICE_USER)
    config = write_config(top / "gateway.toml", data_dir)
    victim = top / "sudoers.d"
    victim.mkdir(mode=0o755)
    (victim / "shadow").write_bytes(SECRET)
    (victim / "shadow").chmod(0o600)
    return config, data_dir, out_dir, victim


def _as_root(when: str, config: Path, data_dir: Path, out_dir: Path, victim: Path) -> dict[str, Any]:
    args = [when, *map(str, SERVICE_USER), str(data_dir), str(config), str(out_dir), str(victim), NIGHT.isoformat()]
    run = subprocess.run(
        [sys.executable, "-c", _ROOT_RUN, *args, _PLANT], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    outcome["log"] = run.stderr
    return outcome


def _link_as_service_user(target: Path, link: Path) -> None:
    plant = (
        "import os, sys; uid, gid, target, link = sys.argv[1:]; os.setresgid(int(gid), int(gid), int(gid)); "
        "os.setgroups([]); os.setresuid(int(uid), int(uid), int(uid)); os.symlink(target, link)"
    )
    subprocess.run([sys.executable, "-c", plant, *map(str, SERVICE_USER), str(target), str(link)], check=True)


def _victim_untouched(victim: Path) -> None:
    """Nothing made in the victim directory, its file neither written nor handed to the service user."""
    assert sorted(p.name for p in victim.iterdir()) == ["shadow"]
    st = (victim / "shadow").lstat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600)
    assert (victim / "shadow").read_bytes() == SECRET


def _stagings(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.iterdir() if p.name.startswith(".staging-"))


@as_root
@pytest.mark.parametrize("when", ["staging-made", "staging-lock"])
def test_a_link_in_place_of_roots_staging_directory_gets_no_file_written_outside(
    searchable_tmp: Path, when: str
) -> None:
    """Root copied each store into `staging / "0"`, … by path: through the link, into the victim directory."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    outcome = _as_root(when, config, data_dir, out_dir, victim)
    assert outcome["planted"] == 1
    _victim_untouched(victim)
    # refused, naming what happened, where, and what a technician does about it
    assert "made" not in outcome, outcome
    link = next(out_dir / n for n in _stagings(out_dir) if (out_dir / n).is_symlink())
    assert outcome["error"] == (
        f"backup: the staging directory {link} was replaced while the backup ran, got a symbolic link to {victim}; "
        "no backup written, nothing written through it: a process with the service user's rights changes the "
        f"backup directory {out_dir}: find it, then remove {link} and back up again"
    )
    moved = out_dir / f"{link.name}.moved"
    if when == "staging-lock":
        # root's own directory, renamed aside by the service user while root held it, is removed all the same
        assert _stagings(out_dir) == [link.name]
    else:
        # renamed before root could hold it open: left as root made it, empty, for the service user to remove
        assert _stagings(out_dir) == [link.name, moved.name]
        assert list(moved.iterdir()) == []
    assert not [p for p in out_dir.iterdir() if p.name.endswith(".part")]
    assert "the next backup removes it" not in outcome["log"]


@as_root
def test_a_link_planted_at_the_part_files_name_is_neither_written_through_nor_handed_over(
    searchable_tmp: Path,
) -> None:
    """The `.part` name is known ahead (the gateway id and the time to the second): root opened it O_TRUNC,
    wrote the backup into the link's target, renamed the link to the final name and chown'd it, target and all."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    final = out_dir / archive.file_name("fixture-gw", NIGHT)
    part = final.with_name(f".{final.name}.part")
    _link_as_service_user(victim / "shadow", part)
    outcome = _as_root("never", config, data_dir, out_dir, victim)
    _victim_untouched(victim)
    assert outcome["made"] == str(final)
    st = final.lstat()
    assert final.is_file() and not final.is_symlink()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (*SERVICE_USER, 0o600)
    assert archive.verify(final).gateway_id == "fixture-gw"
    assert not part.exists() and not part.is_symlink()


@as_root
def test_a_link_swapped_in_for_the_finished_backup_before_roots_chown_is_not_followed(searchable_tmp: Path) -> None:
    """Root chown'd the final file by path after the rename: a link put there meanwhile gave its target (here the
    stand-in for /etc/shadow) to the service user."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    final = out_dir / archive.file_name("fixture-gw", NIGHT)
    outcome = _as_root("final-chown", config, data_dir, out_dir, victim)
    assert outcome["planted"] == 1
    _victim_untouched(victim)
    assert final.is_symlink()  # the service user's link: root did nothing through it
    # the backup root wrote, which the service user renamed aside, was its own already
    moved = final.with_name(final.name + ".moved").lstat()
    assert (moved.st_uid, moved.st_gid) == SERVICE_USER


@as_root
def test_a_link_planted_at_the_part_name_on_the_share_is_neither_written_through_nor_handed_over(
    searchable_tmp: Path,
) -> None:
    """`archive.copy` (root's copy to the share, which the service user may write too) opened its `.part` as
    create did."""
    config, data_dir, out_dir, victim = _box(searchable_tmp)
    made = archive.create(data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=out_dir, now=NIGHT)
    share = searchable_tmp / "share"
    share.mkdir(mode=0o700)
    os.chown(share, *SERVICE_USER)
    part = share / f".{made.name}.part"
    _link_as_service_user(victim / "shadow", part)
    copied = archive.copy(made, share)
    _victim_untouched(victim)
    st = copied.lstat()
    assert copied.is_file() and not copied.is_symlink()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (*SERVICE_USER, 0o600)
    assert copied.read_bytes() == made.read_bytes()
    assert not part.exists() and not part.is_symlink()
