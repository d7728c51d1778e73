"""Copies what a damaged outbox file still holds into the fresh one replacing it: rows, cursors, dead letters, counters.

Theory of operation. The Python sqlite3 module has no recovery API, and the sqlite3 command line's
`.recover` is a separate Debian package the appliance may not have (it would also write a second
copy of the data, on a disk that may be the full one). So the damaged file is read, read-only,
through its own b-trees by key ranges: a range that reads without an error is copied, and a key it
passed over is looked up on its own (a leaf with garbled cells under an intact header can hide a
row from a scan that a lookup still finds); a range that raises keeps what came before the error
and is split until the unreadable keys are isolated. Every row that a plain
`SELECT … WHERE seq = ?` still returns is saved that way; rows below a damaged interior page
cannot be reached by key and are lost with it.

The keys tried are every integer from above the lowest cursor (rows at or below it were delivered
and deleted) to the table's AUTOINCREMENT counter. When the table's index reads completely, it says
which of them exist: only those are looked up one by one where a scan passed over them, and the count
of rows lost is exact; otherwise the count is an estimate from above. The table is scanned either
way, since an index that reads cleanly may still be what is damaged (a page of it overwritten by a
copy of another: it then lists some rows twice and others not at all).

Every row is checked before it is kept (types, and that its body decodes to the reading it says it
is): garbage that happens to parse as a page must not reach an uplink. Rows go into the fresh file
with their seq, in seq order, a few thousand per transaction, so the uplinks' cursors keep their
meaning and no entity's readings change order. The fresh file is not the buffer yet (schema.py renames
it into place once it is complete): a write that fails (a full disk) fails the whole salvage, and the
damaged file, still in place, is salvaged again at the next start.
"""

from __future__ import annotations

import bisect
import sqlite3
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.buffer.space import is_disk_full
from gateway.buffer.stats import Salvage
from gateway.logs import component_logger
from gateway.records import Reading, decode_reading, to_epoch_us

log = component_logger(__name__, "buffer")

SALVAGES_DDL = """
CREATE TABLE IF NOT EXISTS salvages (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    moved_to TEXT NOT NULL,
    detail TEXT NOT NULL,
    saved_rows INTEGER NOT NULL,
    lost_rows INTEGER,
    lost_exact INTEGER NOT NULL,
    saved_dead_letters INTEGER NOT NULL,
    lost_dead_letters INTEGER,
    cursors_kept INTEGER NOT NULL
)
"""
SALVAGE_COLUMNS = (
    "at_ms, moved_to, detail, saved_rows, lost_rows, lost_exact, saved_dead_letters, lost_dead_letters, cursors_kept"
)

# A failing query costs a few µs; this bounds a file whose root page and indexes are all gone to
# seconds, not hours. Ranges left when it is reached count as lost.
MAX_QUERIES = 2_000_000
# When the AUTOINCREMENT counter itself is unreadable, new seqs start this far above the highest
# seq seen: a lost row may have had any seq up to it, and a receiver that drops duplicates by seq
# must never take a new reading for one of those.
SEQ_MARGIN = 1_000_000
_CHUNK = 2000  # rows per transaction into the fresh file

# Called with the rows copied so far after each transaction into the fresh file: the kill -9 tests stop a
# salvage there, at a point of their choosing rather than after a guessed time.
progress: Callable[[int], None] | None = None


# what reading a damaged page can raise: SQLite's errors, and text that is not UTF-8
_UNREADABLE = (sqlite3.Error, ValueError)
# what decoding a body from a damaged page can raise: not JSON, or JSON of another shape
_UNDECODABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Table:
    """How to read a table with an integer key out of the damaged file, and write it into the fresh one."""

    select_range: str  # its rows with keys BETWEEN ? AND ?, in key order
    select_one: str  # its row with key = ?
    list_keys: str  # every key, from an index (no table page is read)
    select_highest: str
    insert: str
    valid: Callable[[tuple[Any, ...]], bool]
    rows_per_page: int  # at most, for a key range when the index is unreadable


