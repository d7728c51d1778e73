"""Whether a data directory may be given whole to the gateway's user, before any message advises a `chown -R`.

The advice for a data directory the gateway may not write is to give it to the gateway's user. Followed on a
`gateway.data_dir` that is a typo or a shared parent (`/var/lib`, `/srv`), that hands the system's files to the
service account. So it is given only for a directory that is the gateway's own: not one of the system's, and
empty, or holding the gateway's files, or closed to this user (made private for it: a system directory is
readable by everyone). Anything else gets "give the gateway a directory of its own" instead.
"""

from __future__ import annotations

import os
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
# what a data directory the gateway has run in holds
GATEWAY_FILES = frozenset({"buffer.db", "gateway.lock", "secrets.key", "secrets.enc"})


def gateways_own(directory: Path) -> bool:
    """Whether `directory` (its real path) can be given whole to the gateway's user; see the module's docstring."""
    real = os.path.realpath(directory)
    if real in SYSTEM_DIRS:
        return False
    try:
        names = set(os.listdir(real))
    except PermissionError:
        return True  # closed to this user: a directory made for one service, not a shared one
    except OSError:
        return False
    return not names or not names.isdisjoint(GATEWAY_FILES)


def not_own(directory: Path) -> str:
    """The advice for a directory that is not the gateway's own, in place of the chown."""
    return (
        f"{os.path.realpath(directory)} is not the gateway's own directory (it holds other files, or is one of "
        "the system's): do not give it to the gateway's user; give the gateway a directory of its own, e.g. "
        "`sudo install -d -o edgegw -g edgegw -m 0700 /var/lib/edgegw`, and set gateway.data_dir to it"
    )
