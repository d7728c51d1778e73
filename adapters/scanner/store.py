"""The stations' own durable store: scan numbers, attendance state, shelf sessions, recent scans, the outreach loan log.

Theory of operation. `<data_dir>/stations.db` (sqlite, WAL, schema version in `PRAGMA user_version`,
forward migrations in `_migrations`). Scan numbers come from blocks of `BLOCK` whose end is committed
with a full fsync *before* the first number of the block is used, so a number is never used twice,
not after `kill -9` and not after a power cut (a crash leaves a gap at most). The events then go to
the buffer through `emit`, which returns once they are on disk there; only after that `record`
writes the station's state and the recent-scans row (synchronous=NORMAL: it survives a crash of the
process; a power cut may lose the last few rows of it, never an event).
The shelf session's time is not a column of its own: the station's last `recent` row gives it.
The store never holds a card number: attendance rows are keyed by the station-local child token,
the recent-scans list keeps reasons and entity ids only. Nor does it hold the key of those tokens:
that is `secret:stations.child_key` in the gateway's secret store (`child_key.py`); `meta` keeps
only `child_key_check`, which tells whether the secret store's key is the one the tokens were made
with. Version 1 kept the key in clear in `meta.child_key`. Taking a file to version 2 first writes
that same key to the secret store (durable), then deletes the row in the migration's transaction
with `secure_delete` on, then vacuums the file and truncates its WAL so no old page keeps the key;
`child_key_check` is written last, so a start that stopped before that scrubs the file again.

Outreach (出張貸出): each loan of an outreach station is logged in `outreach` once it is in the
buffer, as the bus's own list of what it lent; the buffer carries the loans to the platform whenever
an uplink is back (days later is fine), and the station page counts those still undelivered from
the buffer's uplink cursors.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapters.scanner.child_key import child_key, key_check, secret_name
from adapters.scanner.station import ChildState, StationState
from gateway.errors import GatewayError
from gateway.storage.files import SharedConnection, open_store
from gateway.storage.schema import Migrations, migrate, read_version

__all__ = ["SCHEMA_VERSION", "RecentScan", "StationStore", "StationStoreError"]

_log = logging.getLogger(__name__)

# Version 1 as the first releases wrote it (its `meta` held the child-token key in clear).
_SCHEMA_1 = """
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
    """
SCHEMA_VERSION = 2  # len(_migrations(...))
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


class StationStoreError(GatewayError):
    """The station store cannot be opened (a newer file, or a migration that failed, the file left as it was),
    or is used after it was closed."""

    code = "scanner_station_store"


def _clear_key_leaves(key: bytes) -> Callable[[sqlite3.Connection], None]:
    """Version 1 → 2: `meta.child_key` deleted, once `key` (the same value) is durable in the secret store."""

    def step(db: sqlite3.Connection) -> None:
        # only the value that was adopted: a row changed since then stays, and the migration fails
        db.execute("DELETE FROM meta WHERE key = 'child_key' AND value = ?", (key,))
        if db.execute("SELECT 1 FROM meta WHERE key = 'child_key'").fetchone() is not None:
            raise ValueError("meta.child_key changed while it was moved to the secret store")

    return step


def _migrations(key: bytes) -> Migrations:
    """`[i]` takes a file from version i to i + 1 (gateway/storage/schema.py); the second needs the adopted key."""
    return (_SCHEMA_1, _clear_key_leaves(key))


def _meta(db: sqlite3.Connection, key: str) -> bytes | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else bytes(row[0])


STORE = "station store"  # as its errors name it
# its own since version 1 (meta is the locker's and the mail queue's too): another store's file has none
TABLES = ("counters", "children", "shelves", "recent", "outreach")


class StationStore:
    """`<data_dir>/stations.db`, shared by every station of the adapter. Its calls run in worker threads
    (one per station at a time) and on the loop (the diagnostics): SharedConnection gives the one connection to
    one caller at a time, as a transaction begun by one thread would otherwise take in, or be rolled back
    by, another's statements."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # State rows survive a crash of the process in WAL mode with NORMAL; only the scan-number blocks
        # need the full fsync (reserve), so a scan costs the store no fsync of its own on the hot path.
        self._db = open_store(path, STORE, tables=TABLES, pragmas=("synchronous=NORMAL",))
        self._shared = SharedConnection(
            self._db, lambda: StationStoreError(f"{STORE} {path}: closed, the scanner adapter has stopped")
        )
        try:
            self._key = self._open_key()
        except BaseException:
            self._db.close()
            raise
        self._next: dict[str, int] = {}
        self._block_top: dict[str, int] = {}

    def _open_key(self) -> bytes:
        """The child-token key from the secret store, the file migrated and scrubbed of the old clear copy."""
        db, where = self._db, f"{STORE} {self.path}"
        version = read_version(db, self.path, store=STORE)
        if version > SCHEMA_VERSION:  # refused by migrate, before the secret store is touched
            migrate(db, self.path, _migrations(b""), StationStoreError, store=STORE)
        in_file = _meta(db, "child_key") if version == 1 else None
        check = _meta(db, "child_key_check") if version >= 2 else None
        key = child_key(self.path.parent, secret_name(self.path), in_file=in_file, check=check, where=where)
        if check is not None:
            return key
        # From here on the key is durable in the secret store: the clear copy may go.
        previous = int(db.execute("PRAGMA secure_delete").fetchone()[0])
        db.execute("PRAGMA secure_delete=ON")  # the deleted row's bytes are zeroed, not left in free space
        try:
            migrate(db, self.path, _migrations(key), StationStoreError, store=STORE)
            if in_file is not None:
                _log.info("station store %s: child-token key moved to secret:%s", self.path, secret_name(self.path))
            # the old key may still sit in free pages, old WAL frames or a page image the delete replaced
            db.execute("VACUUM")
            if not self._truncate_wal():
                return key  # no check yet: the next start scrubs again
        finally:
            db.execute(f"PRAGMA secure_delete={previous}")  # back to what the build does on the hot path
        db.execute("INSERT OR IGNORE INTO meta VALUES ('child_key_check', ?)", (key_check(key),))
        return key

    def _truncate_wal(self) -> bool:
        """Old page images leave the -wal file; skipped (False) rather than waited for while another connection reads."""
        self._db.execute("PRAGMA busy_timeout=0")
        try:
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            self._db.execute("PRAGMA busy_timeout=10000")
        if busy:
            _log.warning(
                "station store %s: WAL not truncated, another connection is reading; retried at the next start",
                self.path,
            )
        return not busy

    def close(self) -> None:
        """Waits for a call still running in a worker thread (SharedConnection)."""
        self._shared.close()

    @property
    def closed(self) -> bool:
        return self._shared.closed

    def schema_version(self) -> int:
        with self._shared.held() as db:
            return read_version(db)

    def local_key(self) -> bytes:
        """The key for child tokens: from the gateway's secret store, never in this store's file or its backups."""
        return self._key

    def reserve(self, station: str) -> int:
        """The next scan number of `station`. Numbers are handed out from blocks of `BLOCK` whose end is
        committed with a full fsync before the first of them is used, so no number is ever used twice,
        even after a power cut (a crash leaves a gap at most)."""
        with self._shared.held() as db:
            top = self._block_top.get(station, 0)
            nxt = self._next.get(station, 0)
            if nxt >= top:
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
        with self._shared.held() as db:
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
        """As `record` left it; a shelf session comes back with the time of the station's last scan, for the
        station to end it when it is stale (`Station.end_stale_shelf`)."""
        state = StationState()
        with self._shared.held() as db:
            children = db.execute(
                "SELECT token, day, present, last_us, in_us, out_us FROM children WHERE station = ?", (station,)
            ).fetchall()
            row = db.execute("SELECT shelf, count FROM shelves WHERE station = ?", (station,)).fetchone()
            # every scan of the station is recorded with the shelf's state: the last one is when the shelf
            # was last scanned (or its session refused one), which decides whether it has ended meanwhile
            last = db.execute(
                "SELECT at_us FROM recent WHERE station = ? ORDER BY id DESC LIMIT 1", (station,)
            ).fetchone()
        for token, day, present, last_us, in_us, out_us in children:
            state.children[token] = ChildState(
                day=day, present=bool(present), last_us=last_us, checked_in_us=in_us, checked_out_us=out_us
            )
        if row is not None:
            state.shelf, state.shelf_count = row[0], int(row[1])
            state.shelf_last_us = 0 if last is None else int(last[0])
        return state

    def recent(self, station: str, limit: int = 50) -> list[RecentScan]:
        with self._shared.held() as db:
            rows = db.execute(
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
        with self._shared.held() as db:
            return int(db.execute("SELECT count(*) FROM outreach WHERE station = ?", (station,)).fetchone()[0])
