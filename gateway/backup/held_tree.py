"""Directories under one held directory (the data directory, a restore's staging directory) reached only through
descriptors, each opened O_NOFOLLOW from its parent's: the restore's swap renames, makes and removes through them.

`sudo edgegw backup restore FILE` works as root in the data directory, which the service user owns: that user may
rename any directory there (`web`, the `.pre-restore-*` one root made and handed over, one inside it) and put a
symbolic link under its name. Root renaming by path would then move the box's files into, or the backup's files
out to, whatever the link names. Here each directory is opened once, a link met on the way is refused
(`held_dir.Replaced`), and `check` tells whether every directory held still has its name: one swapped for a link
meanwhile got nothing through it, but the run must not carry on as if its files were in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from gateway.backup import held_dir

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Parts = tuple[str, ...]


class HeldTree:
    """`top` held open as `top_fd` (this object's to close), and the directories under it opened so far."""

    def __init__(self, top: Path, top_fd: int) -> None:
        self.top = top
        self._fds: dict[Parts, int] = {(): top_fd}
        self.made: list[Parts] = []  # directories made under `top`, parents first; the last may not exist

    def parts(self, path: Path) -> Parts:
        """`path` (under `top`) as the names leading to it."""
        return path.relative_to(self.top).parts

    def path(self, parts: Parts) -> Path:
        return self.top.joinpath(*parts)

    def dir(self, parts: Parts, *, make: bool = False, owner: os.stat_result | None = None) -> int:
        """The directory `parts` held open; made 0700 (and under root handed to `owner`) with its missing parents
        if `make`. held_dir.Replaced if a link, or anything but a directory, has a name on the way."""
        if parts in self._fds:
            return self._fds[parts]
        parent = self.dir(parts[:-1], make=make, owner=owner)
        name = parts[-1]
        if make and not there(parent, name):
            self.made.append(parts)  # recorded first: an exception can land as mkdir returns
            try:
                with held_dir.named(self.path(parts)):
                    os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                self.made.pop()  # made meanwhile by someone else: opened below like any other
            else:
                return self.adopt(parts, owner=owner)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise held_dir.Replaced(self.path(parts), held_dir.kind(parent, name)) from None
        self._fds[parts] = fd
        return fd

    def adopt(self, parts: Parts, *, owner: os.stat_result | None) -> int:
        """The directory this run just made as `parts` held open, 0700, handed to `owner`; held_dir.Replaced if
        something else took the name before it was open."""
        parent, name = self._fds[parts[:-1]], parts[-1]
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                raise
            raise held_dir.Replaced(self.path(parts), held_dir.kind(parent, name)) from None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            os.close(fd)
            raise held_dir.Replaced(self.path(parts), f"another directory (uid {st.st_uid})")
        self._fds[parts] = fd
        os.fchmod(fd, 0o700)  # mkdir's mode is narrowed by the umask
        if owner is not None:
            held_dir.give(owner, fd, self.path(parts))
        return fd

    def check(self) -> None:
        """held_dir.Replaced, with where the directory is now, for the first held directory whose name is not it."""
        for parts in sorted(self._fds, key=len):
            if not parts:
                continue
            fd = self._fds[parts]
            if (what := held_dir.still_named(self._fds[parts[:-1]], parts[-1], fd)) is not None:
                raise held_dir.Replaced(self.path(parts), what, held_dir.where_now(fd))

    def holds(self, parts: Parts) -> bool:
        """Whether `parts` is held and still has its name (nothing is removed through a name that is not it)."""
        fd = self._fds.get(parts)
        return fd is not None and held_dir.still_named(self._fds[parts[:-1]], parts[-1], fd) is None

    def remove_made(self) -> None:
        """The directories this run made removed, newest first, where still empty and still named so."""
        for parts in reversed(self.made):
            parent = self._fds.get(parts[:-1])
            if parent is None or (parts in self._fds and not self.holds(parts)):
                continue
            with contextlib.suppress(OSError):  # one that stays is an empty directory, harmless
                os.rmdir(parts[-1], dir_fd=parent)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def there(dir_fd: int, name: str) -> bool:
    """Whether `dir_fd` has an entry `name` (a link counts, and is not followed)."""
    try:
        os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return False
    return True