def _table(
    name: str,
    key: str,
    columns: str,
    index: str,
    where: str,
    valid: Callable[[tuple[Any, ...]], bool],
    rows_per_page: int,
) -> _Table:
    select = f"SELECT {columns} FROM {name} WHERE {key}"
    marks = ", ".join("?" * len(columns.split(", ")))
    return _Table(
        select_range=f"{select} BETWEEN ? AND ? ORDER BY {key}",
        select_one=f"{select} = ?",
        list_keys=f"SELECT {key} FROM {name} INDEXED BY {index} WHERE {where}",
        select_highest=f"SELECT max({key}) FROM {name}",
        insert=f"INSERT INTO {name} ({columns}) VALUES ({marks})",
        valid=valid,
        rows_per_page=rows_per_page,
    )


class _Keys:
    """The keys a table may hold, by position: every integer of a range, and the keys its index listed
    when the index read cleanly (None otherwise), to tell a row lost from a key never used."""

    def __init__(self, listed: array[int] | None, lo: int, hi: int) -> None:
        self.listed = listed
        self.lo = lo
        self.n = max(0, hi - lo + 1)

    def at(self, i: int) -> int:
        return self.lo + i

    def after(self, key: int) -> int:
        """The first position whose key is above `key`."""
        return min(self.n, max(0, key - self.lo + 1))

    def position(self, key: int) -> int:
        """The first position whose key is `key` or above."""
        return min(self.n, max(0, key - self.lo))

    def unlisted(self, key: int) -> bool:
        """Whether the index read cleanly and does not list `key`."""
        listed = self.listed
        if listed is None:
            return False
        i = bisect.bisect_left(listed, key)
        return i == len(listed) or listed[i] != key


@dataclass(slots=True)
class _Tally:
    read: int = 0
    unreadable: int = 0  # positions whose key could not be read (without the index: keys, not rows)
    invalid: int = 0  # rows read whose content is damaged
    queries: int = 0
    capped: bool = False


def _rows_by_key(ro: sqlite3.Connection, table: _Table, keys: _Keys, tally: _Tally) -> Iterator[tuple[Any, ...]]:
    """The readable, valid rows of `table` whose keys `keys` covers, in key order.

    A range scan that hits damage keeps what came before and is split. A scan can also pass over a
    row, or return a garbled copy of it, where a lookup by its key still finds it intact (a leaf
    whose cells are garbled but whose header is not), so such keys are also looked up on their own.
    """

    def lookup(key: int) -> tuple[Any, ...] | bool:
        """The intact row with this key; False if there is none, True if the lookup hit damage."""
        tally.queries += 1
        try:
            row = ro.execute(table.select_one, (key,)).fetchone()
        except _UNREADABLE:
            return True
        if row is None:
            return False
        return row if row[0] == key and table.valid(row) else True

    def missing(key: int, *, scanned: bool) -> tuple[Any, ...] | None:
        """A key no scan returned. Lost if the index lists it and it is not found; without the index,
        counted lost when its lookup hits damage (an estimate from above: it may not have existed).
        A key a clean scan passed over (`scanned`) is looked up only if the index lists it: a row of it
        on an intact page would have been in the scan. A key of a damaged range is looked up anyway:
        the index may be what is damaged."""
        unlisted = keys.unlisted(key)
        if scanned and unlisted:
            return None
        if tally.queries >= MAX_QUERIES:
            tally.capped = True
            if not unlisted:
                tally.unreadable += 1
            return None
        row = lookup(key)
        if isinstance(row, tuple):
            return row
        if (row or keys.listed is not None) and not unlisted:
            tally.unreadable += 1
        return None

    stack = [(0, keys.n - 1)]  # left half on top: rows come out in key order
    while stack:
        i, j = stack.pop()
        if i > j:
            continue
        if tally.queries >= MAX_QUERIES:
            tally.capped = True
            tally.unreadable += j - i + 1
            continue
        if i == j:
            # looked up, not scanned: a scan steps on to the next row, which may be on a damaged page
            row = missing(keys.at(i), scanned=False)
            if row is not None:
                tally.read += 1
                yield row
            continue
        tally.queries += 1
        lo, hi = keys.at(i), keys.at(j)
        pos, last, broken = i, None, False
        rows: Iterator[tuple[Any, ...]]
        try:
            rows = iter(ro.execute(table.select_range, (lo, hi)))
        except _UNREADABLE:
            rows, broken = iter(()), True
        while True:
            try:
                row = next(rows)  # row by row: what came before an error is kept
            except StopIteration:
                break
            except _UNREADABLE:
                broken = True
                break
            key = row[0]
            if type(key) is not int or not lo <= key <= hi or (last is not None and key <= last):
                broken = True  # a garbled page SQLite did not notice
                break
            # no try around the yields: an error of the caller (writing the fresh file) is not damage here
            for skipped in range(pos, keys.position(key)):
                found = missing(keys.at(skipped), scanned=True)
                if found is not None:
                    tally.read += 1
                    yield found
            kept = row if table.valid(row) else lookup(key)
            if isinstance(kept, tuple):
                tally.read += 1
                yield kept
            else:
                tally.invalid += 1
            last, pos = key, keys.after(key)
        if broken:
            if pos > i:
                stack.append((pos, j))  # what came before the damage is in
            else:
                mid = (i + j) // 2
                stack.append((mid + 1, j))
                stack.append((i, mid))
            continue
        # the scan ended before the range did: look each key left up (left of everything still stacked)
        for p in range(pos, j + 1):
            found = missing(keys.at(p), scanned=True)
            if found is not None:
                tally.read += 1
                yield found


