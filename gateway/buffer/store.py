"""The outbox's SQL: insert with cap drops, lane-ordered reads, cursor acks with dead letters, stats.

Synchronous and single-threaded: the Outbox runs it on its writer thread, the CLI runs it directly.
Every write is one transaction; in-memory state (totals, cursors, counters) changes only after
COMMIT succeeded, so a failed commit (disk full) leaves memory and file in step.

Ages (max_age_s, the oldest row's age) are counted on the buffer's own clock, AgeClock: the wall
clock plus an offset that takes its steps out. A box without RTC boots months behind and NTP steps
its clock forward later; counted on the wall clock, every row appended before that step was
suddenly months old and dropped as max_age at the next age check. So:

- While the gateway runs, the writer compares the wall clock with the kernel's elapsed time (which
  never steps) each second and before stats. A change of more than STEP_S between two looks is a
  step: the offset changes by as much the other way, so that the age clock goes on as if nothing
  had happened, and rows stamped after the step but before the writer saw it are stamped again
  (rows already stored are never rewritten otherwise: no UPDATE of a whole backlog).
- The offset is kept in the file (counters, "clock.offset_ms") and used again at the next start:
  a step seen before a restart still counts after it, and time the gateway was stopped counts as
  age, as the wall clock shows it. A clock that starts behind the newest row (a reboot without RTC,
  with or without a step later) never makes that row "in the future": the age clock then starts
  at that row's stamp and the time the gateway was stopped is not counted. An empty outbox starts
  again on the wall clock (offset 0).
- What no clock can tell apart from time the gateway was stopped: a clock wrong during a whole run
  and right at the next start, or stepped while the gateway was stopped (or in the second before
  it stopped, before the writer looked). That run's rows then age by the step, as they always did.

An uplink with cursors in the file that the configuration no longer names is kept, not forgotten,
for [buffer] removed_uplink_keep_days: an uplink removed by mistake, or by an apply a rollback
undoes, must find its acknowledged backlog when it comes back. Its cursors stay in the file and
hold back the deletion of the rows it has not passed, which still count against the caps and age
out as any row (so the disk stays protected); nothing is read for it. When a start first found it
missing (on the age clock, so a step of the wall clock does not end the period) and until when it
is kept are in the counters table. Those stamps are kept on the age clock as rows' are: no stamp
puts the age clock's start behind it, and when an empty outbox puts it back on the wall clock they
move by as much (with the offset, in one transaction). Shown to people (the log, stats) they are
on the wall clock: the stamp minus the offset in force. Once the period is over (at a start, or by
the writer's maintenance) its cursors go, and with them the rows only it still needed; configured
again before, it goes on from its cursors.
"""

from __future__ import annotations

import functools
import itertools
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from gateway.buffer import salvage
from gateway.buffer.caps import LANES, DropReason, Room, drop_order
from gateway.buffer.config import BufferConfig
from gateway.buffer.schema import wal_pages
from gateway.buffer.space import insert_pages, reserve_path
from gateway.buffer.stats import BufferStats, DeadLetter, KeptUplink, UplinkCursorStats
from gateway.buffer.tail import Tail
from gateway.errors import BufferError
from gateway.records import Lane, Reading, decode_reading, encode_reading
from gateway.uplinks.api import DELIVERED, Outcome, Status

_LANES = len(Lane)  # per-lane lists are indexed by Lane's values, 0..len(Lane)-1

# (lane, entity_id, observed_us, appended_ms, size, body, target)
Row = tuple[int, str, int, int, int, bytes, str | None]

# Rows go in with multi-row INSERTs rather than executemany, and every statement counts: the sqlite3
# module releases the GIL around each statement step and must take it back afterwards, which with
# the event loop busy in Python waits up to the interpreter's switch interval (5 ms). An executemany
# of a 2,000-row group so stalled the writer thread for tens of milliseconds, and the uplinks' acks
# queued behind it. One step inserts all rows of a statement, in VALUES order, so they still get
# consecutive seqs. A group goes in as power-of-two blocks (2,000 rows: 1,024 + 512 + 256 + 128 +
# 64 + 16), so a handful of statement shapes stay prepared in the sqlite3 module's cache (each
# holds memory for its variables: one shape per group size would not do).
_INSERT_HEAD = "INSERT INTO outbox (lane, entity_id, observed_us, appended_ms, size, body, target) VALUES "
_COLUMNS = 7


@functools.lru_cache(maxsize=16)
def _insert_sql(n: int) -> str:
    return _INSERT_HEAD + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * n)


@functools.lru_cache(maxsize=16)
def _insert_at_sql(n: int) -> str:
    # the rows' seqs given: ?1 is the first, the row k gets ?1 + k
    values = (f"(?1 + {k}, " + ", ".join(f"?{2 + k * _COLUMNS + j}" for j in range(_COLUMNS)) + ")" for k in range(n))
    return "INSERT INTO outbox (seq, lane, entity_id, observed_us, appended_ms, size, body, target) VALUES " + ",".join(
        values
    )


def insert_block_rows(conn: sqlite3.Connection) -> int:
    """The largest power-of-two block of rows one INSERT may carry: at most 1,024, and within the
    build's variable limit (999 before SQLite 3.32, 32,766 since)."""
    most = min(1024, (conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 1) // _COLUMNS)  # -1: a first seq
    return 1 << (most.bit_length() - 1)


@functools.lru_cache(maxsize=8)
def _bump_sql(n: int) -> str:
    return (
        "INSERT INTO counters (name, value) VALUES "
        + ",".join(["(?, ?)"] * n)
        + " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value"
    )


# entity_id and observed_us too: a row's body leaves them to its columns (records.encode_row)
_READ = (
    "SELECT seq, body, entity_id, observed_us FROM outbox WHERE lane = ? AND seq > ? "
    "AND (target IS NULL OR target = ?) ORDER BY seq LIMIT ?"
)
_TIGHT = 0.9  # from this share of a cap on, acknowledgements are written at once
# The age clock (see the module docstring): its offset as kept in the file, and when a change of the
# wall clock against the elapsed time is a step. NTP slews at most 0.5 ms a second, and slews move the
# elapsed time alike; 2 s stays above what an unsynchronised clock drifts between two looks.
_AGE_OFFSET = "clock.offset_ms"
_SET_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
# A kept removed uplink (see the module docstring): counters named these prefixes + its name.
_REMOVED_AT = "uplink.removed_at_ms."
_KEPT_UNTIL = "uplink.kept_until_ms."
DAY_MS = 86_400_000
STEP_S = 2.0
# Rows stamped since the writer's last look carry a stamp within that time (± this much slack); a
# stamp outside it was taken after a step the writer had not seen yet, and carries that step.
_STAMP_SLACK_MS = 250
_NEWEST_STAMP = "SELECT appended_ms FROM outbox ORDER BY seq DESC LIMIT 1"
_NO_CURSOR = [-1] * _LANES  # an uplink without a cursor in the file: every lane differs
_LANE_NAMES = {int(lane): lane.name.lower() for lane in LANES}
_MAX_SEQ = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)"
# Seqs the gateway may hand to its uplinks before the rows' COMMIT (see outbox.py): the highest is kept
# in the counters table before any of them is handed out, so that no seq is ever used for two readings,
# neither after a crash nor by another process re-queueing dead letters meanwhile.
_RESERVED = "seq.reserved"
_READ_RESERVED = "SELECT coalesce((SELECT value FROM counters WHERE name = ?), 0)"
SEQ_RESERVE = 1 << 20  # reserved ahead at a time (a crash skips at most that many seqs)
# Clearing the table and putting back the rows still pending (see _delete_passed) pays when at
# least _CLEAR_MIN rows go and at most _CLEAR_KEEP as many stay (a row put back rewrites its share
# of a page; a row deleted alone rewrote ~half of its share), and never more than _CLEAR_MAX stay.
_CLEAR_MIN = 64
_CLEAR_KEEP = 0.5
_CLEAR_MAX = 4096
_OUTBOX_COLUMNS = "seq, lane, entity_id, observed_us, appended_ms, size, body, target"
_ROWS_PAST = f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE lane = ? AND seq > ? ORDER BY seq LIMIT ?"
_HAS_SEQ = "SELECT seq FROM outbox WHERE lane = ? AND seq > ? AND (target IS NULL OR target = ?) ORDER BY seq LIMIT 1"
# Readings kept in memory after their commit (see tail.py): an uplink that keeps up reads a batch or
# two (1,000 rows each by default) behind the newest commit, so a few thousand rows serve it. The
# bound in bytes is what holds memory down: a decoded Reading takes ~6 times its stored size, so
# 1 MiB of rows is ~6 MiB of Readings (~4,500 readings of four attributes). At 20,000 rows and no
# byte bound, a drain of such readings held ~28 MB here, a third of the gateway's peak.
TAIL_ROWS = 20_000
TAIL_BYTES = 1024 * 1024


