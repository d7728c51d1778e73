"""A server that root started (`sudo edgegw web`, `sudo edgegw locker kiosk`) goes on as the gateway's user.

Both answer anyone on the site's network and run for days. Their units run them as the gateway's user
(User=edgegw); started by hand as root they used to stay root, so a fault in a request handler, in aiohttp or
in the TLS stack would be root's, and every file they used by path in a directory the gateway's user owns was one
planted link away from root writing wherever it leads. Now root binds the port and reads the TLS key, what it made
is handed over (gateway.hand_over), and the process becomes the owner of the web state directory for good, with
that user's groups, as the unit would have started it.
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

__all__ = ["drop_root"]

log = logging.getLogger(__name__)


def drop_root(state_dir: Path, *, who: str, unit: str) -> str | None:
    """Run as root, become for good the owner of `state_dir` with that user's groups, and return the user's name;
    None as any other user, or when `state_dir` is root's (no one else to become: one WARNING says so).

    `who` names the server in the log lines, `unit` the systemd unit that runs it as the gateway's user. Raises
    OSError naming the user and the fix when the switch fails: the server must not go on as root meanwhile.
    """
    if os.geteuid() != 0:
        return None
    st = os.stat(state_dir)  # by its name, as the server's stores reach it: their owner is the one to become
    if st.st_uid == 0:
        log.warning(
            "%s: runs as root: %s is root's, so there is no gateway's user to become; give it to the user the "
            "gateway runs as (chown), or start the unit, which runs as that user (systemctl start %s)",
            who,
            state_dir,
            unit,
        )
        return None
    try:
        entry = pwd.getpwuid(st.st_uid)
    except KeyError:  # a uid without a name: its own group, no supplementary ones
        name, gid, groups = f"uid {st.st_uid}", st.st_gid, None
    else:
        name, gid, groups = entry.pw_name, entry.pw_gid, entry.pw_name
    try:
        if groups is None:
            os.setgroups([])
        else:
            os.initgroups(groups, gid)
        os.setgid(gid)
        os.setuid(st.st_uid)  # real, effective and saved: there is no way back to root
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"started as root, could not become {name}, the owner of {state_dir} ({exc.strerror}); "
            f"start it as that user (systemctl start {unit})",
        ) from exc
    if os.getresuid() != (st.st_uid,) * 3 or os.getresgid() != (gid,) * 3:
        raise OSError(f"started as root, still root after becoming {name}; start it as that user ({unit})")
    log.info("%s: started as root, runs as %s (uid %d) from now on, as its unit does", who, name, st.st_uid)
    return name
