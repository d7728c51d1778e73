"""A backup's `.part` file: locked by the run that writes it until it has its final name; the sweep of killed runs'.

`create` writes a backup as `.<name>.part`, `copy` its copy on the share likewise, and each renames it once
whole. The run holds an flock on its `.part` from the moment it makes it until after the rename, on a descriptor
of its own (the file's own is closed once the file is written), and the kernel lets go of it however the run
ends. The next run of the same gateway id removes every one of its `.part` files whose lock it gets: a killed
run's (kill -9, a power cut) at once, as big as a whole backup on a small disk or a share; one whose lock is
held belongs to a run that still writes, however long it takes (a hung share). As for the staging directories
(create_staging.py), where the lock cannot be taken at all (a file system without locks), and for a `.part` this
user may not open (`sudo edgegw backup now` killed before it handed the file to the service user), the age
decides: `stale_after_s` since it was last written.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from gateway.backup import held_dir
from gateway.backup.manifest import BackupError

log = logging.getLogger("gateway.backup")

_OPEN_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # RDWR: NFS grants flock only so


class Writing:
    """The locks on the `.part` files of one run, each taken as its file is made (`new_file`), all let go when the
    run leaves the `with` of `writing()`: after their rename, which must happen inside it."""

    def __init__(self) -> None:
        self._locks: list[int] = []

    @contextlib.contextmanager
    def new_file(
        self, dir_fd: int, name: str, *, where: Path, owner: os.stat_result | None
    ) -> Iterator[io.BufferedWriter]:
        """held_dir.new_file, the file locked before a byte is written into it."""
        with held_dir.new_file(dir_fd, name, where=where, owner=owner) as f:
            self._lock(f.fileno(), where)
            yield f

    def _lock(self, fd: int, where: Path) -> None:
        lock = os.dup(fd)  # the same open file, so the same lock, on a descriptor that outlives the file's own
        self._locks.append(lock)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another run's sweep opened it between its making and this lock: that sweep removes it now
        except OSError:
            return  # a file system without locks: the sweep there goes by age
        else:
            if os.fstat(lock).st_nlink:
                return
        # Only another run of this gateway id sweeps this directory, and a backup run of one box holds the backup
        # lock throughout: two boxes share this gateway id (a cloned SD card)
        raise BackupError(
            f"backup: {where} was removed as soon as it was made, by another backup run of this gateway id that took "
            "it for a killed run's; no backup written: if two boxes have this gateway id, give each its own, then "
            "back up again"
        )

    def close(self) -> None:
        locks, self._locks = self._locks, []
        for lock in locks:
            os.close(lock)


@contextlib.contextmanager
def writing() -> Iterator[Writing]:
    """The locks of the `.part` files made through it, held until the `with` ends, however it ends."""
    held = Writing()
    try:
        yield held
    finally:
        held.close()


def remove_dead(dir_fd: int, directory: Path, names: Iterable[str], *, stale_after_s: float) -> None:
    """Those `.part` files `names` in `directory` (held open as `dir_fd`) that no run writes removed, each logged:
    nothing else would ever delete them. Anything but a regular file stays."""
    for name in names:
        path = directory / name
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        old = time.time() - st.st_mtime >= stale_after_s
        try:
            fd: int | None = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            continue  # renamed to its final name, or removed, meanwhile
        except OSError:
            fd = None  # not this user's to open (root's): whether its run is alive is not known here
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a run writes it
                except OSError:  # no locks on this file system
                    if not old:
                        continue
                st = os.fstat(fd)
            elif not old:
                continue
            _remove(dir_fd, path, name, st)
        finally:
            if fd is not None:
                os.close(fd)  # after the removal


def _remove(dir_fd: int, path: Path, name: str, st: os.stat_result) -> None:
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return  # the name is another file's since it was looked at: a run that started meanwhile
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("backup: cannot remove %s, left by a backup that did not finish, got %s", path, exc)
        return
    log.warning("backup: removed %s, left by a backup that did not finish (killed, or a power cut)", path)
