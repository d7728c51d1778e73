"""The stations' own durable store: scan numbers, attendance state, shelf sessions, recent scans, the outreach loan log.

Theory of operation. `<data_dir>/stations.db` (sqlite, WAL, schema version in `PRAGMA user_version`,
forward migrations in `MIGRATIONS`). Scan numbers come from blocks of `BLOCK` whose end is committed
with a full fsync *before* the first number of the block is used, so a number is never used twice,
not after `kill -9` and not after a power cut (a crash leaves a gap at most). The events then go to
the buffer through `emit`, which returns once they are on disk there; only after that `record`
writes the station's state and the recent-scans row (synchronous=NORMAL: it survives a crash of the
process; a power cut may lose the last few rows of it, never an event).
The store never holds a card number: attendance rows are keyed by the station-local child token,
the recent-scans list keeps reasons and entity ids only.

Outreach (出張貸出): each loan of an outreach station is logged in `outreach` once it is in the
buffer, as the bus's own list of what it lent; the buffer carries the loans to the platform whenever
an uplink is back (days later is fine), and the station page counts those still undelivered from
the buffer's uplink cursors.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from adapters.scanner.station import ChildState, StationState
from gateway.storage.files import wal_mode

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
        PRIMARY KEY (station, scan_no));
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
BLOCK = 64  # scan numbers reserved per durable write
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
        wal_mode(self._db)
        # State rows survive a crash of the process in WAL mode with NORMAL; only the scan-number blocks need
        # the full fsync (reserve), so a scan costs the store no fsync of its own on the hot path.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._next: dict[str, int] = {}
        self._block_top: dict[str, int] = {}
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"station store {path}: schema version {version} is newer than this gateway's, got {version}; "
                f"upgrade the gateway (supports up to {SCHEMA_VERSION})"
            )
        for n in range(version, SCHEMA_VERSION):
            self._db.executescript("BEGIN IMMEDIATE;" + MIGRATIONS[n] + f"PRAGMA user_version={n + 1};COMMIT;")

    def close(self) -> None:
        self._db.close()

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

    def reserve(self, station: str) -> int:
        """The next scan number of `station`. Numbers are handed out from blocks of `BLOCK` whose end is
        committed with a full fsync before the first of them is used, so no number is ever used twice,
        even after a power cut (a crash leaves a gap at most)."""
        top = self._block_top.get(station, 0)
        nxt = self._next.get(station, 0)
        if nxt >= top:
            db = self._db
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO counters VALUES (?, ?) ON CONFLICT(station) DO UPDATE SET next_no = next_no + ?",
                    (station, BLOCK + 1, BLOCK),
                )
                top = int(db.execute("SELECT next_no FROM counters WHERE station = ?", (station,)).fetchone()[0])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:
                db.execute("PRAGMA synchronous=NORMAL")
            nxt = top - BLOCK
            self._block_top[station] = top
        self._next[station] = nxt + 1
        return nxt

    def record(
        self,
        station: str,
        scan_no: int,
        at_us: int,
        reason: str,
        feedback: str,
        entity_ids: list[str],
        state: StationState,
        *,
        outreach_loan: bool = False,
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
            if outreach_loan:
                db.execute("INSERT OR IGNORE INTO outreach VALUES (?, ?, ?)", (station, scan_no, at_us))
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

    def outreach_loans(self, station: str) -> int:
        """Loans this outreach station has put into the buffer (its local list of what it lent)."""
        return int(self._db.execute("SELECT count(*) FROM outreach WHERE station = ?", (station,)).fetchone()[0])