def _elapsed_clock() -> Callable[[], float]:
    """Seconds since boot, suspended time included where the kernel counts it; never stepped."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.monotonic if boottime is None else functools.partial(time.clock_gettime, boottime)


@dataclass(frozen=True, slots=True)
class Step:
    """A step of the wall clock the age clock took out. Rows stamped since the last look got a stamp
    between `lo_ms` (that look) and `hi_ms` (now) on the age clock, unless they were stamped after the
    step: then they carry it, and lie beyond `hi_ms` (a step forward) or before `lo_ms` (back)."""

    ms: int  # how far the wall clock jumped (negative: back)
    lo_ms: int
    hi_ms: int

    def carried(self, stamp_ms: int) -> bool:
        return stamp_ms > self.hi_ms if self.ms > 0 else stamp_ms < self.lo_ms

    def sql(self) -> tuple[str, int]:
        """The condition `carried` puts on appended_ms, and its bound."""
        return ("appended_ms > ?", self.hi_ms) if self.ms > 0 else ("appended_ms < ?", self.lo_ms)


class AgeClock:
    """The clock rows' ages are counted on: `wall` plus `offset_ms` (see the module docstring).

    The event loop reads `offset_ms` on every append; only the outbox's writer changes it (look()),
    holding the outbox's condition, under which the loop stamps its rows.
    """

    def __init__(self, wall: Callable[[], float], offset_ms: int, elapsed: Callable[[], float]) -> None:
        self.wall = wall
        self.offset_ms = offset_ms
        self._elapsed = elapsed
        self._skew = wall() - elapsed()
        self._seen_ms = self.now_ms()

    def now_ms(self) -> int:
        return int(self.wall() * 1000) + self.offset_ms

    def now(self) -> float:
        return self.wall() + self.offset_ms / 1000

    def look(self) -> Step | None:
        """The wall clock's step since the last look, if any; the offset takes it out from now on."""
        elapsed, wall = self._elapsed(), self.wall()
        seen, now_ms = self._seen_ms, int(wall * 1000) + self.offset_ms
        jump_ms = round((wall - elapsed - self._skew) * 1000)
        if abs(jump_ms) < STEP_S * 1000:
            self._seen_ms = now_ms
            return None
        self._skew = wall - elapsed
        self.offset_ms -= jump_ms
        self._seen_ms = now_ms - jump_ms
        return Step(ms=jump_ms, lo_ms=seen - _STAMP_SLACK_MS, hi_ms=self._seen_ms + _STAMP_SLACK_MS)


def _insert_rows_at(conn: sqlite3.Connection, first: int, rows: Sequence[Row], block: int) -> None:
    """Insert `rows` with the seqs first, first + 1, … in power-of-two blocks of at most `block` rows."""
    flat = itertools.chain.from_iterable
    at, left = 0, len(rows)
    while left:
        n = block if left >= block else 1 << (left.bit_length() - 1)
        conn.execute(_insert_at_sql(n), [first + at, *flat(rows[at : at + n])])
        at += n
        left -= n


def _insert_rows(conn: sqlite3.Connection, rows: Sequence[Row], block: int) -> int:
    """Insert `rows` (at least one) in power-of-two blocks of at most `block` rows; the last row's seq."""
    flat = itertools.chain.from_iterable
    last, at, left = 0, 0, len(rows)
    while left:
        n = block if left >= block else 1 << (left.bit_length() - 1)
        last = conn.execute(_insert_sql(n), list(flat(rows[at : at + n]))).lastrowid or 0
        at += n
        left -= n
    return last


def _read_from(cursor: Sequence[int], after: Sequence[int] | None, lane: int) -> int:
    """Where a read of `lane` starts: past the cursor, or past `after[lane]` where that is further."""
    return cursor[lane] if after is None else max(cursor[lane], after[lane])


def settled(batch: Sequence[Reading], outcomes: Sequence[Outcome]) -> list[int]:
    """The positions an acknowledgement of `batch` settles: per lane, the records before its first RETRY.

    The rest of that lane is read and sent again (the cursor cannot pass a record still to deliver),
    whatever the uplink said of it, so it is neither delivered nor dead-lettered yet. `Store.ack`
    moves the cursors by this rule, and the delivery loop and the uplinks count and log by it: a
    record counted or said dead-lettered at every retry of an earlier one was counted many times."""
    blocked = [False] * _LANES
    positions: list[int] = []
    retry = Status.RETRY
    for i, (reading, outcome) in enumerate(zip(batch, outcomes, strict=True)):
        lane = reading.lane  # an IntEnum indexes the list as its number does
        if blocked[lane]:
            continue
        if outcome is not DELIVERED and outcome.status is retry:
            blocked[lane] = True
            continue
        positions.append(i)
    return positions


def lane_name(lane: int) -> str:
    return _LANE_NAMES[lane]


@dataclass(slots=True)
class _Changes:
    """What a transaction will change in memory once (and only if) it commits."""

    released: list[tuple[int, int, int]] = field(default_factory=list)  # (lane, rows, bytes)
    added: list[tuple[int, int, int]] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    settled: bool = False  # the transaction carries a settle (at most one: it writes the lazy counts)
    lazy: Counter[str] = field(default_factory=Counter)  # counted in memory now, written at the next settle
    saved: Counter[str] = field(default_factory=Counter)  # lazy counts of earlier transactions written by this one
    after: list[Callable[[], None]] = field(default_factory=list)

    def appended(self, n: int, per_lane_rows: Sequence[int], per_lane_bytes: Sequence[int]) -> None:
        """The `n` rows this transaction inserts: the lanes' totals, and the counts written with the next
        settle (a counters page less per commit)."""
        for lane in range(_LANES):
            if per_lane_rows[lane]:
                self.added.append((lane, per_lane_rows[lane], per_lane_bytes[lane]))
        self.lazy["appended"] += n
        self.lazy["commits"] += 1


# Statements shared with the read-only BufferReader (reader.py): one copy of the SQL.
_DEAD_WHERE = "WHERE (?1 IS NULL OR uplink = ?1) AND (?2 IS NULL OR id IN (SELECT value FROM json_each(?2)))"


def read_dead_letters(conn: sqlite3.Connection, uplink: str | None, limit: int, offset: int = 0) -> list[DeadLetter]:
    """Dead letters (of `uplink`, or all), oldest first, a page of `limit` from `offset`."""
    rows = conn.execute(
        "SELECT id, uplink, seq, lane, entity_id, body, reason, created_at FROM dead_letters "
        "WHERE ?1 IS NULL OR uplink = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
        (uplink, limit, offset),
    ).fetchall()
    return [
        DeadLetter(
            id=id_,
            uplink=up,
            seq=seq,
            lane=lane_name(lane),
            entity_id=entity_id,
            reason=reason,
            created_at=datetime.fromtimestamp(created / 1000, UTC),
            reading=decode_reading(body, seq),
        )
        for id_, up, seq, lane, entity_id, body, reason, created in rows
    ]


