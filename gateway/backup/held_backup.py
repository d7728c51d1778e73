"""A finished backup reached through the directory its run holds open: verify and copy read it by its name there, no
link followed, only while it is the file the run wrote; the rotation lists and deletes in that same directory.

`sudo edgegw backup now` runs as root from `create` to the copy on the share, in the service user's backup
directory. Between two steps that user may put a link (to /etc/shadow) under the backup's name, or rename the
directory and put a link to another one in its place: opened by path, root would check, copy onto the share and
rotate through it. The directory here is the one `held_dir.private_dirs` opened, whatever its name has become; the
backup is opened in it O_NOFOLLOW and compared with the file the run wrote (device and inode): anything else there
fails the run, named (`open`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gateway.backup import held_dir
from gateway.backup.manifest import BackupError

# O_NONBLOCK: a FIFO put at the name must not hang the run (which holds the backup lock) before it is told from a file
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldBackup:
    """The backup `path` names, in the directory held open as `dir_fd` (by whoever made this: not closed here)."""

    path: Path  # where the run put it, for messages
    dir_fd: int
    written: tuple[int, int]  # (st_dev, st_ino) of the file the run wrote (or found, `at`)
    size: int
    named: bool = False  # a file the caller named (`at`, archive.py), not one a run wrote: said so when refused

    @property
    def name(self) -> str:
        return self.path.name

    def open(self) -> BinaryIO:
        """The backup opened for reading by its name in the held directory; BackupError, naming what has the name
        now, if that is not the file the run wrote (a link, nothing, another file)."""
        try:
            with held_dir.named(self.path):
                fd = os.open(self.name, _READ_FLAGS, dir_fd=self.dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR):
                raise
            raise _replaced(self.path, _what(self.dir_fd, self.name), named=self.named) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _replaced(self.path, _what(self.dir_fd, self.name), named=self.named)
            if (st.st_dev, st.st_ino) != self.written:
                what = "another file than the one found there a moment before" if self.named else "another file"
                raise _replaced(self.path, what, named=self.named)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise


@contextlib.contextmanager
def at(path: Path) -> Iterator[HeldBackup]:
    """The backup file `path` (one a caller names, not one this run wrote), its directory reached as `private_dirs`
    reaches it, nothing made: a link on the way or at its name is refused as there. FileNotFoundError if missing."""
    parent = held_dir.private_dirs(path.parent, make=False)
    try:
        held, st = _in(path, parent.fd)
        if not stat.S_ISREG(st.st_mode):
            raise _replaced(path, _what(parent.fd, path.name), named=True)
        yield held
    finally:
        parent.close()


@contextlib.contextmanager
def named(path: Path) -> Iterator[HeldBackup]:
    """A backup file the caller named (`backup verify FILE`, a restore's stage), read as a run reads its own: by its
    name in its directory, no link followed there, a FIFO refused without waiting for a writer (`open`). Under root
    the name is often in the service user's backup directory, where that user may put a link to /etc/shadow or a
    FIFO (which held the backup lock for good). The directory is opened O_PATH as the path leads: one its user may
    search but not list (a 0711 share) is read from as before, unlike `at`."""
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield _in(path, fd)[0]
    finally:
        os.close(fd)


def _in(path: Path, dir_fd: int) -> tuple[HeldBackup, os.stat_result]:
    """The file `path` names in the directory open as `dir_fd`, as found now (its link, if one, not followed)."""
    with held_dir.named(path):
        st = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
    return HeldBackup(path=path, dir_fd=dir_fd, written=(st.st_dev, st.st_ino), size=st.st_size, named=True), st


def _replaced(path: Path, what: str, *, named: bool = False) -> BackupError:
    if named:  # no run wrote it: the caller may have put the link there, or someone who may write its directory
        return BackupError(
            f"backup: {path} must be a backup file, got {what}; nothing read through it: name the backup file itself, "
            f"not a link to it; if you did not put that there, a process that may write {path.parent} did: find it, "
            f"then remove {path}",
            path=str(path),
        )
    return BackupError(
        f"backup: {path} was replaced after the backup wrote it, got {what}; nothing read through it: a process with "
        f"the service user's rights changes the backup directory {path.parent}: find it, then remove {path} and back "
        "up again",
        path=str(path),
    )


def _what(dir_fd: int, name: str) -> str:
    """`held_dir.kind`'s words for what has `name`, a FIFO or a device told from a file."""
    what = held_dir.kind(dir_fd, name)
    return "no regular file" if what == "a file" else what
