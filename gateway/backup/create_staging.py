"""The directory `create` copies the stores into before it writes the tar, and the sweep of those killed creates left.

A create makes `.staging-<gateway id>-<random>` beside the backups (the disk the backup must fit on anyway) and
holds an flock on its `CREATE_LOCK` file from before the first copy until the directory is gone; the kernel lets
go of it however the create ends. The next create of the same gateway id (`backup now`, the nightly run) removes
every one of its own whose lock it gets: a killed create's (kill -9, a power cut), a full copy of the box's data
that nothing else would ever delete. One whose lock is held belongs to a create that runs, however long it takes.
The lock is a file, opened for writing, rather than the directory: an NFS share takes flocks as its own locks only
on such a file, so another box's create holds it on the server too. The gateway id in the name keeps the sweep to
this box's directories all the same, where a share's locks stay on each client (NFS `nolock`, `local_lock=`).

Where the lock cannot be taken at all (a file system without locks), and for one without its lock file (a create
killed before it made it, or one that made its directory a moment ago), the age decides: `stale_after_s` since
it was last written. A release before the lock named the directory `.staging-<random>`: one of those goes only
once that old and if the config copied first into it names this gateway id, since its name says nothing of whose
it is and another box may share the directory.

A box's gateway id changes (`backup restore --take-id`, an edited config): what a killed create left under the id it
had before is no longer this id's, and stayed for good. In a backup directory that is the box's own (`own`: inside
its data directory, on its disk, where no other box writes), every id's goes the same way: by its lock, and an
older release's once that old, whatever id its config names. On a share each id sweeps its own only.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import stat
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from gateway.backup import held_dir
from gateway.backup.manifest import BackupError

log = logging.getLogger("gateway.backup")

PREFIX = ".staging-"
CREATE_LOCK = "CREATE-UNDER-WAY"
_SUFFIX = re.compile(r"[0-9a-f]{8}")  # secrets.token_hex(4): no "-", so no gateway id's tail looks like it
_ANY_ID = re.compile(rf"{re.escape(PREFIX)}.+-[0-9a-f]{{8}}")  # `staging_name` of whatever gateway id
_LEGACY = re.compile(r"[a-z0-9_]{8}")  # tempfile.mkdtemp's name, which the releases before the lock used
_LEGACY_CONFIG = "config"
# a gateway config is a few KiB; more is no config a create copied, and is not read
_CONFIG_MAX_BYTES = 1 << 20
_ATTEMPTS = 100


def staging_name(gateway_id: str, token: str) -> str:
    """The name of a create's staging directory; `token` is 8 hex digits."""
    return f"{PREFIX}{gateway_id}-{token}"


def made_by(name: str, gateway_id: str) -> bool:
    """Whether `name` is that of a staging directory a create of `gateway_id` made (`staging_name`)."""
    head = f"{PREFIX}{gateway_id}-"
    return name.startswith(head) and _SUFFIX.fullmatch(name[len(head) :]) is not None


@contextlib.contextmanager
def held(out_dir: Path, out_fd: int, gateway_id: str) -> Iterator[Path]:
    """A new staging directory in `out_dir` (0700, `out_fd` held open), its lock held until it is removed on leaving.

    Yields /proc/self/fd/<fd>: the directory itself, whatever becomes of its name. Under `sudo edgegw backup now`
    that name is in the service user's directory, which may rename it and put a link in its place (held_dir.py):
    every copy goes through the descriptor. BackupError, naming what took the name, if it is not this directory
    any more on leaving (or right after it was made): nothing was written through it, but someone tampers with the
    backup directory, and a backup taken meanwhile is not kept.
    """
    name, fd, lock = _made(out_dir, out_fd, gateway_id)
    try:
        yield Path(f"/proc/self/fd/{fd}")
    except Exception as exc:
        replaced = _leave(out_dir, out_fd, name, fd, lock)
        if replaced is not None:
            raise replaced from exc  # the bigger news: what the copy met there may be the tampering's doing
        raise
    except BaseException:
        _leave(out_dir, out_fd, name, fd, lock)
        raise
    replaced = _leave(out_dir, out_fd, name, fd, lock)
    if replaced is not None:
        raise replaced


def _replaced(out_dir: Path, name: str, what: str, left: str = "") -> BackupError:
    path = out_dir / name
    return BackupError(
        f"backup: the staging directory {path} was replaced while the backup ran, got {what}; no backup written, "
        f"nothing written through it: a process with the service user's rights changes the backup directory "
        f"{out_dir}: find it, then remove {path} and back up again{left}"
    )


