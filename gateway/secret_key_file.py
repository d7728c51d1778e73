"""The secret store's files checked before use: a regular file, private to its owner, the gateway's, no link.

Every refusal is a ConfigError of one line naming the file, what it is, and the command that puts it right: a
technician meets these after a restore or a `sudo cp`, and under systemd a traceback would be a crash loop
without a hint. Root changes no file it reaches through a link, nor tells anyone to: the gateway's user owns the
data directory and could put a link to any file (/etc/shadow) where the key goes. For the same reason every chown
said is `chown -h`: a link put in the file's place between the message and the technician's `sudo` is changed
itself, not what it points to.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from gateway.errors import ConfigError
from gateway.own_directory import instead_of_chown, owner_names, user_name

# the warning is the secret store's: journal filters and alerts written for it keep matching
_log = logging.getLogger("gateway.secrets")

KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def present(path: Path) -> bool:
    """Whether anything is at `path`, a link to a file that is not there included; PermissionError when this user
    may not look (os.path.lexists says False then, and a user shut out of the data directory saw no secrets)."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def open_regular(path: Path, what: str, fix: Callable[[], str], *, dir_fd: int | None = None) -> int:
    """`path` opened for reading; ConfigError `<path>: <what>, got <kind>; <fix>` when it is no regular file
    (a `mkdir` by mistake, a restore that unpacked a folder under its name), a link to a file that is not there,
    or a file this user may not read that belongs to the gateway's user (`not_permitted`). `dir_fd`: the file is
    opened by its name in that directory (held by the caller), `path` then only names it in messages."""
    try:
        # O_NONBLOCK: a named pipe would hold the open until someone writes to it, and the gateway's start with it
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(path, flags) if dir_fd is None else os.open(path.name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        if not os.path.islink(path):
            raise
        # named by the file at the end of the links: the one to put back (a key on a medium not mounted)
        target = os.path.realpath(path)
        raise ConfigError(
            [f"{path}: {what}, got a symbolic link to {target}, which is not there; put {target} back, or {fix()}"]
        ) from None
    except PermissionError:
        refusal = not_permitted(path, "readable")
        if refusal is None:
            raise
        raise refusal from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # links that lead back to themselves: no file at the end of them
            raise ConfigError([f"{path}: {what}, got a symbolic link that leads round in a loop; {fix()}"]) from None
        if exc.errno != errno.ENXIO:  # what opening a socket says
            raise
        kind = stat.S_IFMT((os.stat(path) if dir_fd is None else os.stat(path.name, dir_fd=dir_fd)).st_mode)
    else:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind == stat.S_IFREG:
            return fd
        os.close(fd)
    raise ConfigError([f"{path}: {what}, got {KINDS.get(kind, 'no regular file')}; {fix()}"])


def not_permitted(path: Path, how: str) -> ConfigError | None:
    """The ConfigError for a file of the store this process was refused (`how`: "readable", "writable") that
    should be the data directory's owner's (left root's by a crash, copied with `sudo cp -p`): the exact chown,
    and whom to run as when that is not this user. None when the owner it should have is not known here (a data
    directory this user may not enter, or root's), or the file is the rightful owner's already: the caller's
    PermissionError then stands, and the CLI says to run as the gateway's user."""
    try:
        st = os.stat(path)
        rightful = rightful_owner(st, os.stat(path.parent))
    except OSError:
        return None
    if rightful is None:
        return None
    me = os.geteuid()
    what = (
        f"{path}: not {how} by user {user_name(me)}, got a file owned by {owner_names((st.st_uid, st.st_gid))} "
        f"(mode {stat.S_IMODE(st.st_mode):04o})"
    )
    if not sole_name(path, st):
        # a chown follows the link: the technician would give away whatever the link points to
        return ConfigError([f"{what} reached through a link; {_copy_instead('file', rightful)}"])
    then = f", then run this command as {user_name(rightful[0])} (or root)" if rightful[0] != me else ""
    return ConfigError(
        [f"{what}; give it to the owner of {path.parent}: run `sudo chown -h {owner_names(rightful)} {path}`{then}"]
    )


def directory_refusal(directory: Path) -> ConfigError | None:
    """The ConfigError for a data directory left root's (a `sudo mkdir`, a root `edgegw secret set` on a new box)
    that this process, not root, may not enter or write: its owner, and the chown that gives it and all in it to
    the gateway's user, said only for a directory seen to be the gateway's own (gateway.own_directory); for any
    other, what to do instead. None for root, for a directory of another user's (the gateway's: the caller's
    PermissionError stands, and the CLI says whom to run as), and for one this user may enter and write.

    Who the gateway's user is cannot be read from a directory that is root's: this user is named, with the
    condition said, as the gateway and `edgegw` run as its user are the ones that meet this.
    """
    me = os.geteuid()
    try:
        st = os.stat(directory)
    except OSError:
        return None
    if me == 0 or st.st_uid != 0:
        return None
    if not os.access(directory, os.X_OK, effective_ids=True):
        how = "accessible to"
    elif not os.access(directory, os.W_OK, effective_ids=True):
        how = "writable by"
    else:
        return None
    got = (
        f"{directory}: not {how} user {user_name(me)}, got a directory owned by "
        f"{owner_names((st.st_uid, st.st_gid))} (mode {stat.S_IMODE(st.st_mode):04o})"
    )
    instead = instead_of_chown(directory)
    if instead is not None:  # another's, the system's, or one this user cannot see into: never given blind
        return ConfigError([f"{got}; {instead}"])
    # -R: what root made in it is root's too, and the key, the store and the lock would each be refused in turn;
    # GNU chown -R changes links it meets, never what they point to. The real path: -h would stop at a link.
    fix = f"sudo chown -hR {owner_names((me, os.getegid()))} {os.path.realpath(directory)}"
    return ConfigError(
        [
            f"{got}; give it to the gateway's user: run `{fix}` if the gateway runs as {user_name(me)}, else with its user and group"
        ]
    )


def make_private(fd: int, key: Path, store: Path) -> None:
    """The key open as `fd` made 0600 if others than its owner may read or write it, with a WARNING;
    ConfigError, saying the command to run, when this process may not.

    Under root it is also given to the data directory's owner (the gateway's user) when that is not root and
    the key is another user's (copied with `sudo cp`): made 0600 and left root's, the key the gateway could
    read before would shut it out of its store. Run by anyone else, that is the chown the error asks for.
    """
    st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    directory = key.parent
    rightful = rightful_owner(st, os.stat(directory))
    heir = rightful if os.geteuid() == 0 else None
    what = (
        f"{key}: readable or writable by others than its owner, so anyone on this box could decrypt "
        f"{store}, got mode {mode:04o}"
    )
    copy = _copy_instead("key", rightful or (st.st_uid, st.st_gid))
    if os.geteuid() == 0 and not sole_name(key, st):
        # root changes no file it reaches through a link: one the gateway's user put there (to /etc/shadow)
        # would have root give that file away
        raise ConfigError([f"{what} on a file reached through a link, which root does not change; {copy}"])
    try:
        os.fchmod(fd, 0o600)  # first: others lose access even if the chown should fail
        if heir is not None:
            os.fchown(fd, *heir)
    except OSError as exc:
        refused = f"which user {user_name(os.geteuid())} may not change ({exc.strerror or exc})"
        if not sole_name(key, st):
            # no command through the link: a chown would give its target away, a `chown -h` fix nothing
            raise ConfigError([f"{what} on a file reached through a link, {refused}; {copy}"]) from None
        # chmod has no -h: run as the key's owner (after the chown, the gateway's user), a link swapped in after
        # this message changes nothing that user does not own already; a key root owns keeps root's chmod
        owner_uid = rightful[0] if rightful is not None else st.st_uid
        chmod = "sudo chmod" if owner_uid == 0 else f"sudo -u {user_name(owner_uid)} chmod"
        fix = f"{chmod} 600 {key}"
        if rightful is not None:
            fix = f"sudo chown -h {owner_names(rightful)} {key} && {fix}"
        raise ConfigError([f"{what}, {refused}; run `{fix}`"]) from None
    given = f" and given to {owner_names(heir)}, the owner of {directory}" if heir is not None else ""
    _log.warning(
        "%s: was readable or writable by others than its owner (mode %04o), so anyone on this box could "
        "decrypt %s; changed to 0600%s",
        key,
        mode,
        store,
        given,
    )


def _copy_instead(what: str, owner: tuple[int, int]) -> str:
    return f"put a copy of the {what} there instead of the link, with mode 0600 and owned by {owner_names(owner)}"


def sole_name(path: Path, opened: os.stat_result) -> bool:
    """Whether the file open (`opened`) is `path` itself, not reached through a symbolic link, and has no other
    name (a hard link)."""
    here = os.lstat(path)
    return (
        stat.S_ISREG(here.st_mode)
        and (here.st_dev, here.st_ino) == (opened.st_dev, opened.st_ino)
        and here.st_nlink == 1
    )


def rightful_owner(file: os.stat_result, directory: os.stat_result) -> tuple[int, int] | None:
    """The (uid, gid) a key must be given so the gateway keeps reading it once it is 0600: the data directory's
    owner, when the key is another user's; None when it is the owner's already, or the directory is root's
    (then who the gateway runs as is not known here)."""
    if directory.st_uid == 0 or file.st_uid == directory.st_uid:
        return None
    return directory.st_uid, directory.st_gid