# --- what a kept row must look like ------------------------------------------------------------------


def _decoded(body: object, seq: int, entity_id: object, lane: object, observed_us: int | None = None) -> Reading | None:
    """The reading in `body` if it is the one its row's columns say it is.

    With `observed_us` (an outbox row, whose body may leave the entity id and the time to its
    columns: records.encode_row) the columns fill them in; a dead letter's body holds them itself."""
    if type(body) is not bytes or type(entity_id) is not str:
        return None
    try:
        reading = decode_reading(body, seq, None if observed_us is None else entity_id, observed_us)
    except _UNDECODABLE:
        return None
    return reading if reading.entity_id == entity_id and int(reading.lane) == lane else None


def _valid_row(row: tuple[Any, ...]) -> bool:
    seq, lane, entity_id, observed_us, appended_ms, size, body, target = row
    if not (
        type(lane) is int
        and 0 <= lane <= 2
        and type(entity_id) is str
        and type(observed_us) is int
        and type(appended_ms) is int
        and type(body) is bytes
        and size == len(body)
        and (target is None or type(target) is str)
    ):
        return False
    reading = _decoded(body, seq, entity_id, lane, observed_us)
    return reading is not None and to_epoch_us(reading.observed_at) == observed_us


def _valid_dead_letter(row: tuple[Any, ...]) -> bool:
    _, uplink, seq, lane, entity_id, body, reason, created_at = row
    return (
        type(uplink) is str
        and type(seq) is int
        and type(lane) is int
        and 0 <= lane <= 2
        and type(entity_id) is str
        and type(reason) is str
        and type(created_at) is int
        and _decoded(body, seq, entity_id, lane) is not None
    )


def _valid_cursor(row: tuple[Any, ...]) -> bool:
    uplink, lane, seq = row
    return type(uplink) is str and type(lane) is int and 0 <= lane <= 2 and type(seq) is int and seq >= 0


def _valid_counter(row: tuple[Any, ...]) -> bool:
    return type(row[0]) is str and type(row[1]) is int


def _valid_salvage(row: tuple[Any, ...]) -> bool:
    return len(row) == 9 and type(row[0]) is int and type(row[1]) is str and type(row[2]) is str


OUTBOX = _table(
    "outbox",
    "seq",
    "seq, lane, entity_id, observed_us, appended_ms, size, body, target",
    "outbox_lane",
    "lane >= 0",
    _valid_row,
    rows_per_page=100,
)
DEAD_LETTERS = _table(
    "dead_letters",
    "id",
    "id, uplink, seq, lane, entity_id, body, reason, created_at",
    "dead_letters_uplink",
    "uplink >= ''",
    _valid_dead_letter,
    rows_per_page=10,
)


# --- reading the damaged file ----------------------------------------------------------------------


