"""`edgegw run`'s claim on its data directory: one gateway per buffer, whatever the control socket says."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from gateway.buffer.location import BUFFER_FILE, describe, prepare
from gateway.errors import BufferUnavailable, GatewayError

log = logging.getLogger(__name__)

# Held (flock) by `edgegw run` from before it opens the buffer until it has closed it; holds its pid.
# Its own file, not the directory: backups and restores flock the directory itself (gateway/backup).
LOCK_FILE = "gateway.lock"
LOCK_MODE = 0o640
# The kernel's table of the locks held: asked, it is never the cause of a lock refused
PROC_LOCKS = Path("/proc/locks")


class DataDirInUse(GatewayError):
    """Another gateway runs on this data directory: two would read the same devices and deliver from one buffer."""

    code = "data_dir_in_use"


class DataDirLock:
    """`edgegw run`'s claim on its data directory: an exclusive flock on LOCK_FILE, for the process's life.

    Taken before the buffer is opened, so a second gateway stops before it touches anything, however
    long the first takes to open a backlog; the control socket, bound only after that, cannot tell.
    The kernel lets go of an flock however its holder ends (kill -9 included), so a file left behind
    never blocks a start; the pid in it is only for the message. Tools reading the directory beside a
    running gateway (`edgegw buffer stats`, backups) never take it. The descriptor is not inherited by
    what the gateway runs (Python opens non-inheritable), so a tool's process cannot keep it after it.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def take(cls, data_dir: Path) -> DataDirLock:
        """The lock, or DataDirInUse naming the holder's pid; BufferUnavailable if the directory cannot hold it."""
        path = data_dir / LOCK_FILE
        prepare(data_dir / BUFFER_FILE)  # creates data_dir, or says in a technician's words why it cannot
        try:
            # never through a link: the gateway's user owns the directory and could point gateway.lock at
            # /etc/shadow, which a root `edgegw run` would then truncate and write its pid into
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, LOCK_MODE)
        except OSError as exc:
            raise _lock_unavailable(data_dir, path, exc) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            got = "a hard link to another file" if stat.S_ISREG(st.st_mode) else "not a regular file"
            raise BufferUnavailable(
                f"data directory {data_dir}: cannot lock {path}, got {got}; remove it (the gateway makes its own)",
                path=str(path),
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DataDirInUse(
                f"data directory {data_dir}: another gateway runs on it, got {path} held by {holder}; stop that "
                "gateway first (systemctl stop edgegw), or give this one its own gateway.data_dir",
                path=str(data_dir),
            ) from None
        except OSError as exc:
            os.close(fd)
            raise _lock_unavailable(data_dir, path, exc) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # only the message of a second gateway loses the pid: the lock is held
            log.debug("%s: pid not written: %s", path, exc)
        return cls(fd, path)

    def release(self) -> None:
        """After the buffer is closed. The pid goes first, while still held: a gateway taking the lock next writes its own."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def held(data_dir: Path, proc_locks: Path = PROC_LOCKS) -> bool | None:
    """Whether a gateway holds `data_dir`'s lock, as the kernel's lock table says; None if it cannot be told.

    Read, never tried: trying it, even shared and let go at once, refused a gateway starting in that instant as
    if a second one ran (a probe in a tight loop beside restarts: one start in seven refused). None where there
    is no lock file (no `edgegw run` here yet) or no /proc. /proc/locks lists only the locks of the processes
    its reader's pid namespace sees: ask from the gateway's (the host's, for a gateway run by systemd).
    """
    try:
        st = os.lstat(data_dir / LOCK_FILE)
        table = proc_locks.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):  # a link or other thing in its place: `edgegw run` refuses to lock it
        return None
    return flock_listed(table, st.st_dev, st.st_ino)


def flock_listed(table: str, device: int, inode: int) -> bool | None:
    """Whether `table` (/proc/locks) lists an flock held on the file `device`, `inode` (os.stat's st_dev, st_ino).

    A line reads `1: FLOCK  ADVISORY  WRITE 1234 fe:00:2622613 0 EOF` (major and minor in hex, the inode in
    decimal); a request waiting for a lock reads `1: -> FLOCK …` and holds nothing. None if only a lock on the
    same inode number of another device is listed: on btrfs subvolumes and overlayfs, stat() names another
    device than the table does, so that may be this file or another file system's.
    """
    found: bool | None = False
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        where = fields[5].split(":")
        if len(where) != 3:  # `<none>:0`: a lock on no inode
            continue
        try:
            major, minor, number = int(where[0], 16), int(where[1], 16), int(where[2])
        except ValueError:  # a format this code does not know: not taken for a lock on this file
            continue
        if number != inode:
            continue
        if (major, minor) == (os.major(device), os.minor(device)):
            return True
        found = None
    return found


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a process that has not written its pid yet (`lslocks` names it)"


def _lock_unavailable(data_dir: Path, path: Path, exc: OSError) -> BufferUnavailable:
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
        return BufferUnavailable(
            f"data directory {data_dir}: cannot lock {path}, got a symbolic link; remove it (the gateway makes "
            "its own, and never writes through a link)",
            path=str(path),
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        # -h: a link put in its place is changed itself, never what it points to
        fix = (
            f"give it to the gateway's user: run `sudo chown -h edgegw:edgegw {path}` (with the units' User= and "
            "Group= if they are not edgegw; a root `edgegw run` may have made it)"
        )
    else:
        fix = "the data directory must be on a local file system with flock"
    return BufferUnavailable(
        f"data directory {data_dir}: cannot lock {path}, got {describe(exc, path)}; {fix}", path=str(path)
    )
