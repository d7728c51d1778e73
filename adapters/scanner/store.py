"""The stations' own durable store: scan numbers, attendance state, shelf sessions, recent scans, the outreach loan log.

Theory of operation. `<data_dir>/stations.db` (sqlite, WAL, `synchronous=FULL`, schema version in
`PRAGMA user_version`, forward migrations in `MIGRATIONS`). A scan's number is reserved here and
committed *before* its events are emitted, so a crash between the two leaves a gap, never a reused
id; the events then go to the buffer through `emit`, which returns once they are on disk there.
The store never holds a card number: attendance rows are keyed by the station-local child token,
the recent-scans list keeps reasons and entity ids only.

Outreach (出張貸出): every loan of an outreach station is also logged here as `pending` when its
scan number is reserved and marked `buffered` once `emit` returned; the buffer then carries it to
the platform whenever an uplink is back (days later is fine). `outreach_backlog` counts loans
buffered but not yet confirmed `delivered`; the gateway confirms them from the buffer's uplink
cursors (`mark_delivered_through`), which is what the station page shows.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.scanner.station import ChildState, StationState

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "RecentScan", "StationStore"]

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE counters (station TEXT PRIMARY KEY, next_no INTEGER NOT NULL);
    CREATE TABLE children (
        station TEXT NOT NULL, token TEXT NOT NULL, day TEXT NOT NULL, present INTEGER NOT NULL,
        last_us INTEGER NOT NULL, in_us INTEGER NOT NULL, out_us INTEGER,
        PRIMARY KEY (station, token));
    CREATE TABLE shelves (station TEXT PRIMARY KEY, shelf TEXT, count INTEGER NOT NULL);
    CREATE TABLE recent (
        id INTEGER PRIMARY KEY AUTOINCREMENT, station TEXT NOT NULL, scan_no INTEGER NOT NULL,
        at_us INTEGER NOT NULL, reason TEXT NOT NULL, feedback TEXT NOT NULL, entity_ids TEXT NOT NULL);
    CREATE INDEX recent_station ON recent (station, id);
    CREATE TABLE outreach (
        station TEXT NOT NULL, scan_no INTEGER NOT NULL, at_us INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'buffered', 'delivered')),
        PRIMARY KEY (station, scan_no));
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
RECENT_KEEP = 200  # per station: what the page shows, not a record of truth


@dataclass(frozen=True, slots=True, kw_only=True)
class RecentScan:
    station: str
    scan_no: int
    at_us: int
    reason: str
    feedback: str
    entity_ids: str


class StationStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            # created before sqlite opens it, so it is never readable by others
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"station store {path}: schema version {version} is newer than this gateway's, got {version}; "
                f"upgrade the gateway (supports up to {SCHEMA_VERSION})"
            )
        for n in range(version, SCHEMA_VERSION):
            with self._tx() as db:
                db.executescript("BEGIN IMMEDIATE;" + MIGRATIONS[n] + f"PRAGMA user_version={n + 1};COMMIT;")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        yield self._db

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def local_key(self) -> bytes:
        """The station-local key for child tokens (created once, kept with the store and its backups)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'child_key'").fetchone()
        if row is not None:
            return bytes(row[0])
        key = secrets.token_bytes(32)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('child_key', ?)", (key,))
        return bytes(self._db.execute("SELECT value FROM meta WHERE key = 'child_key'").fetchone()[0])

    def reserve(self, station: str, *, outreach_at_us: int | None = None) -> int:
        """The next scan number of `station`, durable on return (with an outreach loan row when asked)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO counters VALUES (?, 1) ON CONFLICT(station) DO UPDATE SET next_no = next_no + 1",
                (station,),
            )
            no = int(db.execute("SELECT next_no FROM counters WHERE station = ?", (station,)).fetchone()[0])
            if outreach_at_us is not None:
                db.execute("INSERT INTO outreach VALUES (?, ?, ?, 'pending')", (station, no, outreach_at_us))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return no

    def record(
        self,
        station: str,
        scan_no: int,
        at_us: int,
        reason: str,
        feedback: str,
        entity_ids: list[str],
        state: StationState,
    ) -> None:
        """After the events are in the buffer: the station's state, the recent-scans row, the loan as buffered."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO recent (station, scan_no, at_us, reason, feedback, entity_ids) VALUES (?, ?, ?, ?, ?, ?)",
                (station, scan_no, at_us, reason, feedback, " ".join(entity_ids)),
            )
            db.execute(
                "DELETE FROM recent WHERE station = ? AND id <= "
                "(SELECT id FROM recent WHERE station = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (station, station, RECENT_KEEP),
            )
            db.execute(
                "UPDATE outreach SET state = 'buffered' WHERE station = ? AND scan_no = ? AND state = 'pending'",
                (station, scan_no),
            )
            if reason not in ("loan",):
                db.execute(
                    "DELETE FROM outreach WHERE station = ? AND scan_no = ? AND state = 'pending'", (station, scan_no)
                )
            db.execute("DELETE FROM children WHERE station = ?", (station,))
            db.executemany(
                "INSERT INTO children VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (station, token, c.day, int(c.present), c.last_us, c.checked_in_us, c.checked_out_us)
                    for token, c in state.children.items()
                ],
            )
            db.execute(
                "INSERT INTO shelves VALUES (?, ?, ?) ON CONFLICT(station) DO UPDATE SET shelf = ?, count = ?",
                (station, state.shelf, state.shelf_count, state.shelf, state.shelf_count),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def load_state(self, station: str) -> StationState:
        state = StationState()
        for token, day, present, last_us, in_us, out_us in self._db.execute(
            "SELECT token, day, present, last_us, in_us, out_us FROM children WHERE station = ?", (station,)
        ):
            state.children[token] = ChildState(
                day=day, present=bool(present), last_us=last_us, checked_in_us=in_us, checked_out_us=out_us
            )
        row = self._db.execute("SELECT shelf, count FROM shelves WHERE station = ?", (station,)).fetchone()
        if row is not None:
            state.shelf, state.shelf_count = row[0], int(row[1])
        return state

    def recent(self, station: str, limit: int = 50) -> list[RecentScan]:
        rows = self._db.execute(
            "SELECT station, scan_no, at_us, reason, feedback, entity_ids FROM recent WHERE station = ? "
            "ORDER BY id DESC LIMIT ?",
            (station, limit),
        ).fetchall()
        return [
            RecentScan(station=r[0], scan_no=r[1], at_us=r[2], reason=r[3], feedback=r[4], entity_ids=r[5])
            for r in rows
        ]

    def outreach_backlog(self, station: str) -> dict[str, int]:
        counts = {"pending": 0, "buffered": 0, "delivered": 0}
        for state, n in self._db.execute(
            "SELECT state, count(*) FROM outreach WHERE station = ? GROUP BY state", (station,)
        ):
            counts[state] = int(n)
        return counts

    def pending_loans(self, station: str) -> list[int]:
        """Loans reserved but not known to be in the buffer (a crash between reserve and emit): re-check them."""
        return [
            int(r[0])
            for r in self._db.execute(
                "SELECT scan_no FROM outreach WHERE station = ? AND state = 'pending' ORDER BY scan_no", (station,)
            )
        ]

    def mark_delivered_through(self, station: str, at_us: int) -> int:
        """Loans scanned up to `at_us` are confirmed on the platform; returns how many changed."""
        cur = self._db.execute(
            "UPDATE outreach SET state = 'delivered' WHERE station = ? AND state = 'buffered' AND at_us <= ?",
            (station, at_us),
        )
        return cur.rowcount
