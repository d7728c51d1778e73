"""`edgegw audit verify|show`: check the audit log's HMAC chain and read its entries from the box's shell."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from gateway.audit.log import AuditEntry, AuditLog
from gateway.errors import ConfigError

__all__ = ["EXIT_FAILURE", "EXIT_INVALID", "EXIT_OK", "add_parser", "run"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
JST = timezone(timedelta(hours=9), "JST")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `audit` and its subcommands to the `edgegw` argument parser; returns the `audit` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser("audit", help="verify and show the web UI's audit log")
    sub = p.add_subparsers(dest="audit_command", required=True, metavar="{verify,show}")
    sub.add_parser(
        "verify", help="check every entry's HMAC chain; exit 1 naming each entry edited, deleted or inserted"
    )
    s = sub.add_parser("show", help="the newest entries, newest first")
    s.add_argument("--limit", type=int, default=50, metavar="N", help="how many (default 50)")
    s.add_argument("--actor", default=None, help="only this actor's entries (e.g. cli:root, alice)")
    s.add_argument("--action", default=None, help="only this action's entries (e.g. login.failed)")
    for c in sub.choices.values():
        c.add_argument(
            "--config",
            "-c",
            type=Path,
            default=None,
            help="gateway configuration (default: $EDGEGW_CONFIG or /etc/edgegw/gateway.toml)",
        )
    return p


def _line(e: AuditEntry) -> str:
    when = datetime.fromtimestamp(e.at, UTC).astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST")
    detail = json.dumps(dict(e.detail), ensure_ascii=False, sort_keys=True) if e.detail else ""
    parts = [f"{e.id:>6}", when, e.actor, e.action]
    if e.target:
        parts.append(e.target)
    if e.address:
        parts.append(f"from {e.address}")
    if detail:
        parts.append(detail)
    return "  ".join(parts)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run an `audit` subcommand; `verify` exits 1 when the chain is broken."""
    from gateway.accounts.cli import open_state

    out = out or sys.stdout
    err = err or sys.stderr
    what = f"audit {args.audit_command}"
    try:
        state_dir, _ = open_state(args.config)
        audit = AuditLog(state_dir)
        if args.audit_command == "verify":
            verdict = audit.verify()
            if verdict.ok:
                out.write(f"audit log {audit.path}: OK, {verdict.checked} entries verified\n")
                return EXIT_OK
            err.write(f"audit log {audit.path}: {len(verdict.problems)} problem(s) in {verdict.checked} entries\n")
            err.writelines(f"  {p}\n" for p in verdict.problems)
            return EXIT_FAILURE
        if args.limit < 1:
            err.write(f"{what}: --limit must be at least 1, got {args.limit}\n")
            return EXIT_INVALID
        for e in audit.entries(limit=args.limit, actor=args.actor, action=args.action):
            out.write(_line(e) + "\n")
        return EXIT_OK
    except ConfigError as exc:
        err.write(f"{what}: {exc.source or 'configuration'}: {len(exc.errors)} error(s)\n")
        err.writelines(f"  {line}\n" for line in exc.errors)
        return EXIT_INVALID
    except OSError as exc:
        err.write(
            f"{what}: cannot read the audit log, got {exc.strerror or exc}; run it as the gateway's user (or root)\n"
        )
        return EXIT_FAILURE
