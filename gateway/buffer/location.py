"""Whether the data directory and the buffer file in it can be used, in words a technician can act on.

SQLite says "unable to open database file" for a read-only disk, a missing parent, a directory in
the way and a permission problem alike, so these are told apart here, before SQLite is asked.
A full disk is not among them: the buffer opens on a full disk (see space.py).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway.buffer.space import is_disk_full
from gateway.errors import BufferUnavailable
from gateway.own_directory import instead_of_chown, user_name

BUFFER_FILE = "buffer.db"  # the buffer's file in the data directory
_USE_ANOTHER = "set gateway.data_dir to a directory the gateway's user can create or write, e.g. /var/lib/edgegw"
# the package's user and group (the units' User= and Group=)
_SERVICE_USER = "edgegw:edgegw"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    what: str
    got: str
    fix: str


def describe(exc: OSError, at: Path | None = None) -> str:
    """`Read-only file system (EROFS) at /mnt/x`: the OS's words, the code to search for, the path."""
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    place = at or exc.filename
    return f"{exc.strerror or exc} ({code})" + (f" at {place}" if place else "")


def _writable(directory: Path) -> OSError | None:
    """Create and remove an empty file: the one test that reflects mounts, permissions, ACLs and /proc alike."""
    try:
        fd, name = tempfile.mkstemp(prefix=".edgegw-probe-", dir=directory)
    except OSError as exc:
        # a full disk can still hold the buffer (it opens and delivers on one); it is not this problem
        return None if is_disk_full(exc) else exc
    os.close(fd)
    os.unlink(name)
    return None


def _fix_for(exc: OSError, directory: Path, *, made: bool = True) -> str:
    """What to run for `exc` on the data directory `directory`; `made`: it exists (else it could not be made)."""
    if exc.errno == errno.EROFS:
        return "remount it read-write or " + _USE_ANOTHER
    if exc.errno in (errno.EACCES, errno.EPERM):
        instead = instead_of_chown(directory) if made else None
        if instead is not None:
            return instead
        # -h and the real path: a link in it (or in its place) is changed itself, never what it points to; -R:
        # what a root `edgegw run` made in it is root's too. Never the parent's: that is not the gateway's
        run = (
            f"give it to the gateway's user: run `sudo chown -hR {_SERVICE_USER} {os.path.realpath(directory)}`"
            if made
            else f"make it for the gateway's user: run `sudo install -d -o edgegw -g edgegw -m 0700 {directory}`"
        )
        return f"{run} (with the units' User= and Group= if they are not edgegw) or {_USE_ANOTHER}"
    return _USE_ANOTHER


def data_dir_problem(data_dir: Path) -> Problem | None:
    """For `check-config`: whether `data_dir` exists and is writable, or can be created. Leaves nothing behind."""
    existing = data_dir
    while existing != existing.parent:
        try:
            os.lstat(existing)
            break
        except PermissionError:
            return _cannot_reach(data_dir)
        except OSError:  # missing, or a file or a loop of links in the way: said where it would be made
            existing = existing.parent
    try:
        is_dir = stat.S_ISDIR(os.stat(existing).st_mode)
    except PermissionError:  # a link to a place this user may not reach
        return _cannot_reach(data_dir)
    except OSError:
        is_dir = False
    if not is_dir:
        return Problem(
            what="cannot be created" if existing != data_dir else "is not a directory",
            got=f"a file at {existing}",
            fix="move the file away or " + _USE_ANOTHER,
        )
    if existing == data_dir:
        exc = _writable(data_dir)
        if exc is not None:
            return Problem(what="is not writable", got=describe(exc, data_dir), fix=_fix_for(exc, data_dir))
        buffer = data_dir / BUFFER_FILE
        if buffer.is_dir():
            return Problem(
                what="cannot hold the buffer",
                got=f"a directory at {buffer}",
                fix="move it away (the buffer is a file) or " + _USE_ANOTHER,
            )
        return None
    try:
        # what creating data_dir would need: a directory made (and removed) where it would be made
        probe = Path(tempfile.mkdtemp(prefix=".edgegw-probe-", dir=existing))
    except OSError as exc:
        if is_disk_full(exc):
            return None
        return Problem(what="cannot be created", got=describe(exc, data_dir), fix=_fix_for(exc, data_dir, made=False))
    probe.rmdir()
    return None


def first_closed(path: Path) -> Path | None:
    """The first directory on the way to `path` (its real path, from the top) that this user may not enter
    (search, +x); None when every one there is may be entered."""
    for step in reversed(Path(os.path.realpath(path)).parents):
        if not os.path.isdir(step):
            return None  # what is missing or in the way is said by the caller's own checks
        if not os.access(step, os.X_OK, effective_ids=True):
            return step
    return None


def _cannot_reach(data_dir: Path) -> Problem:
    closed = first_closed(data_dir)
    if closed is None:  # refused by something other than a directory's mode (a security module): the OS's words
        return Problem(what="cannot be reached", got=describe(_denied(data_dir)), fix=_USE_ANOTHER)
    got, fix = _unreachable(closed)
    return Problem(what="cannot be reached", got=got, fix=fix)


def _unreachable(closed: Path) -> tuple[str, str]:
    """(got, fix) for a data directory below `closed`, which this user may not enter: neither an `install -d`
    nor a chown of what is below it would help."""
    got = f"{describe(_denied(closed))}, which user {user_name(os.geteuid())} may not enter"
    fix = (
        f"give the gateway's user search permission (+x) on {closed} (e.g. `sudo setfacl -m u:edgegw:x {closed}`, "
        f"with the units' User= if it is not edgegw) or {_USE_ANOTHER}"
    )
    return got, fix


def _denied(path: Path) -> OSError:
    return OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))


def data_dir_error(data_dir: Path) -> str | None:
    """`data_dir_problem` as the one line `check-config` prints and a refused reload logs; None when usable."""
    problem = data_dir_problem(data_dir)
    return None if problem is None else f"gateway.data_dir: {problem.what}, got {problem.got}; {problem.fix}"


def prepare(db_path: Path) -> None:
    """Create the buffer's directory and check that the file can be opened there; BufferUnavailable if not."""
    directory = db_path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise _unavailable(
            db_path,
            f"a file at {exc.filename or directory} where a directory should be",
            "move the file away or " + _USE_ANOTHER,
        ) from exc
    except OSError as exc:
        closed = first_closed(directory) if exc.errno == errno.EACCES else None
        if closed is not None:
            raise _unavailable(db_path, *_unreachable(closed)) from exc
        if not is_disk_full(exc):
            raise _unavailable(db_path, describe(exc), _fix_for(exc, directory, made=False)) from exc
    # first: in a directory this user may not enter (root's 0700), even a stat of the file inside is refused
    refused = _writable(directory)
    if refused is not None:
        raise _unavailable(db_path, describe(refused, directory), _fix_for(refused, directory)) from refused
    if db_path.is_dir():
        raise _unavailable(
            db_path, "a directory at that path", "move it away (the buffer is a file) or " + _USE_ANOTHER
        )
    if db_path.exists() and not os.access(db_path, os.R_OK | os.W_OK):
        denied = _denied(db_path)
        raise _unavailable(db_path, describe(denied), _fix_for(denied, directory))


def _unavailable(db_path: Path, got: str, fix: str) -> BufferUnavailable:
    return BufferUnavailable(f"buffer: cannot open {db_path}, got {got}; {fix}", path=str(db_path))