def count_dead_letters(conn: sqlite3.Connection) -> dict[str, int]:
    """Uplink -> dead letters held, including uplinks no longer configured."""
    return dict(conn.execute("SELECT uplink, count(*) FROM dead_letters GROUP BY uplink").fetchall())


def read_cursors(conn: sqlite3.Connection) -> dict[str, list[int]]:
    """Uplink -> the seq each lane's cursor has passed, as stored."""
    stored: dict[str, list[int]] = {}
    for name, lane, seq in conn.execute("SELECT uplink, lane, seq FROM cursors"):
        stored.setdefault(name, [0] * _LANES)[lane] = seq
    return stored


def count_pending(conn: sqlite3.Connection, uplink: str, cursor: Sequence[int]) -> dict[str, int]:
    """Lane name -> rows past `uplink`'s cursor that it still has to read (not those re-queued for another)."""
    pending = {}
    for lane in range(_LANES):
        (n,) = conn.execute("SELECT count(*) FROM outbox WHERE lane = ? AND seq > ?", (lane, cursor[lane])).fetchone()
        (others,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE target IS NOT NULL AND target <> ? AND lane = ? AND seq > ?",
            (uplink, lane, cursor[lane]),
        ).fetchone()
        pending[lane_name(lane)] = n - others
    return pending


def count_pending_entities(conn: sqlite3.Connection, uplink: str, cursor: Sequence[int], id_prefix: str) -> int:
    """Rows whose entity id starts with `id_prefix` that `uplink` still has to deliver (e.g. one station's loans)."""
    total = 0
    for lane in range(_LANES):
        (n,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE lane = ? AND seq > ? AND substr(entity_id, 1, ?) = ? "
            "AND (target IS NULL OR target = ?)",
            (lane, cursor[lane], len(id_prefix), id_prefix, uplink),
        ).fetchone()
        total += n
    return int(total)


_REMOVED_PREFIXES = (_REMOVED_AT, _KEPT_UNTIL)


def configured_cursors(conn: sqlite3.Connection) -> dict[str, list[int]]:
    """read_cursors without the removed uplinks kept for their period: what another process (the web UI) shows
    as the uplinks' backlog. A kept one delivers nothing until it is configured again."""
    kept = {
        name[len(_REMOVED_AT) :]
        for (name,) in conn.execute(
            "SELECT name FROM counters WHERE substr(name, 1, ?) = ?", (len(_REMOVED_AT), _REMOVED_AT)
        )
    }
    return {name: cur for name, cur in read_cursors(conn).items() if name not in kept}


