"""Root's check of a backup's sqlite members (`quick_check`) through /proc/self/fd: where /proc hides other users'
processes, and with a link the service user plants in place of the directory it checks in.

`sudo edgegw backup verify FILE` (and every restore) extracts the members into a `.verify-*` directory it holds open
in the service user's data directory and has SQLite open each as /proc/self/fd/<fd>/<name>. SQLite turns that into
the directory's name of the moment and opens by that name; a member with a WAL header (a backup from the share
trusts nothing: here one the service user crafted) has it look for and make its -wal and -shm by that name too.
Swapped for a link once SQLite has the name (planted by a real process of the service user as the check of the first
sqlite member starts; the "victim" stands for /etc/cron.d), SQLite only looks up names through it: it finds that its
name no longer leads to the file it opened and stops there, and the run fails naming the link. This held before
these tests were written: they keep it so.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
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

import pytest

from gateway.backup import archive
from tests.backup.conftest import RELEASE, write_config
from tests.backup.test_restore_config import SERVICE_USER, as_root

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)
REPO = Path(__file__).parents[2]

_PLANT = """
import os, sys
uid, gid, data_dir, victim = sys.argv[1:]
os.setresgid(int(gid), int(gid), int(gid))
os.setgroups([])
os.setresuid(int(uid), int(uid), int(uid))
for name in os.listdir(data_dir):
    path = os.path.join(data_dir, name)
    if name.startswith(".verify-") and not os.path.islink(path):
        os.rename(path, path + ".moved")
        os.symlink(victim, path)
"""

# root's verify, the link planted as the check of the first sqlite member starts: once SQLite has opened it
_VERIFY = """
import json, subprocess, sys
from pathlib import Path
from gateway.backup import archive

uid, gid, backup, data_dir, victim, plant = sys.argv[1:]
state = {"named": False, "planted": 0, "busy": False}

def planted():
    state["busy"] = True
    try:
        subprocess.run([sys.executable, "-c", plant, uid, gid, data_dir, victim], check=True)
        state["planted"] += 1
    finally:
        state["busy"] = False

def hook(event, args):
    if state["busy"] or state["planted"]:
        return
    if event == "sqlite3.connect" and "/proc/self/fd/" in str(args[0]):
        state["named"] = True
    elif event == "sqlite3.connect/handle" and state["named"]:
        planted()

sys.addaudithook(hook)
try:
    archive.verify(Path(backup), data_dir=Path(data_dir))
    print(json.dumps({"planted": state["planted"], "ok": True}))
except archive.BackupError as exc:
    print(json.dumps({"planted": state["planted"], "error": str(exc)}))
"""


def _with_a_wal_header(backup: Path, out: Path) -> Path:
    """`backup` rewritten with its buffer.db in WAL mode, the manifest's size and checksum to match: a file the
    service user may craft, which verify must check all the same."""
    with tarfile.open(backup) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    scratch = out.parent / "wal.db"
    scratch.write_bytes(members["data/buffer.db"])
    db = sqlite3.connect(scratch)
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    members["data/buffer.db"] = scratch.read_bytes()
    scratch.unlink()
    assert members["data/buffer.db"][18:20] == b"\x02\x02"
    manifest = archive.Manifest.from_json("test", members.pop(archive.MANIFEST))
    manifest = dataclasses.replace(
        manifest,
        members=tuple(
            dataclasses.replace(m, size=len(members[m.name]), sha256=hashlib.sha256(members[m.name]).hexdigest())
            for m in manifest.members
        ),
    )
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in [(archive.MANIFEST, manifest.to_json()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    out.write_bytes(gzip.compress(raw.getvalue()))
    return out


def _box(top: Path) -> tuple[Path, Path, Path]:
    """(data dir, crafted backup, victim): the data directory the service user's, the victim root's, empty."""
    data_dir = top / "data"
    shutil.copytree(RELEASE, data_dir)
    config = write_config(top / "gateway.toml", data_dir)
    made = archive.create(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=top / "backups", now=NIGHT
    )
    crafted = _with_a_wal_header(made, top / "crafted.tar.gz")
    for p in [data_dir, *data_dir.rglob("*")]:
        os.chown(p, *SERVICE_USER)
    victim = top / "cron.d"
    victim.mkdir(mode=0o755)
    return data_dir, crafted, victim


def _verify_as_root(backup: Path, data_dir: Path, victim: Path) -> dict[str, Any]:
    args = [*map(str, SERVICE_USER), str(backup), str(data_dir), str(victim), _PLANT]
    run = subprocess.run([sys.executable, "-c", _VERIFY, *args], cwd=REPO, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    outcome: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return outcome


@as_root
def test_roots_check_of_a_wal_member_makes_nothing_through_a_link_in_place_of_its_directory(
    searchable_tmp: Path,
) -> None:
    data_dir, crafted, victim = _box(searchable_tmp)
    assert archive.verify(crafted).gateway_id == "fixture-gw"  # a backup verify passes, WAL header and all
    outcome = _verify_as_root(crafted, data_dir, victim)
    assert outcome["planted"] == 1
    assert sorted(p.name for p in victim.iterdir()) == []  # no -wal, no -shm made through the link
    link = next(p for p in data_dir.iterdir() if p.name.startswith(".verify-") and p.is_symlink())
    assert outcome.get("error") == (
        f"backup {crafted}: the directory {link} made to check it was replaced while it ran, got a symbolic link to "
        f"{victim}; nothing written through it, the file is not verified: a process with the service user's rights "
        f"changes the data directory {data_dir}: find it, then remove {link} and verify again"
    )


def _unshare_works() -> bool:
    try:
        run = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    except OSError:
        return False
    return run.returncode == 0


@as_root
@pytest.mark.skipif(not _unshare_works(), reason="needs mount and pid namespaces (unshare) to mount /proc hidepid")
@pytest.mark.parametrize("who", ["root", "service"])
def test_verify_into_the_data_directory_works_where_proc_hides_other_users_processes(
    searchable_tmp: Path, who: str
) -> None:
    """`ProtectProc=invisible` (or /proc mounted hidepid=invisible): a process still sees its own /proc/self/fd."""
    data_dir, crafted, _ = _box(searchable_tmp)
    os.chown(crafted, *SERVICE_USER)
    drop = "os.setresgid(gid, gid, gid); os.setgroups([]); os.setresuid(uid, uid, uid); " if who == "service" else ""
    script = (
        "import os, sys; from pathlib import Path; from gateway.backup import archive; "
        "uid, gid = map(int, sys.argv[3:5]); "
        f"{drop}"
        "print(archive.verify(Path(sys.argv[1]), data_dir=Path(sys.argv[2])).gateway_id)"
    )
    inner = f'mount -o remount,hidepid=invisible /proc && exec {sys.executable} -c "$0" "$@"'
    run = subprocess.run(
        [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "sh",
            "-c",
            inner,
            script,
            str(crafted),
            str(data_dir),
            *map(str, SERVICE_USER),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (run.returncode, run.stdout.strip()) == (0, "fixture-gw"), run.stderr
