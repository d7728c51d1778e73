"""What root made in a state directory handed back to the gateway's user, walked by descriptor, never through a link.

Only a box without the gateway's account (a developer's) needs it: there `sudo edgegw user|audit|wifi|locker …` and
the servers stay root. Where the account exists, all of them become it before they open a file of its state
(gateway.privileges), and this, no longer run by root, returns at once. On the box that needs it, root works in a
directory the gateway's user owns, and that user may rename any entry there and put a symbolic link under its name
at any moment. A chown by path, even with `follow_symlinks=False`, protects only the last name: a directory swapped
for a link between the listing and the chown has root give away whatever the link leads to (/etc/shadow). So the
state directory is opened O_NOFOLLOW, each subdirectory relative to its parent's descriptor O_NOFOLLOW, and each entry
is chowned by name relative to the descriptor of the directory it was listed in (fchownat AT_SYMLINK_NOFOLLOW): no
path through a directory name is ever used, a link is never followed, and a directory replaced meanwhile is skipped.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

__all__ = ["hand_over"]

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# the gateway makes one or two levels; a deeper tree is the gateway's user's own, and a bound keeps root's walk
# from running out of descriptors or stack on a tree built to be deep
_MAX_DEPTH = 32
# what opening a name O_DIRECTORY|O_NOFOLLOW gives when it is no longer a directory: a link, a file, nothing
_NOT_A_DIR = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT)


def hand_over(state_dir: Path) -> None:
    """Run as root (sudo), give the files made in `state_dir` to the owner of its parent (the gateway's user).

    Otherwise `edgegw user add` typed as root leaves an accounts.db the web UI, running as the gateway's
    user, cannot open. Only root-owned entries change owner; links are left as they are, never followed.
    Never raises OSError: it runs in `finally` blocks.
    """
    if os.geteuid() != 0:
        return
    try:
        # the parent is the admin's choice (data_dir may be a link to a disk): it is followed, as ever
        parent_fd = os.open(state_dir.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        owner = os.fstat(parent_fd)
        if owner.st_uid == 0:
            return
        try:
            fd = os.open(state_dir.name or ".", _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                log.debug("hand over: %s is not a directory (a link?), left as it is", state_dir)
            return
        try:
            _give(fd, os.fstat(fd), owner, state_dir)
            _walk(fd, state_dir, owner, 0)
        finally:
            os.close(fd)
    finally:
        os.close(parent_fd)


def _walk(dir_fd: int, where: Path, owner: os.stat_result, depth: int) -> None:
    """The entries of the directory open as `dir_fd` (at `where`, for messages) given to `owner`, its
    subdirectories walked through their own descriptors."""
    try:
        with os.scandir(dir_fd) as it:
            entries = list(it)
    except OSError:
        return
    for entry in entries:
        try:
            # the listing's own word (d_type): a directory now a link or a file is then seen to be replaced
            listed_as_dir = entry.is_dir(follow_symlinks=False)
        except OSError:  # gone meanwhile (a -shm, a temporary file)
            continue
        if listed_as_dir:
            _enter(dir_fd, entry.name, where, owner, depth + 1)
            continue
        try:
            st = entry.stat(follow_symlinks=False)  # fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW)
        except OSError:
            continue
        if st.st_uid != 0 or stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
            continue
        if st.st_nlink != 1:  # a hard link the directory's owner made to a file of root's elsewhere: not ours
            continue
        try:
            # relative to the directory listed, the last name unfollowed: a swap can only make it chown a link
            os.chown(entry.name, owner.st_uid, owner.st_gid, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue


def _enter(parent_fd: int, name: str, parent: Path, owner: os.stat_result, depth: int) -> None:
    """The directory listed as `name` in `parent_fd` given to `owner` and walked; skipped with a DEBUG line if it
    is a link, a file or nothing by now."""
    where = parent / name
    if depth > _MAX_DEPTH:
        log.debug("hand over: %s is deeper than %d levels, left as it is", where, _MAX_DEPTH)
        return
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in _NOT_A_DIR:
            log.debug("hand over: %s was replaced while walking (now a link, a file or nothing), skipped", where)
        return
    try:
        _give(fd, os.fstat(fd), owner, where)
        _walk(fd, where, owner, depth)
    finally:
        os.close(fd)


def _give(fd: int, st: os.stat_result, owner: os.stat_result, where: Path) -> None:
    """The directory open as `fd` (`st`) given to `owner` if root owns it."""
    if st.st_uid != 0:
        return
    try:
        os.fchown(fd, owner.st_uid, owner.st_gid)
    except OSError:  # a share that maps root (NFS root_squash): nothing to hand over there
        log.debug("hand over: cannot give %s to uid %d", where, owner.st_uid)
