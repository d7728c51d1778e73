"""`edgegw audit verify|show|purge`: check the audit log's HMAC chain, read it, apply its retention period.

Run by root (sudo), it becomes the gateway's account before it opens the log (gateway.privileges); a purge's
record still names who ran it (`cli:root`).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TextIO

from gateway.audit.log import AuditEntry, AuditError, AuditLog
from gateway.cliopts import add_config_option, bounded_int, print_config_error
from gateway.errors import ConfigError
from gateway.logs import one_line

__all__ = ["EXIT_FAILURE", "EXIT_INVALID", "EXIT_OK", "add_parser", "run"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
JST = timezone(timedelta(hours=9), "JST")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `audit` and its subcommands to the `edgegw` argument parser; returns the `audit` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser("audit", help="verify and show the web UI's audit log")
    sub = p.add_subparsers(dest="audit_command", required=True, metavar="{verify,show,purge}")
    sub.add_parser(
        "verify", help="check every entry's HMAC chain; exit 1 naming each entry edited, deleted or inserted"
    )
    s = sub.add_parser("show", help="the newest entries, newest first")
    s.add_argument("--limit", type=bounded_int(1, 1_000_000), default=50, metavar="N", help="how many (default 50)")
    s.add_argument("--actor", default=None, help="only this actor's entries (e.g. cli:root, alice)")
    s.add_argument("--action", default=None, help="only this action's entries (e.g. login.failed)")
    pg = sub.add_parser(
        "purge", help="delete entries older than [web] audit_retention_days (a purge record keeps the chain verifiable)"
    )
    pg.add_argument(
        "--days",
        type=bounded_int(1, 36_500),
        default=None,
        metavar="N",
        help="keep N days instead of [web] audit_retention_days",
    )
    for c in sub.choices.values():
        add_config_option(c)
    return p


def _line(e: AuditEntry) -> str:
    if e.at is None:
        when = e.unreadable["at"]
    else:
        when = datetime.fromtimestamp(e.at, UTC).astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST")
    detail = json.dumps(dict(e.detail), ensure_ascii=False, sort_keys=True) if e.detail else ""
    parts = [f"{e.id:>6}", when, e.actor, e.action]
    if e.target:
        parts.append(e.target)
    if e.address:
        parts.append(f"from {e.address}")
    if detail:
        parts.append(detail)
    # what a web user typed or a device sent ends up in target and detail: never let it move the terminal's cursor
    return one_line("  ".join(parts))


def _purge(args: argparse.Namespace, audit: AuditLog, retention_days: int, actor: str, out: TextIO) -> int:
    from gateway.accounts import cli as user_cli

    days = retention_days if args.days is None else args.days  # 1..36,500 (the parser), [web]'s 30..7,300
    now = user_cli.clock()
    cutoff = now - days * 86_400.0
    try:
        count = audit.purge(cutoff, now=now, actor=actor)
    finally:
        user_cli.hand_over(audit.state_dir)
    when = datetime.fromtimestamp(cutoff, UTC).astimezone(JST).strftime("%Y-%m-%d %H:%M JST")
    out.write(f"audit log {audit.path}: {count} entries older than {when} purged (kept {days} days)\n")
    return EXIT_OK


def _no_log(command: str, audit: AuditLog, out: TextIO, err: TextIO) -> int | None:
    """What a missing audit.db means, said; None when `verify` must tell (other files of the web UI are there).

    Only a state directory with nothing in it is a box where nothing was recorded yet (rc 0): audit.db is made
    with the first thing the web UI or `edgegw user` does, and anything else beside it means it was there.
    The removal of the whole directory, the key with it, looks the same; the journal and the backups show it.
    """
    state_dir = audit.state_dir
    what = f"audit {command}"
    if not state_dir.parent.is_dir():
        # a gateway.data_dir mistyped, or a -c naming another box's config: nothing here says anything of this box
        err.write(
            f"{what}: no audit log at {audit.path}, got no directory {state_dir.parent}; check gateway.data_dir "
            "(and [web] state_dir) in the configuration, or start the gateway once\n"
        )
        return EXIT_FAILURE
    if not state_dir.is_dir() or not any(state_dir.iterdir()):
        out.write(
            f"audit log {audit.path}: none yet, nothing recorded in {state_dir}; if the web UI or `edgegw user` "
            "has run on this box, that directory was removed: restore it from the backup\n"
        )
        return EXIT_OK
    if command == "verify":
        return None
    err.write(
        f"{what}: no audit log at {audit.path}, got other files of the web UI in {state_dir}; "
        "`edgegw audit verify` says what is missing; nothing changed\n"
    )
    return EXIT_FAILURE


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run an `audit` subcommand; `verify` exits 1 when the chain is broken."""
    from gateway.accounts.cli import cannot_use, cli_actor, hand_over, state_of
    from gateway.privileges import PrivilegeError, become_the_account

    out = out or sys.stdout
    err = err or sys.stderr
    what = f"audit {args.audit_command}"
    as_account = None
    try:
        state_dir, web, data_dir = state_of(args.config)
        actor = cli_actor()  # before the switch: a purge's record names who ran it (cli:root), not the account
        as_account = become_the_account(what)
        try:
            # an existing log only: an empty one made here would verify as "OK, 0 entries", where a log was removed
            audit = AuditLog(state_dir, create=False)
        finally:
            hand_over(state_dir)  # what root read may have made (a -wal, a lock) belongs to the gateway's user
        if not audit.exists():
            code = _no_log(args.audit_command, audit, out, err)
            if code is not None:
                return code
        if args.audit_command == "purge":
            return _purge(args, audit, web.audit_retention_days, actor, out)
        if args.audit_command == "verify":
            verdict = audit.verify()
            if verdict.ok:
                out.write(f"audit log {audit.path}: OK, {verdict.checked} entries verified\n")
                return EXIT_OK
            err.write(f"audit log {audit.path}: {len(verdict.problems)} problem(s) in {verdict.checked} entries\n")
            err.writelines(f"  {p}\n" for p in verdict.problems)
            return EXIT_FAILURE
        for e in audit.entries(limit=args.limit, actor=args.actor, action=args.action):
            out.write(_line(e) + "\n")
        return EXIT_OK
    except AuditError as exc:  # a log written by a newer edgegw
        err.write(f"{what}: {exc}\n")
        return EXIT_INVALID
    except ConfigError as exc:
        print_config_error(exc, err, what=what)
        return EXIT_INVALID
    except PrivilegeError as exc:  # root that cannot become the gateway's account opens nothing of its state
        err.write(f"{what}: {exc}\n")
        return EXIT_FAILURE
    except BrokenPipeError:  # the reader quit (`| head`): main() ends quietly, no store advice
        raise
    except OSError as exc:
        if as_account is not None:  # as the gateway's account: whose the files must be, as the web server says
            err.write(cannot_use(what, exc, data_dir, state_dir, as_account))
            return EXIT_FAILURE
        err.write(
            f"{what}: cannot read the audit log, got {exc.strerror or exc}; run it as the gateway's user (or root)\n"
        )
        return EXIT_FAILURE