def _small(
    ro: sqlite3.Connection, sql: str, valid: Callable[[tuple[Any, ...]], bool]
) -> tuple[list[tuple[Any, ...]], bool]:
    """Rows of a small table that read and look right, and whether that was all of them."""
    out: list[tuple[Any, ...]] = []
    try:
        for row in ro.execute(sql):
            if not valid(row):
                return out, False
            out.append(row)
    except _UNREADABLE:
        return out, False
    return out, True


def _listed_keys(ro: sqlite3.Connection, sql: str) -> array[int] | None:
    """Every key an index lists, sorted; None unless the whole index reads cleanly."""
    keys: array[int] = array("q")
    try:
        for (key,) in ro.execute(sql):
            if type(key) is not int:
                return None
            keys.append(key)
    except (*_UNREADABLE, OverflowError):
        return None
    return array("q", sorted(keys))


def _page_count(ro: sqlite3.Connection, damaged: Path) -> int:
    try:
        return int(ro.execute("PRAGMA page_count").fetchone()[0])
    except _UNREADABLE:
        pass
    # SQLite refuses a file cut short outright; its length still says how many pages it held
    try:
        with damaged.open("rb") as f:
            header = f.read(18)
        size = damaged.stat().st_size
    except OSError:
        return 0
    page = int.from_bytes(header[16:18], "big") if len(header) == 18 else 0
    page = 65536 if page == 1 else page  # SQLite's encoding of the largest page size
    return size // page if page >= 512 and not page & (page - 1) else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Found:
    """What the damaged file's small tables still said."""

    sequences: dict[str, int]  # sqlite_sequence: the AUTOINCREMENT counters
    cursors: list[tuple[Any, ...]]
    cursors_kept: bool
    counters: list[tuple[Any, ...]]
    salvages: list[tuple[Any, ...]]


def _find(ro: sqlite3.Connection) -> _Found:
    sequences, _ = _small(ro, "SELECT name, seq FROM sqlite_sequence", _valid_counter)
    cursors, cursors_kept = _small(ro, "SELECT uplink, lane, seq FROM cursors", _valid_cursor)
    counters, _ = _small(ro, "SELECT name, value FROM counters", _valid_counter)
    salvages, _ = _small(ro, f"SELECT {SALVAGE_COLUMNS} FROM salvages ORDER BY id", _valid_salvage)
    return _Found(
        sequences=dict(sequences), cursors=cursors, cursors_kept=cursors_kept, counters=counters, salvages=salvages
    )


def _keys(ro: sqlite3.Connection, damaged: Path, table: _Table, lo: int, counter: int | None) -> _Keys:
    # The table is scanned by key range even when its index reads cleanly: a misdirected write can
    # leave an index page that reads well but lists other keys than it should (a copy of another of its
    # pages), and rows it does not list would be lost. The index still tells which keys exist, so that
    # only those are looked up on their own and the count of rows lost is exact.
    listed = _listed_keys(ro, table.list_keys)
    # AUTOINCREMENT never hands out more than its counter; without it, the highest key if that still
    # reads, else as many keys as the pages could hold
    hi = counter if counter is not None else _highest(ro, table)
    if hi is None:
        hi = lo + _page_count(ro, damaged) * table.rows_per_page
    if listed:
        lo, hi = min(lo, listed[0]), max(hi, listed[-1])
    return _Keys(listed, lo, hi)


def _highest(ro: sqlite3.Connection, table: _Table) -> int | None:
    try:
        row = ro.execute(table.select_highest).fetchone()
    except _UNREADABLE:
        return None
    return row[0] if row is not None and type(row[0]) is int else None


# --- copying into the fresh file -------------------------------------------------------------------


@dataclass(slots=True)
class _Copied:
    rows: int = 0
    highest: int = 0


def _copy(conn: sqlite3.Connection, sql: str, rows: Iterator[tuple[Any, ...]]) -> _Copied:
    """Every row into the fresh file; SQLite's error (a full disk) fails the salvage, which is done again."""
    done = _Copied()
    chunk: list[tuple[Any, ...]] = []

    def write() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, chunk)
        conn.execute("COMMIT")
        done.rows += len(chunk)
        done.highest = chunk[-1][0]
        chunk.clear()
        if progress is not None:
            progress(done.rows)

    for row in rows:
        chunk.append(row)
        if len(chunk) >= _CHUNK:
            write()
    if chunk:
        write()
    return done


