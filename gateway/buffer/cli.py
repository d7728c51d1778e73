"""`edgegw buffer stats | dead-letters | retry-dead-letters`: look into the outbox file, also while the gateway runs."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import orjson

from gateway import redact
from gateway.buffer.config import BufferConfig
from gateway.buffer.schema import connect
from gateway.buffer.space import full_disk_on_open, is_disk_full, mib
from gateway.buffer.stats import BufferStats, DeadLetter, Salvage
from gateway.buffer.store import Store
from gateway.cliopts import bounded_int
from gateway.errors import BufferError

# Bounded in the parser: 99999999999999999999 passed it and ended in SQLite's OverflowError (a traceback)
MAX_LIMIT = 1_000_000
LIMIT = bounded_int(1, MAX_LIMIT)
DEAD_LETTER_ID = bounded_int(1, 2**63 - 1, why=" (the ids `edgegw buffer dead-letters` shows)")


def add_parser(subparsers: Any) -> None:
    """Add `buffer` and its subcommands to the `edgegw` argument parser."""
    p = subparsers.add_parser("buffer", help="inspect the outbox: stats, dead letters, re-queue dead letters")
    sub = p.add_subparsers(dest="buffer_command", required=True, metavar="{stats,dead-letters,retry-dead-letters}")
    s = sub.add_parser("stats", help="rows per lane, uplink cursors and pending rows, drops, dead letters")
    s.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    d = sub.add_parser("dead-letters", help="readings the far side rejected, with its reason")
    d.add_argument("--uplink", help="only this uplink's")
    d.add_argument("--limit", type=LIMIT, default=100, help=f"at most this many, up to {MAX_LIMIT} (default 100)")
    d.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    r = sub.add_parser("retry-dead-letters", help="re-queue dead letters for their uplink (after fixing the cause)")
    r.add_argument("--uplink", help="re-queue this uplink's dead letters")
    r.add_argument(
        "--id", dest="ids", type=DEAD_LETTER_ID, action="append", help="re-queue this dead letter (repeatable)"
    )
    r.add_argument("--all", action="store_true", help="re-queue every dead letter of every uplink")
    r.add_argument("--json", action="store_true", help='print {"requeued": N}')


def run(args: argparse.Namespace, db_path: Path, out: TextIO | None = None) -> int:
    """Run a `buffer` subcommand against the database file; returns the exit code."""
    out = out or sys.stdout
    command = args.buffer_command
    if command == "retry-dead-letters" and not (args.uplink or args.ids or args.all):
        print(
            "buffer retry-dead-letters: nothing selected, got no --uplink, --id or --all; name what to re-queue",
            file=sys.stderr,
        )
        return 2
    if command == "dead-letters" and args.limit < 1:
        print(f"buffer dead-letters: --limit must be at least 1, got {args.limit}", file=sys.stderr)
        return 2
    try:
        store = _open(db_path)
    except BufferError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        if command == "stats":
            stats = store.stats(last_commit_ms=None, refused_total=0, durability="")
            out.write(_dumps(stats.to_dict()) if args.json else format_stats(stats))
        elif command == "dead-letters":
            # written by older versions, or by a far side echoing what we sent: shown redacted all the same
            letters = [replace(d, reason=redact.text(d.reason)) for d in store.dead_letters(args.uplink, args.limit)]
            out.write(_dumps([d.to_dict() for d in letters]) if args.json else format_dead_letters(letters))
        else:
            return _retry(store, args, out)
    except sqlite3.Error as exc:
        message = full_disk_on_open(db_path, exc) if is_disk_full(exc) else f"{db_path} cannot be read, got {exc}"
        print(f"buffer {command}: {message}", file=sys.stderr)
        return 1
    finally:
        store.conn.close()
    return 0


def _retry(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    """Re-queue what was asked, or say why not: a typo in --uplink or --id, or an uplink no longer configured
    (no cursor reads its rows: its dead letters stay), was once answered "re-queued 0", exit 0."""
    where = "buffer retry-dead-letters"
    configured = sorted(store.cursors)
    targets = store.dead_letter_targets(args.uplink, args.ids)
    if args.uplink is not None and args.uplink not in configured and not targets:
        print(
            f"{where}: no uplink {args.uplink!r} in this buffer, got no cursor and no dead letter of it; "
            f"uplinks: {', '.join(configured) or 'none'}",
            file=sys.stderr,
        )
        return 2
    missing = sorted(set(args.ids or ()) - {i for i, _ in targets})
    if missing:
        print(
            f"{where}: no dead letter with id {', '.join(map(str, missing))}, got none; nothing re-queued "
            "(edgegw buffer dead-letters lists them)",
            file=sys.stderr,
        )
        return 2
    left: dict[str, int] = {}
    for _, uplink in targets:
        if uplink not in configured:
            left[uplink] = left.get(uplink, 0) + 1
    n = store.retry_dead_letters(args.uplink, args.ids)
    if args.json:
        out.write(_dumps({"requeued": n, "left": left}))
    else:
        out.write(f"re-queued {n} dead letters\n")
    for uplink, count in sorted(left.items()):
        print(
            f"{where}: left {count} dead letters of uplink {uplink!r}, got an uplink no longer configured (no "
            "cursor reads its rows); configure it again to re-queue them",
            file=sys.stderr,
        )
    return 1 if left else 0


def _open(db_path: Path) -> Store:
    if not db_path.is_file():
        raise BufferError(
            f"buffer: no database at {db_path}, got a missing file; check gateway.data_dir or start the gateway once",
            path=str(db_path),
        )
    try:
        conn = connect(db_path, durability=None)
    except sqlite3.Error as exc:
        if is_disk_full(exc):
            raise BufferError(full_disk_on_open(db_path, exc), path=str(db_path)) from exc
        raise BufferError(f"buffer: cannot open {db_path}, got {exc}", path=str(db_path)) from exc
    try:
        # uplinks=None: take the cursors the gateway wrote; never add or drop any from here
        return Store(conn, path=db_path, config=BufferConfig(), uplinks=None)
    except sqlite3.Error as exc:
        conn.close()
        if is_disk_full(exc):  # the -shm SQLite needs before the first read: the file is fine
            raise BufferError(full_disk_on_open(db_path, exc), path=str(db_path)) from exc
        raise BufferError(
            f"buffer: {db_path} is not a readable outbox, got {exc}; the gateway checks and repairs it at start",
            path=str(db_path),
        ) from exc


def _dumps(doc: Any) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in (header, *rows)]
    return "\n".join(lines) + "\n"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def format_stats(s: BufferStats) -> str:
    lanes = ", ".join(f"{lane} {n:,}" for lane, n in s.rows_per_lane.items())
    text = [
        f"buffer    {s.path}",
        f"rows      {s.rows:,} ({lanes})",
        f"bytes     {s.bytes:,}",
        f"oldest    appended {_age(s.oldest_appended_age_s)} ago, observed {_age(s.oldest_observed_age_s)} ago",
        f"appended  {s.appended_total:,} in {s.commits_total:,} commits",
    ]
    drops = [f"{lane} {reason} {n:,}" for lane, reasons in s.dropped.items() for reason, n in reasons.items()]
    text.append("dropped   " + (", ".join(drops) if drops else "none"))
    if s.disk_free_bytes is not None:
        full = "FULL, refusing new readings; " if s.disk_full else ""
        reserve = f"reserve {mib(s.reserve_bytes)} held" if s.reserve_bytes else "no reserve held"
        text.append(f"disk      {full}{mib(s.disk_free_bytes)} free, {reserve}")
    if s.salvage is not None:
        text.append(f"salvaged  {format_salvage(s.salvage)}")
    rows = [
        [name, lane, str(u.cursors[lane]), f"{u.pending[lane]:,}", f"{u.dead_letters:,}" if lane == "alert" else ""]
        for name, u in s.uplinks.items()
        for lane in u.cursors
    ]
    table = _table(["uplink", "lane", "cursor", "pending", "dead letters"], rows) if rows else "no uplink cursors\n"
    kept = "".join(
        f"kept for {name} (no longer configured): {sum(k.pending.values()):,} undelivered rows ({k.alone:,} of them "
        f"for it alone) and every row appended until {k.kept_until:%Y-%m-%d %H:%M} UTC; configure it again before "
        "then to deliver them\n"
        for name, k in s.kept_uplinks.items()
    )
    gone = {k: v for k, v in s.dead_letters.items() if k not in s.uplinks}
    tail = "".join(f"dead letters of {k} (no longer configured): {v:,}\n" for k, v in gone.items())
    return "\n".join(text) + "\n\n" + table + kept + tail


def format_salvage(v: Salvage) -> str:
    if v.lost_rows is None:
        lost = "nothing could be read"
    else:
        lost = f"{v.lost_rows:,} lost" + ("" if v.lost_exact or not v.lost_rows else " at most (estimated)")
    return (
        f"{v.at.strftime('%Y-%m-%d %H:%M:%SZ')}: {v.saved_rows:,} readings saved, {lost}, "
        f"{v.saved_dead_letters:,} dead letters saved; damaged file moved to {v.moved_to} ({v.detail})"
    )


def format_dead_letters(letters: Sequence[DeadLetter]) -> str:
    if not letters:
        return "no dead letters\n"
    rows = [
        [str(d.id), d.uplink, str(d.seq), d.lane, d.entity_id, d.created_at.strftime("%Y-%m-%d %H:%M:%SZ"), d.reason]
        for d in letters
    ]
    return _table(["id", "uplink", "seq", "lane", "entity", "rejected at (UTC)", "reason"], rows)