def _made(out_dir: Path, out_fd: int, gateway_id: str) -> tuple[str, int, int | None]:
    """(name, descriptor of the directory, descriptor of its lock file, locked; None without locks)."""
    for _ in range(_ATTEMPTS):
        try:
            name, fd = held_dir.new_dir(out_fd, out_dir, f"{PREFIX}{gateway_id}-")
        except held_dir.Replaced as exc:
            raise _replaced(out_dir, exc.path.name, exc.what) from None
        try:
            lock = os.open(
                CREATE_LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd
            )
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=out_fd)
            os.close(fd)
            raise
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)  # a sweep opened it between our open and our lock: it removes the directory
            os.close(fd)
            continue
        except OSError:  # a file system without locks: the sweep there goes by age
            os.close(lock)
            return name, fd, None
        if os.fstat(lock).st_nlink == 0:
            os.close(lock)  # a sweep held it first and removed it meanwhile
            os.close(fd)
            continue
        return name, fd, lock
    raise OSError(f"cannot make a staging directory in {out_dir}: {_ATTEMPTS} tries were each swept at once")


def _leave(out_dir: Path, out_fd: int, name: str, fd: int, lock: int | None) -> BackupError | None:
    """The staging directory emptied through `fd` and removed under whatever name it has in `out_dir` now, its
    descriptors closed; the error to raise if `name` is no longer it."""
    try:
        replaced, left_at = held_dir.empty_and_remove(
            out_fd,
            out_dir,
            name,
            fd,
            noun="the staging directory ",
            # root's (`sudo edgegw backup now`): the nightly run names it with the command that removes it
            fix="the next backup removes it, or names the command that does",
        )
    finally:
        if lock is not None:
            os.close(lock)  # after the removal: until then no sweep takes the directory for a killed create's
    if replaced is None:
        return None
    left = "" if left_at is None else f"; the emptied staging directory is left at {left_at}: remove it as root"
    return _replaced(out_dir, name, replaced, left)


def remove_dead(out_dir: Path, out_fd: int, gateway_id: str, *, stale_after_s: float, own: bool = False) -> None:
    """`gateway_id`'s staging directories in `out_dir` (held open as `out_fd`) that no create runs in removed, each
    logged with its size; every gateway id's if `out_dir` is the box's `own`. Each is reached through `out_fd`, and
    removed by shutil.rmtree, which follows no link."""
    try:
        entries = [e for e in os.scandir(out_fd) if e.name.startswith(PREFIX)]
    except OSError:
        return
    for entry in entries:
        path = os.path.join(out_dir, entry.name)
        legacy = _LEGACY.fullmatch(entry.name[len(PREFIX) :]) is not None
        if not (legacy or made_by(entry.name, gateway_id) or (own and _ANY_ID.fullmatch(entry.name))):
            continue  # another box's, or no create's
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        old = time.time() - st.st_mtime >= stale_after_s
        if legacy:
            if old and (own or _legacy_gateway_id(out_fd, entry.name) == gateway_id):
                _remove(out_fd, path, entry.name, st)
            continue
        try:
            fd: int | None = os.open(os.path.join(entry.name, CREATE_LOCK), os.O_RDWR | os.O_NOFOLLOW, dir_fd=out_fd)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            # not ours to open (a `sudo edgegw backup now`'s, root's): whether its create runs is not known here
            if old:
                log.warning(
                    "backup: cannot tell whether %s (last written %s) is a running backup's, got %s; if no backup "
                    "runs as root now, it was left by one that did not finish: as root: sudo rm -rf %s",
                    path,
                    datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
                    exc.strerror or exc,
                    path,
                )
            continue
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a create runs in it
                except OSError:  # no locks on this file system
                    if not old:
                        continue
            elif not old:
                continue
            _remove(out_fd, path, entry.name, st)
        finally:
            if fd is not None:
                os.close(fd)  # after the removal: a create that opened the lock meanwhile sees it unlinked


def _legacy_gateway_id(out_fd: int, directory: str) -> str | None:
    """The gateway id in the config an older create copied first into `directory`, or None if it is not there or
    names none. Nothing in it is trusted beyond that: the directory may be another box's on a share."""
    try:
        fd = os.open(
            os.path.join(directory, _LEGACY_CONFIG), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=out_fd
        )
    except OSError:
        return None
    try:
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = f.read(_CONFIG_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > _CONFIG_MAX_BYTES:
        return None
    try:
        doc = tomllib.loads(data.decode("utf-8").removeprefix("\ufeff"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    gateway = doc.get("gateway")
    found = gateway.get("id") if isinstance(gateway, dict) else None
    return found if isinstance(found, str) else None


def _remove(out_fd: int, path: str, name: str, st: os.stat_result) -> None:
    size = _size(path)
    try:
        shutil.rmtree(name, dir_fd=out_fd)
    except FileNotFoundError:
        return  # another run removed it first
    except OSError as exc:
        log.warning(
            "backup: cannot remove %s (%d bytes), left by a backup that did not finish, got %s; delete it by hand",
            path,
            size,
            exc.strerror or exc,
        )
        return
    log.info(
        "backup: removed %s (%d bytes), left by a backup that did not finish (killed, or a power cut); last written %s",
        path,
        size,
        datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
    )


def _size(path: str) -> int:
    """The bytes the files under `path` take, as far as they can be read."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