def _set_sequence(conn: sqlite3.Connection, name: str, value: int) -> None:
    if conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (value, name)).rowcount == 0:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, value))


def _open_read_only(damaged: Path) -> sqlite3.Connection | None:
    # read-only: the damaged file and its -wal stay as they were, for analysis (only the -shm, an index
    # SQLite rebuilds, is rewritten). Without commits in a -wal, immutable: no -shm is made, which a full
    # disk has no room for. With them, SQLite reads the -wal only through a -shm: none of its other ways
    # works read-only (immutable and nolock ignore the -wal, an exclusive lock needs a writable file).
    try:
        wal_size = Path(f"{damaged}-wal").stat().st_size
    except FileNotFoundError:
        wal_size = 0
    mode = "mode=ro" if wal_size else "immutable=1"
    try:
        ro = sqlite3.connect(
            f"{damaged.resolve().as_uri()}?{mode}", uri=True, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        log.error("buffer: damaged file %s cannot be opened to salvage it: %s", damaged, exc)
        return None
    try:
        ro.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as exc:
        if is_disk_full(exc):  # no room for the -shm: the disk's fault, not the file's; tried again
            ro.close()
            raise
    return ro


# --- the whole job ---------------------------------------------------------------------------------


def replace_damaged(
    damaged: Path | None, conn: sqlite3.Connection, *, moved_to: Path, detail: str, path: Path, now: datetime
) -> Salvage:
    """Salvage what `damaged` holds into `conn` (a fresh, empty outbox), record it in the file and log it at CRITICAL.

    `damaged` None: the file was not a database at all; only the replacement is recorded.
    """
    side = [Path(f"{damaged}{suffix}") for suffix in ("-wal", "-shm")] if damaged is not None else []
    had = [p.exists() for p in side]
    if damaged is None or (ro := _open_read_only(damaged)) is None:
        result = Salvage(
            at=now,
            moved_to=str(moved_to),
            detail=detail,
            saved_rows=0,
            lost_rows=None,
            lost_exact=False,
            saved_dead_letters=0,
            lost_dead_letters=None,
            cursors_kept=False,
        )
        _record(conn, result, _Found(sequences={}, cursors=[], cursors_kept=False, counters=[], salvages=[]), 0, 0)
        log.critical(
            "buffer: database %s is damaged (%s); moved it to %s and started an empty buffer. "
            "Readings in the damaged file are not delivered; keep it for analysis",
            path,
            detail,
            moved_to,
        )
        return result
    try:
        return _salvage(ro, damaged, conn, moved_to=moved_to, detail=detail, path=path, now=now)
    finally:
        ro.close()
        # a read-only connection leaves the -wal and -shm it made; only the damaged file's own are evidence
        if not had[0] and side[0].exists() and side[0].stat().st_size == 0:
            for p, existed in zip(side, had, strict=True):
                if not existed:
                    p.unlink(missing_ok=True)


def _salvage(
    ro: sqlite3.Connection,
    damaged: Path,
    conn: sqlite3.Connection,
    *,
    moved_to: Path,
    detail: str,
    path: Path,
    now: datetime,
) -> Salvage:
    found = _find(ro)
    cursor_seqs = [c[2] for c in found.cursors]
    # rows at or below every cursor were delivered everywhere and deleted
    lo = min(cursor_seqs) + 1 if found.cursors_kept and cursor_seqs else 1
    rows_tally, dead_tally = _Tally(), _Tally()
    outbox_keys = _keys(ro, damaged, OUTBOX, lo, found.sequences.get("outbox"))
    rows = _copy(conn, OUTBOX.insert, _rows_by_key(ro, OUTBOX, outbox_keys, rows_tally))
    dead_keys = _keys(ro, damaged, DEAD_LETTERS, 1, found.sequences.get("dead_letters"))
    dead = _copy(conn, DEAD_LETTERS.insert, _rows_by_key(ro, DEAD_LETTERS, dead_keys, dead_tally))
    lost_rows = rows_tally.unreadable + rows_tally.invalid
    lost_dead = dead_tally.unreadable + dead_tally.invalid
    result = Salvage(
        at=now,
        moved_to=str(moved_to),
        detail=detail,
        saved_rows=rows.rows,
        lost_rows=lost_rows,
        lost_exact=outbox_keys.listed is not None and not rows_tally.capped,
        saved_dead_letters=dead.rows,
        lost_dead_letters=lost_dead,
        cursors_kept=found.cursors_kept,
    )
    # new seqs continue above every seq the damaged file handed out, so that cursors never skip them
    top = max(
        rows.highest,
        max(cursor_seqs, default=0),
        found.sequences.get("outbox", 0),
        outbox_keys.listed[-1] if outbox_keys.listed else 0,
    )
    if "outbox" not in found.sequences:
        top += SEQ_MARGIN
    _record(conn, result, found, top, max(dead.highest, found.sequences.get("dead_letters", 0)))
    _log(result, path)
    return result


def _record(conn: sqlite3.Connection, result: Salvage, found: _Found, outbox_seq: int, dead_seq: int) -> None:
    """The cursors, counters, AUTOINCREMENT counters and the salvage's record; SQLite's error fails the salvage
    (a fresh file without them would hand out seqs again and forget where each uplink was)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO cursors (uplink, lane, seq) VALUES (?, ?, ?)", found.cursors)
        conn.executemany("INSERT INTO counters (name, value) VALUES (?, ?)", found.counters)
        if outbox_seq:
            _set_sequence(conn, "outbox", outbox_seq)
        if dead_seq:
            _set_sequence(conn, "dead_letters", dead_seq)
        conn.execute(SALVAGES_DDL)
        placeholders = ", ".join("?" * 9)
        conn.executemany(f"INSERT INTO salvages ({SALVAGE_COLUMNS}) VALUES ({placeholders})", found.salvages)
        conn.execute(
            f"INSERT INTO salvages ({SALVAGE_COLUMNS}) VALUES ({placeholders})",
            (
                int(result.at.timestamp() * 1000),
                result.moved_to,
                result.detail,
                result.saved_rows,
                result.lost_rows,
                int(result.lost_exact),
                result.saved_dead_letters,
                result.lost_dead_letters,
                int(result.cursors_kept),
            ),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _log(result: Salvage, path: Path) -> None:
    if result.lost_rows == 0:
        lost = "none was lost"
    elif result.lost_exact:
        lost = f"{result.lost_rows} could not be read (counted from the lane index)"
    else:
        lost = f"at most {result.lost_rows} could not be read (estimated from the unreadable seq ranges)"
    dead = f"{result.saved_dead_letters} dead letters kept"
    if result.lost_dead_letters:
        dead += f", {result.lost_dead_letters} lost"
    cursors = (
        "the uplinks' cursors kept"
        if result.cursors_kept
        else "some uplinks' cursors could not be read: those uplinks get every salvaged reading again"
    )
    log.critical(
        "buffer: database %s is damaged (%s); moved it to %s and salvaged %d readings into a fresh buffer, "
        "%s; %s; %s. Keep the damaged file for analysis",
        path,
        result.detail,
        result.moved_to,
        result.saved_rows,
        lost,
        dead,
        cursors,
    )


def read_last(conn: sqlite3.Connection) -> Salvage | None:
    """The last salvage recorded in an outbox file, None if it never had one."""
    try:
        row = conn.execute(f"SELECT {SALVAGE_COLUMNS} FROM salvages ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        return None  # no such table: never salvaged
    if row is None:
        return None
    at_ms, moved_to, detail, saved, lost, exact, saved_dead, lost_dead, kept = row
    return Salvage(
        at=datetime.fromtimestamp(at_ms / 1000, UTC),
        moved_to=moved_to,
        detail=detail,
        saved_rows=saved,
        lost_rows=lost,
        lost_exact=bool(exact),
        saved_dead_letters=saved_dead,
        lost_dead_letters=lost_dead,
        cursors_kept=bool(kept),
    )
