"""Whether a data directory may be given whole to the gateway's user, before any message advises a `chown -R`.

The advice for a data directory the gateway may not write is to give it to the gateway's user. Followed on a
`gateway.data_dir` that is a typo, a shared parent (`/var/lib`, `/srv`), a home or /etc/ssl/private, that hands
other files (a user's keys, the box's TLS private keys) to the service account. So it is given only for a directory
seen to be the gateway's own: not one of the system's, owned by root or the gateway's user, and empty or holding
nothing but the gateway's files. One this user may not list is no evidence either way (a home is 0700 too): its
owner and mode are named, and the technician, who can look into it, decides.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

# the file system hierarchy's own directories (FHS): never the gateway's, whatever is in them
SYSTEM_DIRS = frozenset(
    {
        "/",
        *(f"/{d}" for d in ("bin", "boot", "dev", "etc", "home", "lib", "lib64", "media", "mnt", "opt", "proc")),
        *(f"/{d}" for d in ("root", "run", "sbin", "srv", "sys", "tmp", "usr", "var")),
        *(f"/usr/{d}" for d in ("bin", "lib", "local", "sbin", "share")),
        *(f"/var/{d}" for d in ("backups", "cache", "lib", "local", "log", "mail", "opt", "spool", "tmp")),
    }
)
# what a data directory the gateway has run in holds at its top: the buffer, the run lock, the secret store, the
# mail queue, the config history, the river state, the status files, the control socket, the web UI's state, the
# backups, the scanner's stations, the Wi-Fi log, kintone's counts and the fleet's records
# (tests/gateway/test_own_directory.py keeps it in step with the modules that name them)
GATEWAY_FILES = frozenset(
    {
        *("buffer.db", "gateway.lock", "secrets.key", "secrets.enc", "secrets.lock", "mail.db", "config_versions.db"),
        *("river_state.db", "status.json", "backup-status.json", "remote_config.json", "control.sock", "web"),
        *("backups", "stations.db", "wifilog", "kintone", "starts.json", "alarms.json", "availability.json"),
    }
)
# a locker adapter's store and its key, `locker-<adapter>.db` and `.key`
_PER_ADAPTER = (("locker-", (".db", ".key")),)
_SQLITE_SIDES = ("-wal", "-shm", "-journal")  # what SQLite puts beside a database
_BESIDE = (".reserve", ".salvaged", ".salvage-wal-reader", ".salvage")  # the buffer's reserve and a salvage's files
_PROBE = ".edgegw-probe-"  # a check's file or directory, left by a crash between making and removing it
_OWN_DIR = (
    "give the gateway a directory of its own, e.g. `sudo install -d -o edgegw -g edgegw -m 0700 /var/lib/edgegw`, "
    "and set gateway.data_dir to it"
)


def gateways_name(name: str) -> bool:
    """Whether `name`, at the top of a data directory, is one the gateway makes there."""
    if name.startswith(_PROBE):
        return True
    if name.startswith(".") and name.endswith(".tmp"):  # an atomic write's `.<name>.<random>.tmp`
        name = name[1:].rsplit(".", 2)[0]
    for suffix in _SQLITE_SIDES:
        name = name.removesuffix(suffix)
    name = name.partition(".corrupt-")[0]  # a damaged buffer moved aside, `buffer.db.corrupt-<UTC stamp>[-n]`
    for suffix in _BESIDE:
        name = name.removesuffix(suffix)
    if any(name.startswith(prefix) and name.endswith(endings) for prefix, endings in _PER_ADAPTER):
        return True
    return name in GATEWAY_FILES


def instead_of_chown(directory: Path) -> str | None:
    """None when `directory` may be given whole to the gateway's user; else the advice to give in place of the
    chown, naming why (see the module's docstring)."""
    real = os.path.realpath(directory)
    if real in SYSTEM_DIRS:
        return not_own(directory)
    try:
        st = os.stat(real)
    except OSError:
        return not_own(directory)
    # this process runs as the gateway's user (the unit's User=) when a directory refuses it; edgegw as packaged
    if st.st_uid not in {0, os.geteuid(), _uid_of("edgegw")}:
        return (
            f"{real} is not the gateway's own directory, got one owned by {owner_names((st.st_uid, st.st_gid))} "
            f"(mode {stat.S_IMODE(st.st_mode):04o}), neither root nor the gateway's user: do not give it to the "
            f"gateway's user; {_OWN_DIR}"
        )
    try:
        names = os.listdir(real)
    except PermissionError:
        return (
            f"user {user_name(os.geteuid())} may not see what {real} holds, got a directory owned by "
            f"{owner_names((st.st_uid, st.st_gid))} (mode {stat.S_IMODE(st.st_mode):04o}): check who owns it and what it holds "
            f"(`sudo ls -la {real}`); only if it holds nothing but the gateway's files (buffer.db, secrets.key, "
            f"secrets.enc and the like) give it and all in it to the gateway's user, else {_OWN_DIR}"
        )
    except OSError:
        return not_own(directory)
    return None if all(gateways_name(name) for name in names) else not_own(directory)


def gateways_own(directory: Path) -> bool:
    """Whether `directory` (its real path) can be given whole to the gateway's user; see the module's docstring."""
    return instead_of_chown(directory) is None


def not_own(directory: Path) -> str:
    """The advice for a directory that is not the gateway's own, in place of the chown."""
    return (
        f"{os.path.realpath(directory)} is not the gateway's own directory (it holds other files, or is one of "
        f"the system's): do not give it to the gateway's user; {_OWN_DIR}"
    )


def _uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def owner_names(owner: tuple[int, int]) -> str:
    """`user:group` (uid, gid) as chown takes it, by name where the box has one."""
    try:
        group = grp.getgrgid(owner[1]).gr_name
    except KeyError:
        group = str(owner[1])
    return f"{user_name(owner[0])}:{group}"
