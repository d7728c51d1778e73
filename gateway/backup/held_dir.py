"""Files a backup makes in a directory the service user may write (the backup directory, a share), made through
that directory held open: never through a path the service user may meanwhile turn into a link.

`sudo edgegw backup now` runs as root in the service user's backup directory. That user may rename any entry there
and put a symbolic link under its name; root writing, truncating or chowning by path would then do it to whatever
the link names (a file in /etc/sudoers.d, /etc/shadow). So the directory is opened once (`private_dirs`), each file
is made relative to it with O_EXCL|O_NOFOLLOW (`new_file`), and handed to the service user on its descriptor
(`give`), before it has its final name; a link found at a name root makes is removed, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gateway.backup.manifest import BackupError

log = logging.getLogger("gateway.backup")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# a step of `private_dirs`: O_PATH needs no read right on a parent, only the search right a path needs anyway
_WALK_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# as the kernel allows (MAXSYMLINKS)
_MAX_LINKS = 40


@dataclass(slots=True, kw_only=True)
class Dirs:
    """A directory held open, and those `private_dirs` made on the way to it (top first), each held open too."""

    path: Path
    fd: int
    made: list[tuple[Path, int]] = field(default_factory=list)

    def give(self, owner: os.stat_result, *, itself: bool) -> None:
        """The directories made (and `itself`) handed to `owner`, on their descriptors."""
        for path, fd in self.made:
            give(owner, fd, path)
        if itself and all(fd != self.fd for _, fd in self.made):
            give(owner, self.fd, self.path)

    def close(self) -> None:
        for _, fd in self.made:
            os.close(fd)
        os.close(self.fd)


def private_dirs(path: Path, *, make: bool = True) -> Dirs:
    """`path` held open, it and its missing parents made 0700 whatever the umask, each through its parent's
    descriptor. A directory that exists keeps its mode: a share's mount point is its admin's to set. Without `make`,
    nothing is made: FileNotFoundError for a directory missing on the way (a listing, a rotation).

    Walked from / one name at a time, none opened through a link: a link is followed only where no one but root
    (or this user) may change the directory that holds it (the admin's own, /srv/backups -> /mnt/disk). Under root
    a link in the service user's directory (`<data_dir>/backups` replaced by one) would have root write the backup
    into, and hand to that user, whatever it names: BackupError names it, nothing made or written through it."""
    todo = list(reversed(path.absolute().parts[1:]))  # the next name last
    fd = os.open("/", _WALK_FLAGS)
    here = Path("/")
    made: list[tuple[Path, int]] = []
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == ".":
                continue
            step = here.parent if name == ".." else here / name
            child, new = _step(fd, here, name, path, make=make)
            if isinstance(child, str):  # a link this user may follow: its target walked instead
                links += 1
                if links > _MAX_LINKS:
                    raise BackupError(
                        f"backup: {path} cannot be reached, got over {_MAX_LINKS} symbolic links on the way"
                    )
                target = Path(child)
                if target.is_absolute():
                    top = os.open("/", _WALK_FLAGS)
                    os.close(fd)
                    fd, here = top, Path("/")
                todo.extend(reversed(target.parts[1:] if target.is_absolute() else target.parts))
                continue
            os.close(fd)
            fd, here = child, step
            if new:
                made_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                made.append((step, made_fd))
                os.fchmod(made_fd, 0o700)  # mkdir's mode is narrowed by the umask
        held = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    except BaseException:
        for _, made_fd in made:
            os.close(made_fd)
        raise
    finally:
        os.close(fd)
    return Dirs(path=path, fd=held, made=made)


def _step(fd: int, here: Path, name: str, path: Path, *, make: bool) -> tuple[int | str, bool]:
    """`name` in the directory `here` (held as `fd`) opened O_PATH through no link, made 0700 if missing: (its
    descriptor, whether made here). For a link this user may follow, (its target, False); BackupError for one
    another user may have put there, or for anything but a directory."""
    new = False
    for _ in range(2):
        try:
            with named(here / name):
                return os.open(name, _WALK_FLAGS, dir_fd=fd), new
        except FileNotFoundError:
            if name == ".." or not make:
                raise
            try:
                with named(here / name):
                    os.mkdir(name, 0o700, dir_fd=fd)
                new = True
            except FileExistsError:
                pass  # made meanwhile, by another run or as a link: opened (or looked at) again
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            break
    try:
        st = os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, dir_fd=fd)
        who = who_may_change(os.fstat(fd), st)
        if who is None:
            return target, False
        raise BackupError(
            f"backup: {here / name} must be a directory, got a symbolic link to {target} in {here}, which {who} may "
            "change (not only root or this user); nothing was made or written through it: if the link is yours, name "
            f"the directory it leads to in the config instead of {path}; if not, a process with those rights tampers "
            f"with {here}: find it, remove the link and back up again"
        )
    raise BackupError(
        f"backup: {here / name} must be a directory, got {kind(fd, name)} there; nothing was written through it: "
        f"remove {here / name} and back up again"
    )


def who_may_change(parent: os.stat_result, link: os.stat_result) -> str | None:
    """Who, beside root and this user, may replace a link in the directory `parent` describes; None for nobody."""
    ours = (0, os.geteuid())
    if parent.st_uid not in ours:
        return f"uid {parent.st_uid}"
    if parent.st_mode & 0o022 and not (parent.st_mode & stat.S_ISVTX and link.st_uid in ours):
        return f"its group or others (mode {stat.S_IMODE(parent.st_mode):04o})"
    return None


@contextlib.contextmanager
def new_file(dir_fd: int, name: str, *, where: Path, owner: os.stat_result | None) -> Iterator[io.BufferedWriter]:
    """`name` made anew in `dir_fd`, 0600 before a byte is written, fsync'd and (under root) handed to `owner` on
    leaving. Whatever had the name (a killed run's file of that same second, a link someone planted) is removed
    first: unlinked, never opened."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with named(where):
        try:
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            os.unlink(name, dir_fd=dir_fd)
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)  # taken again at once: an error, not a loop
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is narrowed by the umask
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
        if owner is not None:
            give(owner, f.fileno(), where)


@contextlib.contextmanager
def named(path: Path) -> Iterator[None]:
    """An OSError met through a descriptor names `path`, not the bare name: messages (a read-only mount's drop-in,
    schedule.py) quote it."""
    try:
        yield
    except OSError as exc:
        exc.filename = str(path)
        raise


def give(owner: os.stat_result, fd: int, where: Path) -> None:
    """The file or directory open as `fd` handed to `owner` when root made it (`sudo edgegw backup now`): the
    nightly run, as the service user, must rotate it."""
    if os.geteuid() != 0:
        return
    try:
        os.fchown(fd, owner.st_uid, owner.st_gid)
    except PermissionError as exc:  # a share that maps root (NFS root_squash, SMB): its owner is the server's
        log.warning(
            "backup: cannot hand %s to uid %d, got %s; the nightly run may not rotate it", where, owner.st_uid, exc
        )


def discard(dir_fd: int, name: str, where: Path) -> None:
    """`name` in `dir_fd` removed if there, a failure logged: a partial file nothing else would ever delete."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("backup: cannot remove the partial file %s, got %s; delete it by hand", where, exc.strerror or exc)


def kind(dir_fd: int, name: str) -> str:
    """What `name` in `dir_fd` is, for a message: a link with its target, a file, another user's directory."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return "nothing"
    if stat.S_ISLNK(st.st_mode):
        try:
            return f"a symbolic link to {os.readlink(name, dir_fd=dir_fd)}"
        except OSError:
            return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return f"another directory (uid {st.st_uid})"
    return "a file"


class Replaced(Exception):
    """The directory a run made or held at `path` is not what has that name now (`what`: `kind`'s words); `now_at`,
    where that directory is now, if the run held it."""

    def __init__(self, path: Path, what: str, now_at: str | None = None) -> None:
        super().__init__(f"{path}: {what}")
        self.path = path
        self.what = what
        self.now_at = now_at


def new_dir(parent_fd: int, parent: Path, prefix: str) -> tuple[str, int]:
    """A new directory `prefix<8 hex digits>` in `parent` (held open as `parent_fd`), 0700 whatever the umask:
    (its name, it held open). Replaced if something else took the name before it was open: a link there is
    never followed."""
    for _ in range(100):
        name = f"{prefix}{secrets.token_hex(4)}"
        try:
            with named(parent / name):
                os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            continue
        try:
            fd = os.open(name, _DIR_FLAGS | os.O_CLOEXEC, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                raise
            raise Replaced(parent / name, kind(parent_fd, name)) from None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            os.close(fd)
            raise Replaced(parent / name, f"another directory (uid {st.st_uid})")
        os.fchmod(fd, 0o700)  # mkdir's mode is narrowed by the umask
        return name, fd
    raise FileExistsError(errno.EEXIST, "100 names taken in a row", str(parent / prefix))


def still_named(parent_fd: int, name: str, fd: int) -> str | None:
    """None if `name` in `parent_fd` is the directory open as `fd`, else what has the name now (`kind`)."""
    try:
        if os.path.samestat(os.lstat(name, dir_fd=parent_fd), os.fstat(fd)):
            return None
    except OSError:
        pass
    return kind(parent_fd, name)


def remove_dir(parent_fd: int, parent: Path, name: str, fd: int) -> str | None:
    """The directory open as `fd` (made as `name` in `parent_fd`) emptied through `fd` and removed under the name it
    has in `parent_fd` now, `fd` closed; None, or what has `name` now if it is not that directory (`kind`). Nothing
    is removed through a link; a failure is logged with the directory's path."""
    replaced, left_at = empty_and_remove(parent_fd, parent, name, fd)
    if left_at is not None:
        log.warning("backup: the emptied directory %s is left at %s: remove it as root", parent / name, left_at)
    return replaced


def empty_and_remove(
    parent_fd: int, parent: Path, name: str, fd: int, *, noun: str = "", fix: str = "delete it by hand"
) -> tuple[str | None, str | None]:
    """`remove_dir`'s work, for a caller that words what is left itself: (what has `name` now or None, where the
    emptied directory is left when it has no name in `parent_fd` any more, else None). A failure to remove is logged
    as `cannot remove <noun><path>`, followed by `fix`."""
    replaced = still_named(parent_fd, name, fd)
    mine = os.fstat(fd)
    current: str | None = name
    if replaced is not None:
        moved = os.path.basename(where_now(fd))
        try:
            current = moved if os.path.samestat(os.lstat(moved, dir_fd=parent_fd), mine) else None
        except OSError:
            current = None
    left_at: str | None = None
    try:
        if replaced is None:
            # shutil.rmtree follows no link, and checks that the directory it opens is the one it looked up
            shutil.rmtree(parent / name)
            return None, None
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.name, dir_fd=fd)
            else:
                os.unlink(entry.name, dir_fd=fd)
        if current is None:
            left_at = where_now(fd)
        else:
            os.rmdir(current, dir_fd=parent_fd)
    except OSError as exc:
        log.warning(
            "backup: cannot remove %s%s, got %s; %s", noun, parent / (current or name), exc.strerror or exc, fix
        )
    finally:
        os.close(fd)
    return replaced, left_at


def where_now(fd: int) -> str:
    """Where the directory open as `fd` is now, for a message."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "an unknown place"
