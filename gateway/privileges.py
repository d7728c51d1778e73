"""Started as root, edgegw goes on as the gateway's account before it uses a file of the gateway's state.

Two kinds of command. The servers (`sudo edgegw web`, `sudo edgegw locker kiosk`) answer anyone on the site's
network and run for days; their units run them as the gateway's account (User=edgegw). Started by hand as root they
used to stay root, so a fault in a request handler, in aiohttp or in the TLS stack would be root's. Now root only
binds the ports (`drop_root`); then the process becomes that account for good, with its groups, as the unit would
have started it, and reads its TLS material and makes and opens every file of its state as that account, before it
serves a single request.

The shell's commands (`sudo edgegw user|audit|wifi …`, `sudo edgegw locker open`) open the gateway's state by path
in directories that account owns and may change at any moment: a symbolic link it plants at accounts.db had root
make or open an SQLite file wherever it leads (/etc, /root). They load the configuration as root (configbase's
read_toml is safe for root), take who ran them for the audit log (`cli:root`), then `become_the_account` before
they open anything else. What root itself must make (`wifi export --out` in the admin's home) is made before.

Either way every file of the state is made and opened as the account, as its units do, so nothing there is ever
root's; gateway.hand_over only matters on a box without that account (a developer's), where root stays root.

The account is named by root alone: `edgegw`, the units' User= (the package makes it), or `EDGEGW_USER` in root's
own environment (sudo does not pass a caller's on). Never by anything that account may write: the config file it
may rewrite (the web UI's config apply does), its data directory's owner, a name in its state directory. Each of
those, tried in turn, let it choose the account root became (postgres, with its ssl-cert group) or keep root as
root.
"""

from __future__ import annotations

import logging
import os
import pwd
import sysconfig
from pathlib import Path

from gateway.errors import GatewayError

__all__ = [
    "ACCOUNT",
    "PrivilegeError",
    "account_name",
    "become_the_account",
    "drop_root",
    "gateway_account",
    "ownership_hint",
    "unprivileged_ports_from",
]

log = logging.getLogger(__name__)

ACCOUNT = "edgegw"  # systemd/*.service User=, systemd/supervisor-edgegw.conf user=
ACCOUNT_VARIABLE = "EDGEGW_USER"
EDGEGW_UNIT = "edgegw"  # the gateway's own unit, run as that account


class PrivilegeError(GatewayError):
    """Started as root, edgegw could not become the gateway's account, or cannot run as it: a server must not serve,
    a command must not touch the gateway's state."""

    code = "privilege_drop_failed"


def account_name() -> str:
    return os.environ.get(ACCOUNT_VARIABLE) or ACCOUNT


def gateway_account() -> pwd.struct_passwd | None:
    """Run as root, the gateway's account (`account_name`); None as any other user, or when this box has no such
    account."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(account_name())
    except KeyError:
        return None


def drop_root(account: pwd.struct_passwd | None, *, who: str, unit: str, fix: str = "") -> str | None:
    """Run as root, become `account` (`gateway_account()`) for good, with its groups, and return how the log names
    it; None as any other user, or when there is no account (one WARNING says so and what to do, and the server
    stays root, as before: a box without the gateway's account has no one to become).

    `who` names the server in the log lines, `unit` the systemd unit that runs it as that account; `fix`, what to
    do instead when the switch fails (default: start that unit). Raises PrivilegeError naming the account and the
    fix when the switch fails, or when that account cannot read the Python the server runs on (its later imports
    would fail on every page).
    """
    fix = fix or f"start it as that account (systemctl start {unit})"
    if os.geteuid() != 0:
        return None
    if account is None:
        log.warning(
            "%s: runs as root, as started: this box has no account %s to become (the package makes it; %s names "
            "another); create it, or start the unit, which runs as it (systemctl start %s)",
            who,
            account_name(),
            ACCOUNT_VARIABLE,
            unit,
        )
        return None
    name = f"{account.pw_name} (uid {account.pw_uid})"
    if account.pw_uid == 0:
        log.warning(
            "%s: runs as root, as started: %s names %s, which is root; name the gateway's account",
            who,
            ACCOUNT_VARIABLE,
            name,
        )
        return None
    needed = _python_dirs()  # seen as root: as that account, a directory it may not enter does not even exist
    try:
        os.initgroups(account.pw_name, account.pw_gid)
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)  # real, effective and saved: there is no way back to root
    except OSError as exc:
        raise PrivilegeError(
            f"started as root, could not become {name}, the gateway's account ({exc.strerror or exc}); {fix}"
        ) from exc
    if os.getresuid() != (account.pw_uid,) * 3 or os.getresgid() != (account.pw_gid,) * 3:
        raise PrivilegeError(f"started as root, still root after becoming {name}; {fix}")
    _check_readable(needed, name, fix)
    log.info("%s: started as root, runs as %s from now on, as its unit does", who, name)
    return name


def become_the_account(what: str) -> str | None:
    """Run as root, the command `what` (`user add`) becomes the gateway's account for good before it opens a file
    of the gateway's state, and returns how the log names it; None when it stays who it is: not root, or no such
    account (then gateway.hand_over gives back what root makes, as ever). Raises PrivilegeError naming the account
    and what to do instead.

    Whatever must be known of the user who ran it is taken before (`cli_actor()`: `cli:root` under sudo).
    """
    account = gateway_account()
    if account is None:  # not a word said: a developer's box runs these as root, as it always did
        return None
    return drop_root(
        account,
        who=what,
        unit=EDGEGW_UNIT,
        fix=f"run it as that account (sudo -u {account.pw_name} edgegw {what} …)",
    )


def _python_dirs() -> list[str]:
    """Where this process imports from: the standard library, the packages, and the directory edgegw's own
    packages (gateway, adapters) sit in. Not the working directory: sudo keeps the caller's, and an entry the
    import system may not read is skipped, not fatal."""
    paths = sysconfig.get_paths()
    home = str(Path(__file__).resolve().parent.parent)
    wanted = (paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"], home)
    return [where for where in dict.fromkeys(wanted) if os.path.isdir(where)]


def _check_readable(needed: list[str], name: str, fix: str) -> None:
    """What this process imports later (templates' codecs, page modules) must be readable by the account it now
    is: a Python installed where only root may look (pyenv under /root) would serve every page as a 500."""
    for where in needed:
        if not os.access(where, os.R_OK | os.X_OK):
            raise PrivilegeError(
                f"started as root and now {name}, which may not read {where}, where the Python it runs on imports "
                f"from; install edgegw where the gateway's account can read it (/opt/edgegw), or {fix}"
            )


def ownership_hint(exc: OSError, data_dir: Path, state_dir: Path | None = None) -> str:
    """For a file this process may not use, after it became the gateway's account: whose it must be (the data
    directory, or a `[web] state_dir` outside it when the file is there), and the command; "" for any other error
    (a port refused names no file)."""
    if not isinstance(exc, PermissionError) or not exc.filename:
        return ""
    where = data_dir
    refused = Path(str(exc.filename))
    if state_dir is not None and not state_dir.is_relative_to(data_dir) and refused.is_relative_to(state_dir):
        where = state_dir  # `[web] state_dir` elsewhere: that directory, not the data directory, is the one
    who = account_name()
    return (
        f"; {where} and what it holds must be the gateway's account's ({who}), as its unit runs: sudo chown -R "
        f"{who}: {where} (a new box: sudo install -d -o {who} -g {who} -m 0750 {where})"
    )


def unprivileged_ports_from() -> int:
    """The lowest port an account may bind without a capability (Linux's sysctl; 1024 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024
