"""Root's snapshot of a store, read by a process confined to the data directory, written confined to the staging one.

SQLite opens a database by its full path, resolving every link on the way (/proc/self/fd/<fd> too: into the name
the directory has at that moment), and makes its -journal beside it by that same name later. Under root, in the
service user's backup directory, a staging directory renamed and replaced by a link meanwhile would have root's
SQLite write through the link; in the service user's data directory, a store replaced by a link after its name was
checked would have root snapshot whatever the link names (a root-only database) into a backup that user owns. So a
child process makes the data directory, reached through the descriptor root holds, its root directory and opens the
store there (its read transaction taken: the -wal and -shm open): a link resolves inside the data directory, among
files the service user may read anyway. Then it makes the staging directory its root directory the same way:
whatever becomes of that directory's name, "/<name>" is inside it.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.backup.manifest import BackupError

PROC_FDS = Path("/proc/self/fd")

# argv: the store's path in the data directory, the descriptors of the data directory and of the staging directory
# (the same numbers, passed on), the copy's name, the pid of the backup.
# Answers one JSON line: {"version": n}, or the error it met ({"sqlite": ..., "code": n} or {"os": ..., "errno": n}).
_CHILD = r"""
import ctypes, json, os, signal, sqlite3, sys, time
from urllib.parse import quote

rel, data, held, name, parent = sys.argv[1:]
# PR_SET_PDEATHSIG: a backup killed while this waits for a writer takes this along, rather than leaving it to
# write into the killed run's staging directory (which the next run's sweep goes by) once the writer is done
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
if os.getppid() != int(parent):
    sys.exit(1)
try:
    os.fchdir(int(data))
    os.chroot(".")
    source = sqlite3.connect(f"file:/{quote(rel)}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
    try:
        while True:
            try:
                source.execute("BEGIN")
                source.execute("SELECT count(*) FROM sqlite_master").fetchone()
                break
            except sqlite3.OperationalError as exc:
                # a writer mid-commit: waited for, as sqlite3's backup() waits for it
                if getattr(exc, "sqlite_errorcode", None) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                if source.in_transaction:
                    source.execute("ROLLBACK")
                time.sleep(0.25)
        os.fchdir(int(held))
        os.chroot(".")
        target = sqlite3.connect("/" + name)
        try:
            source.backup(target)  # one step, in the read transaction taken above: in WAL mode it blocks no writer
            target.execute("PRAGMA journal_mode = DELETE")
            print(json.dumps({"version": int(target.execute("PRAGMA user_version").fetchone()[0])}))
        finally:
            target.close()
    finally:
        source.close()
except sqlite3.Error as exc:
    print(json.dumps({"sqlite": str(exc), "code": getattr(exc, "sqlite_errorcode", None)}))
except OSError as exc:
    print(json.dumps({"os": exc.strerror or str(exc), "errno": exc.errno}))
"""


def held_fd(dst: Path) -> int | None:
    """The descriptor `dst` (/proc/self/fd/<fd>/<name>) reaches its directory through, or None for another path."""
    if dst.parent.parent != PROC_FDS or not dst.parent.name.isdigit():
        return None
    return int(dst.parent.name)


def snapshot(src: Path, dst: Path, *, data_fd: int, rel: Path) -> int:
    """A consistent copy of the live sqlite file `src` (`rel` in the data directory held open as `data_fd`) at `dst`
    (/proc/self/fd/<fd>/<name>); its schema version.

    sqlite3.Error or OSError as the copy met them (a full disk stays recognisable as one), BackupError if the
    copying process ended without saying why."""
    fd = held_fd(dst)
    if fd is None:
        raise ValueError(f"snapshot: {dst} is not /proc/self/fd/<fd>/<name>")
    run = subprocess.run(
        [sys.executable, "-I", "-c", _CHILD, rel.as_posix(), str(data_fd), str(fd), dst.name, str(os.getpid())],
        pass_fds=[data_fd, fd],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        answer = json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        answer = None
    if not isinstance(answer, dict):
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackupError(
            f"backup: cannot snapshot {src}, got its copying process ending with status {run.returncode}: {tail}; "
            "check the file with `edgegw buffer check`"
        )
    if "version" in answer:
        return int(answer["version"])
    if "os" in answer:
        raise OSError(answer.get("errno") or errno.EIO, answer["os"], str(src))
    exc = sqlite3.OperationalError(answer.get("sqlite", "unknown error"))
    if isinstance(code := answer.get("code"), int):
        exc.sqlite_errorcode = code
    raise exc