def _pop_removed(counters: Counter[str], keep_ms: int) -> dict[str, tuple[int, int]]:
    """Take what says which uplinks were removed out of `counters`: name -> (removed at, kept until), in ms."""
    at = {k[len(_REMOVED_AT) :]: counters.pop(k) for k in list(counters) if k.startswith(_REMOVED_AT)}
    until = {k[len(_KEPT_UNTIL) :]: counters.pop(k) for k in list(counters) if k.startswith(_KEPT_UNTIL)}
    return {name: (at_ms, until.get(name, at_ms + keep_ms)) for name, at_ms in at.items()}


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class Store:
    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: Path,
        config: BufferConfig,
        uplinks: Sequence[str] | None,
        room: Room | None = None,
        clock: Callable[[], float] = time.time,
        tail_rows: int = TAIL_ROWS,
        tail_bytes: int | None = TAIL_BYTES,
    ) -> None:
        """`uplinks` None means "whatever cursors the file has" (the CLI); otherwise the configured set.

        `tail_rows` bounds the committed readings kept in memory for reading (0: always decode), and
        `tail_bytes` their stored size (None: no byte bound)."""
        self.conn = conn
        # Guards what the event loop reads without going through the writer thread (read_recent):
        # the tail, the cursors and the row totals. The writer thread, the only one changing them,
        # holds it for the in-memory updates after each COMMIT, never across SQL.
        self.lock = threading.Lock()
        self._block = insert_block_rows(conn)
        self.page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        self.path = path
        self.config = config
        self.clock = clock
        self.room = room
        self.rows = [0] * _LANES
        self.bytes = [0] * _LANES
        self.counters: Counter[str] = Counter(dict(conn.execute("SELECT name, value FROM counters").fetchall()))
        reserved_before = self.counters.pop(_RESERVED, 0)
        self._saved_offset = self.counters.pop(_AGE_OFFSET, 0)
        # uplink no longer configured -> (removed at, kept until) in ms: as the file had them at open, and
        # on the age clock in force (see _start_offset)
        self._removed_in_file = _pop_removed(self.counters, config.removed_uplink_keep_days * DAY_MS)
        offset, shift = self._start_offset(conn, clock)
        self.removed = {name: (at + shift, until + shift) for name, (at, until) in self._removed_in_file.items()}
        self.age = AgeClock(clock, offset, _elapsed_clock())
        self._deleted_upto = [0] * _LANES
        self._data_version = self._read_data_version()
        self.load_totals()
        self._last_seq = self._max_seq()  # the newest seq this process knows was assigned
        # Seqs handed out before their commit (the outbox's early delivery): the next one, the highest
        # that may be handed out (reserved in the file), and the lowest not committed yet (None: all are).
        # next_seq and pending_from change under `lock`, by the outbox on the event loop.
        self.next_seq = max(self._last_seq, reserved_before) + 1
        # seqs the last run reserved and did not store (it stopped without closing): never used now
        self.skipped = (self._last_seq + 1, reserved_before) if reserved_before > self._last_seq else None
        self.reserved = 0
        self.pending_from: int | None = None
        self.tail = Tail(tail_rows, self.next_seq - 1, tail_bytes)
        self.uplinks: tuple[str, ...] = ()
        self.cursors: dict[str, list[int]] = {}
        self.kept: dict[str, list[int]] = {}  # cursors of the uplinks in `removed`: nothing reads them
        self.removed_uplinks: list[str] = []  # dropped at this open, their period over (or keep_days 0)
        self.returned: list[str] = []  # configured again within their period, at this open
        # Acknowledgements move the cursors in memory at once and reach the file at the next
        # "settle": folded into an append's transaction once `settle_every_s` has passed since the
        # last, or written by the writer's maintenance (each second) when no append comes. See settle().
        self.settle_every_s = config.ack_write_interval_ms / 1000
        self._settled_at = self.age.now()
        self.unsettled = False  # cursors or lazy counters differ from the file
        self.disk_full = False  # set by the outbox while an insert found no room: acknowledgements free it at once
        self._careful = False  # the disk runs low (see checkpoint_every_commit): acknowledgements are written at once
        self._unsaved: Counter[str] = Counter()  # lazy counter increments not in the file yet
        self._load_cursors(uplinks)

    # --- opening -------------------------------------------------------------------------------

    def _start_offset(self, conn: sqlite3.Connection, clock: Callable[[], float]) -> tuple[int, int]:
        """The age clock's offset at open, and how far the file's removal stamps move to stay on it.

        The file's offset, unless that puts the newest row or removal in the future; an empty outbox
        goes back on the wall clock, and its removal stamps with it."""
        wall_ms = int(clock() * 1000)
        newest = conn.execute(_NEWEST_STAMP).fetchone()
        # No row depends on the offset: back on the wall clock. A removal stamped under the old offset
        # moves by as much, or a period stamped by a box whose clock ran a year ahead lasts a year more.
        offset, shift = (0, -self._saved_offset) if newest is None else (self._saved_offset, 0)
        # a clock behind the newest stamp went back while the gateway was stopped (a reboot without RTC)
        stamps = [at + shift for at, _ in self._removed_in_file.values()]
        if newest is not None:
            stamps.append(int(newest[0]))
        return max([offset, *(at - wall_ms for at in stamps)]), shift

    def load_totals(self) -> tuple[list[int], list[int]]:
        """Recount rows and bytes per lane from the file; returns the change against what we held."""
        rows, nbytes = [0] * _LANES, [0] * _LANES
        for lane, n, b in self.conn.execute("SELECT lane, count(*), coalesce(sum(size), 0) FROM outbox GROUP BY lane"):
            rows[lane], nbytes[lane] = n, b
        delta = ([rows[i] - self.rows[i] for i in range(_LANES)], [nbytes[i] - self.bytes[i] for i in range(_LANES)])
        with self.lock:
            self.rows, self.bytes = rows, nbytes
        return delta

    def _load_cursors(self, uplinks: Sequence[str] | None) -> None:
        stored = read_cursors(self.conn)
        if uplinks is None:
            # a kept removed uplink is not configured: the CLI re-queues nothing for it either
            self.kept = {name: cur for name, cur in stored.items() if name in self.removed}
            self.cursors = {name: cur for name, cur in stored.items() if name not in self.removed}
            self.uplinks = tuple(sorted(self.cursors))
            self._saved_cursors = {name: list(cur) for name, cur in self.cursors.items()}
            return
        self.uplinks = tuple(uplinks)
        now_ms = self.age.now_ms()
        keep_ms = self.config.removed_uplink_keep_days * DAY_MS
        removed: dict[str, tuple[int, int]] = {}
        for name in sorted(set(stored) - set(uplinks)):
            # the removal time is the file's when a start saw it before; the period follows today's setting
            at_ms = self.removed[name][0] if name in self.removed else now_ms
            if keep_ms and now_ms < at_ms + keep_ms:
                removed[name] = (at_ms, at_ms + keep_ms)
            else:
                self.removed_uplinks.append(name)
        self.returned = sorted(set(self.removed) & set(uplinks))
        self.kept = {name: stored[name] for name in removed}
        with self._write() as ch:
            self._drop_uplinks(self.removed_uplinks, ch)
            for name in set(self._removed_in_file) - set(removed):  # configured again, or its cursors gone
                self.conn.executemany("DELETE FROM counters WHERE name = ?", [(k + name,) for k in _REMOVED_PREFIXES])
            for name, (at_ms, until_ms) in removed.items():
                if self._removed_in_file.get(name) != (at_ms, until_ms):
                    self.conn.executemany(_SET_COUNTER, [(_REMOVED_AT + name, at_ms), (_KEPT_UNTIL + name, until_ms)])
            # moved stamps and the offset they are on in one transaction: apart, a crash between
            # them would move the stamps once more at the next start
            self._save_offset(ch)
            for name in self.uplinks:
                if name not in stored:
                    # a new uplink starts at the oldest buffered row: cursor 0 is below every seq
                    stored[name] = [0] * _LANES
                    self.conn.executemany(
                        "INSERT INTO cursors (uplink, lane, seq) VALUES (?, ?, 0)", [(name, i) for i in range(_LANES)]
                    )
            self.cursors = {name: stored[name] for name in self.uplinks}
            self._delete_passed(self.cursors, ch)
        self.removed = removed
        self._saved_cursors = {name: list(cur) for name, cur in self.cursors.items()}

    def _drop_uplinks(self, names: Sequence[str], ch: _Changes) -> None:
        """Forget uplinks no longer configured: their cursors, what says they were removed, rows re-queued for them."""
        for name in names:
            self.conn.execute("DELETE FROM cursors WHERE uplink = ?", (name,))
            self.conn.executemany("DELETE FROM counters WHERE name = ?", [(k + name,) for k in _REMOVED_PREFIXES])
            # rows re-queued for that uplink alone would never be read by anyone again
            for lane, n, b in self.conn.execute(
                "SELECT lane, count(*), coalesce(sum(size), 0) FROM outbox WHERE target = ? GROUP BY lane", (name,)
            ).fetchall():
                ch.released.append((lane, n, b))
            self.conn.execute("DELETE FROM outbox WHERE target = ?", (name,))

    def expire_removed(self) -> list[str]:
        """Drop the kept removed uplinks whose period is over, and the rows only they still needed; their names.

        The writer's maintenance calls it, so that a gateway running for weeks lets them go as a start would."""
        now_ms = self.age.now_ms()
        gone = sorted(name for name, (_, until_ms) in self.removed.items() if until_ms <= now_ms)
        if not gone:
            return []
        kept = self.kept
        # before the transaction: its settle deletes the rows no remaining cursor needs
        self.kept = {name: cur for name, cur in kept.items() if name not in gone}
        try:
            with self._write(settle=self.cursors) as ch:
                self._drop_uplinks(gone, ch)
        except BaseException:
            self.kept = kept
            raise
        self.removed = {name: v for name, v in self.removed.items() if name not in gone}
        return gone

    def kept_rows(self, name: str) -> tuple[int, int]:
        """Rows the kept removed uplink `name` has not delivered, and how many of them no configured uplink
        still needs (`kept_alone`)."""
        return sum(count_pending(self.conn, name, self.kept[name]).values()), self.kept_alone(name)

    def kept_alone(self, name: str) -> int:
        """Rows the kept removed uplink `name` has not delivered that no configured uplink still needs: those stay
        in the buffer for it alone."""
        cur = self.kept[name]
        alone = 0
        for lane in range(_LANES):
            # rows past the lowest configured cursor are wanted by a configured uplink anyway; none configured: all
            upto = min((c[lane] for c in self.cursors.values()), default=self._max_seq())
            (n,) = self.conn.execute(
                "SELECT count(*) FROM outbox WHERE lane = ? AND seq > ? AND (target = ? OR (target IS NULL AND seq <= ?))",
                (lane, cur[lane], name, upto),
            ).fetchone()
            alone += n
        return alone

    def on_wall(self, ms: int) -> datetime:
        """A stamp on the age clock as the wall clock will show it, the offset in force now (UTC)."""
        return _utc(ms - self.age.offset_ms)

    # --- transactions --------------------------------------------------------------------------

    @contextmanager
    def _write(self, *, settle: dict[str, list[int]] | None = None) -> Iterator[_Changes]:
        """One transaction; it also settles (see settle()) with `settle` as the cursors, or when a settle is due."""
        ch = _Changes()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            # before the transaction's own writes: the rows an append brings are not in the table yet
            # when a settle clears it (see _delete_passed), so they are not taken out and put back
            if settle is not None:
                self._settle(settle, ch)
            elif self.settle_due():
                self._settle(self.cursors, ch)
            yield ch
            bump = ch.counters + ch.saved if ch.saved else ch.counters
            if bump:
                self.conn.execute(_bump_sql(len(bump)), list(itertools.chain.from_iterable(bump.items())))
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        # No PRAGMA data_version here: our own commits do not change it, and reading it now would
        # take another process's commit since the last check for our own (changed_elsewhere).
        with self.lock:
            for lane, n, b in ch.released:
                self.rows[lane] -= n
                self.bytes[lane] -= b
                if self.room is not None:
                    self.room.release(lane, n, b)
            for lane, n, b in ch.added:
                self.rows[lane] += n
                self.bytes[lane] += b
            self.counters.update(ch.counters)
            if ch.lazy:
                self.counters.update(ch.lazy)
                self._unsaved.update(ch.lazy)
                self.unsettled = True
            if ch.saved:
                self._unsaved.subtract(ch.saved)
                self._unsaved = +self._unsaved
            for fn in ch.after:
                fn()

    def settle_due(self) -> bool:
        """Whether something is held and `settle_every_s` has passed since the last settle."""
        return self.unsettled and self.age.now() - self._settled_at >= self.settle_every_s

    def settle(self) -> None:
        """Write the cursors moved and the counts made since the last settle, and delete the rows every cursor passed.

        Acknowledgements are not written one by one: each was a transaction of its own, whose pages
        (the cursors, the outbox and index pages of the deleted rows, the counters) went to the -wal
        in whole, at 500 readings/s most of the 9 KB written per reading. Settling at most once per
        `settle_every_s` writes them once for hundreds of readings. What a crash loses is only that
        time's cursor moves: those readings are delivered again (at least once, never lost), and a
        restart's stats miss that time's appended/commits counts.
        """
        if self.unsettled:
            with self._write(settle=self.cursors):
                pass

    def _cursor_limit(self) -> int | None:
        """The highest seq a cursor in the file may pass: rows delivered before their commit are passed
        there only once committed (a crash before would leave a cursor past seqs that get new rows)."""
        pending = self.pending_from
        return None if pending is None else pending - 1

    def _settle(self, cursors: dict[str, list[int]], ch: _Changes) -> None:
        # inside a transaction: the cursors that differ from the file, the deletes they allow, the lazy counts
        ch.settled = True
        with self.lock:
            limit = self._cursor_limit()
            cursors = {
                name: list(cur) if limit is None else [min(c, limit) for c in cur] for name, cur in cursors.items()
            }
        changed = [
            (cur[lane], name, lane)
            for name, cur in cursors.items()
            for lane in range(_LANES)
            if cur[lane] != self._saved_cursors.get(name, _NO_CURSOR)[lane]
        ]
        if changed:
            self.conn.executemany("UPDATE cursors SET seq = ? WHERE uplink = ? AND lane = ?", changed)
        self._delete_passed(cursors, ch)
        ch.saved.update(self._unsaved)
        saved = cursors

        def settled() -> None:
            self._saved_cursors = saved
            self._settled_at = self.age.now()
            self.unsettled = any(self._unsaved.values()) or any(
                self.cursors[name] != saved.get(name) for name in self.cursors
            )

        ch.after.append(settled)

    # --- disk space (see space.py) ---------------------------------------------------------------

    def insert_pages(self, rows: Sequence[Row], nbytes: int) -> int:
        """Pages an insert of `rows` (bodies of `nbytes` in all) may take; per row work, for a disk running low only."""
        entity_bytes = sum(len(row[1]) for row in rows)
        return insert_pages(rows=len(rows), record_bytes=nbytes + entity_bytes, page_size=self.page_size)

    def free_pages(self) -> int:
        """Pages on SQLite's free-list: room inside the file that inserts take before the file grows."""
        return int(self.conn.execute("PRAGMA freelist_count").fetchone()[0])

    def checkpoint_every_commit(self, on: bool) -> None:
        """On a disk running low, keep the -wal one transaction long (1 page) and zero deleted pages;
        otherwise a checkpoint every WAL_BYTES, and deleted pages are left as they are."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {1 if on else wal_pages(self.page_size)}")
        # Debian builds SQLite with SECURE_DELETE: every page a delete frees is zeroed, so each
        # acknowledged row's page went to the -wal (and the file) once more, 40 % of the frames at
        # 5,000 readings/s. FAST zeroes only what is written anyway. On a disk running low the
        # zeroed pages are wanted, though: they grow the -wal while delivery frees room, and new
        # readings then fit in that -wal where the disk has no byte left (tests/buffer/test_full_disk.py).
        self.conn.execute(f"PRAGMA secure_delete = {'ON' if on else 'FAST'}")
        self._careful = on

    def _read_data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def _max_seq(self) -> int:
        return int(self.conn.execute(_MAX_SEQ).fetchone()[0])

    def changed_elsewhere(self) -> bool:
        """True once after another process (the CLI) committed to the file."""
        v = self._read_data_version()
        changed = v != self._data_version
        self._data_version = v
        if changed:
            # it may have added (re-queued) or deleted rows: read everything up to now from the file
            last = self._max_seq()
            with self.lock:
                self._last_seq = last
                self._past(last)
        return changed

    def _past(self, last: int) -> None:
        """Rows up to `last` were written by someone else: read them from the file, and hand out seqs past them."""
        # under the lock; rows handed out before lie below next_seq and are read from the file once committed
        self.next_seq = max(self.next_seq, last + 1)
        self.tail.reset(self.next_seq - 1)

    def reserve_seqs(self) -> None:
        """Reserve seqs for handing out before the commit (the outbox, at open); keep the age clock's offset."""
        with self._write() as ch:
            self._reserve(self.next_seq - 1 + SEQ_RESERVE, ch)
            self._save_offset(ch)

    def release_seqs(self) -> None:
        """At a clean close: keep only the seqs handed out, so the next start goes on from there."""
        with self._write() as ch:
            self._reserve(self.next_seq - 1, ch)
            self._save_offset(ch)

    def restamp(self, step: Step, since_seq: int) -> None:
        """After a step of the wall clock (AgeClock.look): stamp again the stored rows from `since_seq` on
        that were stamped after it, and keep the new offset."""
        carried, bound = step.sql()
        with self._write() as ch:
            self.conn.execute(
                f"UPDATE outbox SET appended_ms = appended_ms - ? WHERE seq >= ? AND {carried}",
                (step.ms, since_seq, bound),
            )
            self._save_offset(ch)

    def _save_offset(self, ch: _Changes) -> None:
        offset = self.age.offset_ms
        if offset == self._saved_offset:
            return
        self.conn.execute(_SET_COUNTER, (_AGE_OFFSET, offset))

        def saved() -> None:
            self._saved_offset = offset

        ch.after.append(saved)

    def _reserve(self, upto: int, ch: _Changes) -> None:
        self.conn.execute(_SET_COUNTER, (_RESERVED, upto))

        def reserved() -> None:
            self.reserved = upto

        ch.after.append(reserved)

    def forget_handed_out(self) -> None:
        """Rows handed out before their commit will not be committed (the commit failed): out of the tail."""
        with self.lock:
            self.tail.reset(self.next_seq - 1)

    # --- appends and caps ----------------------------------------------------------------------

    def insert(
        self,
        rows: Sequence[Row],
        per_lane_rows: Sequence[int],
        per_lane_bytes: Sequence[int],
        readings: Sequence[Reading] | None = None,
        *,
        first_seq: int | None = None,
    ) -> Counter[tuple[int, DropReason]]:
        """Store a group in one transaction, first dropping the oldest droppable rows the caps demand.

        The group's rows are already counted in `room` (the loop reserved them); they are added to
        the committed totals here. `readings`, the rows' Readings in the same order, go to the tail.
        With `first_seq`, the rows were handed out with the seqs first_seq, first_seq + 1, … before
        this commit (the outbox: they are in the tail already) and are stored with them.
        """
        if first_seq is not None and rows:
            return self._insert_at(first_seq, rows, per_lane_rows, per_lane_bytes)
        drops: Counter[tuple[int, DropReason]] = Counter()
        with self._write() as ch:
            self._make_room(sum(per_lane_rows), sum(per_lane_bytes), ch, drops)
            # One writer inside BEGIN IMMEDIATE: AUTOINCREMENT gives the rows consecutive seqs.
            last = _insert_rows(self.conn, rows, self._block) if rows else self._last_seq
            first = last - len(rows) + 1
            # the tail's copies are made now, while the transaction is open, not under the lock
            prepared = (
                self.tail.prepare(first, [row[0] for row in rows], readings, [row[4] for row in rows])
                if readings is not None and len(readings) == len(rows)
                else None
            )
            ch.appended(len(rows), per_lane_rows, per_lane_bytes)

            def remember() -> None:
                if first != self._last_seq + 1:
                    # seqs were taken by another process since our last insert: its rows are not here
                    self.tail.reset(first - 1)
                if prepared is None:
                    self.tail.reset(last)
                else:
                    self.tail.apply(prepared)
                self._last_seq = last
                self.next_seq = max(self.next_seq, last + 1)

            if rows:
                ch.after.append(remember)
        return drops

    def _insert_at(
        self, first: int, rows: Sequence[Row], per_lane_rows: Sequence[int], per_lane_bytes: Sequence[int]
    ) -> Counter[tuple[int, DropReason]]:
        drops: Counter[tuple[int, DropReason]] = Counter()
        last = first + len(rows) - 1
        # a settle this transaction carries comes before the insert: the cursors stop below these rows
        with self._write() as ch:
            self._make_room(sum(per_lane_rows), sum(per_lane_bytes), ch, drops)
            _insert_rows_at(self.conn, first, rows, self._block)
            if self.reserved - self.next_seq < SEQ_RESERVE // 2:
                self._reserve(max(self.next_seq, last + 1) - 1 + SEQ_RESERVE, ch)
            ch.appended(len(rows), per_lane_rows, per_lane_bytes)

            def remember() -> None:
                self._last_seq = max(self._last_seq, last)

            ch.after.append(remember)
        return drops

    def _excess(self, add_rows: int, add_bytes: int, ch: _Changes) -> tuple[int, int, list[int]]:
        """Rows and bytes over the caps once `add_rows`/`add_bytes` are in, and the rows per lane, counting
        what this transaction deleted already (the totals change only after COMMIT)."""
        rows = list(self.rows)
        nbytes = sum(self.bytes)
        for lane, n, b in ch.released:
            rows[lane] -= n
            nbytes -= b
        return sum(rows) + add_rows - self.config.max_rows, nbytes + add_bytes - self.config.max_bytes, rows

    def _make_room(self, add_rows: int, add_bytes: int, ch: _Changes, drops: Counter[tuple[int, DropReason]]) -> None:
        # Drops happen before the insert, from rows already stored, so a new reading is never
        # dropped in the very commit that stores it. The loop's reserve() has checked there is enough.
        cfg = self.config
        need_rows, need_bytes, lane_rows = self._excess(add_rows, add_bytes, ch)
        if (need_rows > 0 or need_bytes > 0) and self.unsettled and not ch.settled:
            # delivered rows still in the file make room before any undelivered one is dropped
            self._settle(self.cursors, ch)
            need_rows, need_bytes, lane_rows = self._excess(add_rows, add_bytes, ch)
        for lane in drop_order(cfg):
            if need_rows <= 0 and need_bytes <= 0:
                break
            lane_i = int(lane)
            last, n, b = 0, 0, 0
            while (need_rows > 0 or need_bytes > 0) and n < lane_rows[lane_i]:
                chunk = self.conn.execute(
                    "SELECT seq, size FROM outbox WHERE lane = ? AND seq > ? ORDER BY seq LIMIT 512", (lane_i, last)
                ).fetchall()
                if not chunk:
                    break
                for seq, size in chunk:
                    reason = DropReason.MAX_ROWS if need_rows > 0 else DropReason.MAX_BYTES
                    drops[(lane_i, reason)] += 1
                    need_rows -= 1
                    need_bytes -= size
                    n += 1
                    b += size
                    last = seq
                    if need_rows <= 0 and need_bytes <= 0:
                        break
            if n:
                self.conn.execute("DELETE FROM outbox WHERE lane = ? AND seq <= ?", (lane_i, last))
                ch.released.append((lane_i, n, b))
                ch.after.append(functools.partial(self.tail.discard, lane_i, last))
        for (lane_i, reason), n in drops.items():
            ch.counters[f"dropped.{lane_name(lane_i)}.{reason.value}"] += n

    def drop_aged(self, now_s: float) -> Counter[tuple[int, DropReason]]:
        """Drop rows appended more than max_age_s before `now_s` (on the age clock: self.age.now()), from the
        lanes the policy may drop; acknowledgements held in memory are settled first (delivered, not dropped)."""
        cutoff = int((now_s - self.config.max_age_s) * 1000)
        drops: Counter[tuple[int, DropReason]] = Counter()
        lanes = []
        for lane in drop_order(self.config):
            oldest = self.conn.execute(
                "SELECT appended_ms FROM outbox WHERE lane = ? ORDER BY seq LIMIT 1", (int(lane),)
            ).fetchone()
            if oldest is not None and oldest[0] < cutoff:
                lanes.append(int(lane))
        if not lanes:
            return drops
        with self._write(settle=self.cursors if self.unsettled else None) as ch:
            for lane_i in lanes:
                last, n, b, done = 0, 0, 0, False
                while not done:
                    chunk = self.conn.execute(
                        "SELECT seq, size, appended_ms FROM outbox WHERE lane = ? AND seq > ? ORDER BY seq LIMIT 512",
                        (lane_i, last),
                    ).fetchall()
                    done = len(chunk) < 512
                    for seq, size, appended in chunk:
                        if appended >= cutoff:
                            done = True
                            break
                        n, b, last = n + 1, b + size, seq
                if n:
                    self.conn.execute("DELETE FROM outbox WHERE lane = ? AND seq <= ?", (lane_i, last))
                    ch.released.append((lane_i, n, b))
                    ch.after.append(functools.partial(self.tail.discard, lane_i, last))
                    drops[(lane_i, DropReason.MAX_AGE)] = n
                    ch.counters[f"dropped.{lane_name(lane_i)}.max_age"] += n
        return drops

    # --- reading and acknowledging -------------------------------------------------------------

    def check_uplink(self, uplink: str) -> None:
        """Raise the "unknown uplink" BufferError unless `uplink` is configured (its message names those that are)."""
        self._cursor(uplink)

    def _cursor(self, uplink: str) -> list[int]:
        try:
            return self.cursors[uplink]
        except KeyError:
            raise BufferError(
                f"buffer: unknown uplink, got {uplink!r}; configured: {', '.join(self.uplinks) or '(none)'}",
                uplink=uplink,
            ) from None

    def read(self, uplink: str, limit: int, after: Sequence[int] | None = None) -> list[Reading]:
        """Up to `limit` readings past the uplink's cursors (or past `after[lane]` where that is further).

        `after` lets a delivery loop read the next batch while the previous one, not yet
        acknowledged, is still being delivered.
        """
        out = self._read(uplink, limit, after, from_file=True)
        assert out is not None  # only a read that may not use the file gives up
        return out

    def read_recent(self, uplink: str, limit: int, after: Sequence[int] | None = None) -> list[Reading] | None:
        """`read` from the tail alone, from any thread; None when a lane's rows are not all in the tail.

        The view is the one between two transactions (the writer updates it under the lock after
        each COMMIT). Rows another process added and this one has not noticed yet come after every
        row here (their seqs are higher), so a batch read from here never lets a cursor pass them.
        """
        with self.lock:
            return self._read(uplink, limit, after, from_file=False)

    def _read(self, uplink: str, limit: int, after: Sequence[int] | None, *, from_file: bool) -> list[Reading] | None:
        """With `from_file`, on the writer thread (taking the lock for the tail); without, under the lock."""
        cur = self._cursor(uplink)
        out: list[Reading] = []
        for lane in range(_LANES):
            left = limit - len(out)
            if left <= 0:
                break
            pos = _read_from(cur, after, lane)
            if from_file:
                with self.lock:
                    got, bound = self._from_tail(lane, pos, left), self._file_bound()
            else:
                got, bound = self._from_tail(lane, pos, left), 0
            if got is not None:
                out.extend(got)
            elif not self.rows[lane]:
                continue
            elif from_file:
                out.extend(
                    [
                        decode_reading(body, seq, entity_id, observed_us)
                        for seq, body, entity_id, observed_us in self.conn.execute(_READ, (lane, pos, uplink, left))
                        if seq < bound
                    ]
                )
            else:
                return None
        return out

    def _from_tail(self, lane: int, pos: int, limit: int) -> list[Reading] | None:
        tail = self.tail
        return tail.take(lane, pos, limit) if tail.covers(lane, pos) else None

    def _file_bound(self) -> int:
        """Rows read from the file stop below this seq (under the lock, before the query): below the
        rows handed out and not committed yet, every row is in the file; above, another process's
        rows (re-queued dead letters) must wait, or a reader would pass the uncommitted rows below them."""
        return self.next_seq if self.pending_from is None else self.pending_from

    def covered(self, uplink: str, after: Sequence[int] | None = None) -> bool:
        """Whether read_recent past `after` would be served (from any thread)."""
        with self.lock:
            cur = self._cursor(uplink)
            return all(
                self.tail.covers(lane, _read_from(cur, after, lane)) for lane in range(_LANES) if self.rows[lane]
            )

    def pending_in_memory(self, uplink: str) -> bool | None:
        """has_pending from the tail alone, from any thread; None when a lane's rows past the cursor are not all there."""
        with self.lock:
            cur = self._cursor(uplink)
            tail = self.tail
            for lane in range(_LANES):
                if tail.covers(lane, cur[lane]):
                    if tail.newest(lane) > cur[lane]:
                        return True
                elif self.rows[lane]:
                    return None
            return False

    def has_pending(self, uplink: str) -> bool:
        cur = self._cursor(uplink)
        for lane in range(_LANES):
            with self.lock:
                covered, newest, bound = self.tail.covers(lane, cur[lane]), self.tail.newest(lane), self._file_bound()
            if covered:
                if newest > cur[lane]:
                    return True
                continue
            row = self.conn.execute(_HAS_SEQ, (lane, cur[lane], uplink)).fetchone()
            if row is not None and row[0] < bound:
                return True
        return False

    def ack_delivered(self, uplink: str, batch: Sequence[Reading]) -> bool:
        """`ack` of a batch all delivered, on the caller's thread (the event loop), when it only moves the
        cursors in memory; False when it needs the writer (a write at once, a reading without seq)."""
        if self.settle_every_s <= 0 or self._tight():
            return False
        with self.lock:
            new = list(self._cursor(uplink))
            for reading in batch:
                seq = reading.seq
                if seq is None:
                    return False  # `ack` names it
                if seq > new[reading.lane]:
                    new[reading.lane] = seq
            if new != self.cursors[uplink]:
                self.cursors[uplink] = new
                self.unsettled = True
        return True

    def ack(self, uplink: str, batch: Sequence[Reading], outcomes: Sequence[Outcome]) -> None:
        """Per lane, move the cursor over the leading run of delivered/rejected rows; dead-letter the rejected."""
        if len(batch) != len(outcomes):
            raise BufferError(
                f"buffer: ack for {uplink} needs one outcome per reading, got {len(outcomes)} outcomes "
                f"for {len(batch)} readings",
                uplink=uplink,
            )
        old = self._cursor(uplink)
        new = list(old)
        dead: list[tuple[str, int, int, str, bytes, str, int]] = []
        now_ms = int(self.clock() * 1000)
        if outcomes.count(DELIVERED) == len(outcomes):
            # the usual batch, all delivered: each lane's cursor goes to its highest seq (this
            # thread's Python competes with the event loop's for the GIL, so the loop is kept short)
            for reading in batch:
                seq = reading.seq
                if seq is None:
                    break  # the full loop below names the reading
                lane = reading.lane
                if seq > new[lane]:
                    new[lane] = seq
            else:
                batch = outcomes = ()  # all done: skip the loop below
        for reading in batch:
            if reading.seq is None:
                raise BufferError(
                    f"buffer: ack for {uplink} got a reading without seq ({reading.entity_id}); "
                    "acknowledge only readings returned by read()",
                    uplink=uplink,
                )
        # later rows of a lane than its first RETRY are read again: duplicates are fine, loss is not
        for i in settled(batch, outcomes):
            reading, outcome = batch[i], outcomes[i]
            lane = reading.lane  # an IntEnum indexes the lists as its number does
            seq = reading.seq
            assert seq is not None  # every reading was checked above
            if seq <= old[lane]:
                continue  # acknowledged before (a batch read twice)
            if seq > new[lane]:
                new[lane] = seq
            if outcome is not DELIVERED and outcome.status is Status.REJECTED:
                dead.append((uplink, seq, lane, reading.entity_id, encode_reading(reading), outcome.reason, now_ms))
        if new == old:
            return
        if not dead and self.settle_every_s > 0 and not self._tight():
            # the usual acknowledgement: in memory now, in the file at the next settle (see settle())
            with self.lock:
                self.cursors[uplink] = new
            self.unsettled = True
            return
        # dead letters are written at once, with every cursor move so far (one transaction)
        cursors = dict(self.cursors)
        cursors[uplink] = new
        with self._write(settle=cursors) as ch:
            if dead:
                self.conn.executemany(
                    "INSERT INTO dead_letters (uplink, seq, lane, entity_id, body, reason, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    dead,
                )
                ch.counters[f"dead_letters.{uplink}"] += len(dead)

            def move() -> None:
                self.cursors[uplink] = new

            ch.after.append(move)

    def _tight(self) -> bool:
        """Whether acknowledged rows must go at once: near the caps (their room is needed, and the caps would
        otherwise drop undelivered rows while delivered ones wait to be deleted), or a disk full or running low."""
        cfg = self.config
        return (
            self._careful
            or self.disk_full
            or sum(self.rows) >= cfg.max_rows * _TIGHT
            or sum(self.bytes) >= cfg.max_bytes * _TIGHT
        )

    def _delete_passed(self, cursors: dict[str, list[int]], ch: _Changes) -> None:
        holding = [*cursors.values(), *self.kept.values()]  # a kept removed uplink's rows stay too
        if not holding:
            return
        uptos = [min(c[lane] for c in holding) for lane in range(_LANES)]
        gone: list[tuple[int, int, int]] = []
        for lane in range(_LANES):
            if uptos[lane] <= self._deleted_upto[lane]:
                continue
            n, b = self.conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE lane = ? AND seq <= ?", (lane, uptos[lane])
            ).fetchone()
            if n:
                gone.append((lane, n, b))

            def mark(lane: int = lane, upto: int = uptos[lane]) -> None:
                self._deleted_upto[lane] = upto
                self.tail.discard(lane, upto)

            ch.after.append(mark)
        deleted = sum(n for _, n, _ in gone)
        kept = self._rows_past(uptos, deleted) if deleted >= _CLEAR_MIN and not self._careful else None
        if kept is not None:
            # Deleting rows one by one rewrites about half the pages they free (each deletion
            # dirties its page, and B-tree balancing moves the rows left onto their neighbours):
            # ~0.2 page frames a reading at 5,000/s, a third of the -wal. A DELETE without WHERE
            # frees the pages without touching them, so when few rows remain they are taken
            # out, the table cleared, and put back with their own seqs, in the same transaction.
            self.conn.execute("DELETE FROM outbox")
            self._put_back(kept)
        else:
            for lane, _, _ in gone:
                self.conn.execute("DELETE FROM outbox WHERE lane = ? AND seq <= ?", (lane, uptos[lane]))
        ch.released.extend(gone)

    def _put_back(self, kept: list[tuple[Any, ...]]) -> None:
        """Insert rows (seq first, then a Row) in seq order, each run of consecutive seqs as multi-row INSERTs:
        appended at the table's end they fill its pages as the appends did (see _insert_rows_at)."""
        kept.sort(key=itemgetter(0))
        at = 0
        while at < len(kept):
            end = at + 1
            while end < len(kept) and kept[end][0] == kept[end - 1][0] + 1:
                end += 1
            _insert_rows_at(self.conn, kept[at][0], [row[1:] for row in kept[at:end]], self._block)
            at = end

    def _rows_past(self, uptos: Sequence[int], deleted: int) -> list[tuple[Any, ...]] | None:
        """Every row past `uptos` (per lane) when they are fewer than _CLEAR_KEEP a deleted row, else None."""
        most = min(int(deleted * _CLEAR_KEEP), _CLEAR_MAX)
        kept: list[tuple[Any, ...]] = []
        for lane in range(_LANES):
            kept.extend(self.conn.execute(_ROWS_PAST, (lane, uptos[lane], most - len(kept) + 1)))
            if len(kept) > most:
                return None
        return kept

    # --- dead letters ----------------------------------------------------------------------------

    def dead_letters(self, uplink: str | None, limit: int, offset: int = 0) -> list[DeadLetter]:
        return read_dead_letters(self.conn, uplink, limit, offset)

    def discard_dead_letters(self, uplink: str | None, ids: Sequence[int]) -> int:
        """Delete the dead letters `ids` (of `uplink` when given) for good; returns how many there were."""
        with self._write():
            cur = self.conn.execute(
                f"DELETE FROM dead_letters {_DEAD_WHERE}",
                (uplink, orjson.dumps([int(i) for i in ids]).decode()),
            )
            return cur.rowcount

    def dead_letter_targets(self, uplink: str | None, ids: Sequence[int] | None) -> list[tuple[int, str]]:
        """(id, uplink) of each dead letter `retry_dead_letters(uplink, ids)` selects, in id order."""
        params = (uplink, None if ids is None else orjson.dumps([int(i) for i in ids]).decode())
        rows = self.conn.execute(f"SELECT id, uplink FROM dead_letters {_DEAD_WHERE} ORDER BY id", params)
        return [(int(i), str(u)) for i, u in rows]

    def retry_dead_letters(self, uplink: str | None, ids: Sequence[int] | None) -> int:
        """Re-queue dead letters for their uplink only (target column) and remove them from the table."""
        where = _DEAD_WHERE
        params = (uplink, None if ids is None else orjson.dumps([int(i) for i in ids]).decode())
        now_ms = self.age.now_ms()
        with self._write() as ch:
            picked = self.conn.execute(
                f"SELECT id, uplink, lane, entity_id, body FROM dead_letters {where} ORDER BY id", params
            ).fetchall()
            if self.cursors and not set(self.cursors) >= {p[1] for p in picked}:
                # only re-queue for uplinks this gateway delivers to; others would never be read
                picked = [p for p in picked if p[1] in self.cursors]
            rows: list[Row] = [
                (lane, entity_id, int(orjson.loads(body)["o"]), now_ms, len(body), body, up)
                for _, up, lane, entity_id, body in picked
            ]
            if rows:
                # past every seq committed, handed out here, or (from another process: the CLI) reserved
                # by the running gateway, which may have delivered rows it has not committed yet
                if self.reserved:
                    top = self._max_seq()
                else:
                    (top,) = self.conn.execute(f"SELECT max(({_MAX_SEQ}), ({_READ_RESERVED}))", (_RESERVED,)).fetchone()
                with self.lock:
                    first = max(int(top) + 1, self.next_seq)
                    # The tail stops holding its lanes whole now, not after the commit: a reading
                    # appended meanwhile gets a seq past these rows, and read from the tail alone it
                    # would move the cursor past them before they are committed (lost for good).
                    self._past(first + len(rows) - 1)
                _insert_rows_at(self.conn, first, rows, self._block)
            self.conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(p[0],) for p in picked])
            for lane, _, _, _, size, _, _ in rows:
                ch.added.append((lane, 1, size))
            if self.room is not None:
                room = self.room

                def count_in() -> None:
                    for lane, _, _, _, size, _, _ in rows:
                        room.adjust(
                            [1 if i == lane else 0 for i in range(_LANES)],
                            [size if i == lane else 0 for i in range(_LANES)],
                        )

                ch.after.append(count_in)
            if rows:
                last = self._max_seq()

                def requeued() -> None:
                    # targeted rows are never in the tail, so it restarts after them
                    self._last_seq = max(self._last_seq, last)
                    self._past(last)

                ch.after.append(requeued)
        return len(rows)

    # --- stats ---------------------------------------------------------------------------------

    def stats(
        self,
        *,
        last_commit_ms: float | None,
        refused_total: int,
        durability: str | None = None,
        disk_full: bool | None = None,
    ) -> BufferStats:
        """`durability` overrides the config's, for a reader (the CLI) that does not know it; so does
        `disk_full`, known only to the gateway's writer."""
        conn = self.conn
        now = self.clock()
        age_now = self.age.now()
        oldest = conn.execute(
            "SELECT observed_us, appended_ms FROM outbox WHERE seq = (SELECT min(seq) FROM outbox)"
        ).fetchone()
        dead = count_dead_letters(conn)
        uplinks = {}
        for name, cur in self.cursors.items():
            pending = count_pending(conn, name, cur)
            uplinks[name] = UplinkCursorStats(
                cursors={lane_name(i): cur[i] for i in range(_LANES)}, pending=pending, dead_letters=dead.get(name, 0)
            )
        kept = {
            name: KeptUplink(
                removed_at=self.on_wall(self.removed[name][0]),
                kept_until=self.on_wall(self.removed[name][1]),
                cursors={lane_name(i): cur[i] for i in range(_LANES)},
                pending=count_pending(conn, name, cur),
                alone=self.kept_alone(name),
            )
            for name, cur in sorted(self.kept.items())
        }
        last_salvage = salvage.read_last(conn)
        try:
            st = os.statvfs(self.path.parent)
            disk_free: int | None = st.f_bavail * st.f_frsize
        except OSError:
            disk_free = None
        try:
            reserve = reserve_path(self.path).stat().st_size
        except OSError:
            reserve = 0
        dropped: dict[str, dict[str, int]] = {}
        for key, value in sorted(self.counters.items()):
            if key.startswith("dropped."):
                _, lane_key, reason = key.split(".", 2)
                dropped.setdefault(lane_key, {})[reason] = value
        return BufferStats(
            path=str(self.path),
            durability=self.config.durability.value if durability is None else durability,
            rows=sum(self.rows),
            bytes=sum(self.bytes),
            rows_per_lane={lane_name(i): self.rows[i] for i in range(_LANES)},
            bytes_per_lane={lane_name(i): self.bytes[i] for i in range(_LANES)},
            oldest_observed_age_s=None if oldest is None else max(0.0, now - oldest[0] / 1e6),
            oldest_appended_age_s=None if oldest is None else max(0.0, age_now - oldest[1] / 1e3),
            uplinks=uplinks,
            dropped=dropped,
            dead_letters=dead,
            appended_total=self.counters["appended"],
            refused_total=refused_total,
            commits_total=self.counters["commits"],
            last_commit_ms=last_commit_ms,
            recovered_from=None if last_salvage is None else last_salvage.moved_to,
            salvage=last_salvage,
            disk_free_bytes=disk_free,
            disk_full=disk_full,
            reserve_bytes=reserve,
            kept_uplinks=kept,
        )


__all__ = [
    "Lane",
    "Row",
    "Store",
    "count_dead_letters",
    "count_pending",
    "lane_name",
    "read_cursors",
    "read_dead_letters",
]
