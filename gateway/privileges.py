"""A server that root started (`sudo edgegw web`, `sudo edgegw locker kiosk`) goes on as the gateway's user.

Both answer anyone on the site's network and run for days. Their units run them as the gateway's user
(User=edgegw); started by hand as root they used to stay root, so a fault in a request handler, in aiohttp or in
the TLS stack would be root's, and every file they used by path in a directory the gateway's user owns was one
planted link away from root writing wherever it leads. Now root only binds the ports (and reads an admin's TLS key
kept where only root may read it); then the process becomes the gateway's user for good, with that user's groups,
as the unit would have started it, and makes and opens every file of its state as that user, before it serves a
single request. The gateway's user is the owner of the configured data directory (the package makes
/var/lib/edgegw edgegw's): the admin's choice, which nothing in a directory that user owns can change.
"""

from __future__ import annotations

import logging
import os
import pwd
import sys
from pathlib import Path

from gateway.errors import GatewayError

__all__ = ["PrivilegeError", "drop_root", "gateway_user"]

log = logging.getLogger(__name__)


class PrivilegeError(GatewayError):
    """Started as root, the server could not become the gateway's user, or cannot run as it: it must not serve."""

    code = "privilege_drop_failed"


def gateway_user(data_dir: Path) -> tuple[int, int] | None:
    """Run as root, the gateway's user as (uid, gid): the owner of `data_dir`; None as any other user, or when
    `data_dir` is root's or not there yet (no one else to become)."""
    if os.geteuid() != 0:
        return None
    try:
        st = os.stat(data_dir)  # the admin's path, links included: where the gateway keeps its data
    except FileNotFoundError:
        return None
    return None if st.st_uid == 0 else (st.st_uid, st.st_gid)


def drop_root(owner: tuple[int, int] | None, data_dir: Path, *, who: str, unit: str) -> str | None:
    """Run as root, become for good the user `owner` (uid, gid: `gateway_user(data_dir)`) with that user's groups,
    and return how the log names it; None as any other user, or when `owner` is None (no gateway's user to become:
    one WARNING says why and what to do, and the server stays root, as before).

    `who` names the server in the log lines, `unit` the systemd unit that runs it as the gateway's user. Raises
    PrivilegeError naming the user and the fix when the switch fails, or when that user cannot read the Python the
    server runs on (its later imports would fail on every page).
    """
    if os.geteuid() != 0:
        return None
    if owner is None:
        log.warning(
            "%s: runs as root, as started: %s is root's or not there yet, so there is no gateway's user to become; "
            "start the unit, which runs as the gateway's user (systemctl start %s), or give %s to that user "
            "(chown -R)",
            who,
            data_dir,
            unit,
            data_dir,
        )
        return None
    uid, data_gid = owner
    needed = _python_dirs()  # seen as root: as that user, a directory it may not enter does not even exist
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:  # a uid without a name: the data directory's group, no supplementary ones
        name, gid, user = f"uid {uid}", data_gid, None
    else:
        name, gid, user = f"{entry.pw_name} (uid {uid})", entry.pw_gid, entry.pw_name
    try:
        if user is None:
            os.setgroups([])
        else:
            os.initgroups(user, gid)
        os.setgid(gid)
        os.setuid(uid)  # real, effective and saved: there is no way back to root
    except OSError as exc:
        raise PrivilegeError(
            f"started as root, could not become {name}, the owner of {data_dir} "
            f"({exc.strerror or exc}); start it as that user (systemctl start {unit})"
        ) from exc
    if os.getresuid() != (uid,) * 3 or os.getresgid() != (gid,) * 3:
        raise PrivilegeError(
            f"started as root, still root after becoming {name}; start it as that user (systemctl start {unit})"
        )
    _check_readable(needed, name, unit)
    log.info("%s: started as root, runs as %s from now on, as its unit does", who, name)
    return name


def _python_dirs() -> list[str]:
    """The directories this process imports from: every one on its path (the standard library, the packages, what
    a .pth adds) and edgegw's own."""
    package = str(Path(__file__).resolve().parent)
    return [where for where in dict.fromkeys((*sys.path, package)) if where and os.path.isdir(where)]


def _check_readable(needed: list[str], name: str, unit: str) -> None:
    """What this process imports later (templates' codecs, page modules) must be readable by the user it now is: a
    Python installed where only root may look (pyenv under /root) would serve every page as a 500."""
    for where in needed:
        if not os.access(where, os.R_OK | os.X_OK):
            raise PrivilegeError(
                f"started as root and now {name}, which may not read {where} (the Python it runs on, "
                f"{sys.executable}); install edgegw where the gateway's user can read it (/opt/edgegw), or start it "
                f"as that user (systemctl start {unit})"
            )
