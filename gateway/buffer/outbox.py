"""The asyncio face of the durable outbox: group commit on one writer thread, reads, acks, waits.

Invariants the rest of the gateway relies on:
- Every SQLite call runs on the outbox's own thread; the event loop only encodes readings, checks
  the caps in memory and waits on futures (one per commit group, not per reading).
- An append's awaitable resolves only after the COMMIT holding it returned (fsynced with
  durability "full"), so a source may acknowledge its device then.
- Delivery does not wait for that COMMIT: an append takes its seq at once (on the loop) and the row
  is served to the uplinks from memory right away, so a group may gather rows for tens of
  milliseconds (fewer bytes written a reading) without adding that time to the delivery. What keeps
  this safe (store.py): a cursor is written to the file only up to rows already committed, so a
  crash before the COMMIT leaves the file as if those rows never came (their devices were not
  acknowledged and send them again: a duplicate at the far side, never a loss); the seqs that may
  be handed out are reserved in the file beforehand, so none is ever used for two readings (not
  after a crash, not by the CLI re-queueing dead letters meanwhile); rows another process writes
  are read only once every row handed out before them is committed. A group whose COMMIT fails
  (disk full) was maybe delivered though its devices are refused; they send it again.
- Order per entity: an entity always lives in one lane (adapters set the lane per entity, never
  per reading), rows of a lane are read in seq order and a cursor never passes a row that has to be
  retried. So each uplink sees an entity's readings in the order they were appended, at least once.
  A dead letter re-queued by a technician gets a new seq and so comes after newer readings.
- Reads of rows committed moments ago are served from memory (the store's tail, see tail.py), the
  same Readings a decode of the file would give; older rows are decoded from the file.
- A full disk refuses new readings (BufferFull, like the caps) and never stops delivery: the
  writer keeps the disk's last megabyte for acknowledgements and a reserve file for the worst
  case (see space.py); an acknowledgement that still finds no room waits until there is.
- A step of the wall clock (NTP correcting a box that booted without RTC) never ages a row: rows
  are stamped on the store's AgeClock, whose offset the writer adjusts when it sees a step (each
  second and before stats; see store.py). Rows are stamped under the condition the writer
  holds while it does so, and the rows stamped after the step and before it saw it are stamped again.
- An uplink the configuration no longer names keeps its cursors and backlog for [buffer]
  removed_uplink_keep_days (see store.py), said at every open (WARNING); configured again within
  that period it goes on from its cursors, after it its cursors go as at a start, also while running.
- Cap drops are said once when an episode starts, naming every lane and cap involved (WARNING),
  again when it reaches a lane it had not named (INFO), and once when it ends (INFO).
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from gateway.buffer.caps import DropReason, Room, drop_order
from gateway.buffer.config import BufferConfig
from gateway.buffer.schema import open_database
from gateway.buffer.space import Space, is_disk_full, mib, shortfall, with_room
from gateway.buffer.stats import BufferStats, DeadLetter
from gateway.buffer.store import TAIL_ROWS, Row, Store, lane_name
from gateway.errors import BufferError, BufferFull
from gateway.logs import component_logger
from gateway.records import Lane, Reading, encode_row, to_epoch_us
from gateway.uplinks.api import DELIVERED, Outcome

_LANES = len(Lane)  # per-lane lists are indexed by Lane's values, 0..len(Lane)-1

log = component_logger(__name__, "buffer")

T = TypeVar("T")

_MAINTENANCE_S = 1.0  # how often the writer looks for other processes' writes (the CLI) and at the free space
_AGE_CHECK_S = 60.0
_ACK_RETRY_S = 1.0  # an acknowledgement that found the disk full is tried again after this long
_ROOM_AGAIN = 256 * 1024  # room (free disk beyond what is kept, and free pages) that ends a disk-full episode
# Uplinks waiting for rows are woken at most once this long, not per append: at 500 readings/s that is
# a batch of a few readings instead of a delivery per reading. The first append after a quieter spell
# wakes them at once (the end of the loop turn it came in). A delivery loop that finds a few rows right
# after a batch waits for their wake-up too (wake_pending/woken).
_HANDED_OUT_WAKE_S = 0.010


class _CommitFuture(asyncio.Future[None]):
    """A commit group's future, awaited by every appender of the group.

    Cancelling one waiting appender must not cancel the commit for all the others, so cancel()
    refuses; the cancelled task then stops as soon as the group is committed.
    """

    def cancel(self, msg: Any = None) -> bool:
        return False


@dataclass(slots=True)
class _Group:
    future: _CommitFuture
    first_seq: int  # the rows' seqs are first_seq, first_seq + 1, … (handed out at append)
    deadline: float
    quiet_at: float  # committed once nothing more arrived until then, however far the deadline is
    rows: list[Row] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)  # the rows' Readings, for the store's tail
    lane_rows: list[int] = field(default_factory=lambda: [0] * _LANES)
    lane_bytes: list[int] = field(default_factory=lambda: [0] * _LANES)
    sealed: bool = False


class Outbox:
    def __init__(
        self,
        *,
        path: Path,
        config: BufferConfig,
        store: Store,
        room: Room,
        space: Space,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._path = path
        self._config = config
        self._store = store
        self._room = room
        self._space = space
        self._loop = loop
        self._cond = threading.Condition()
        self._groups: collections.deque[_Group] = collections.deque()
        self._open: _Group | None = None
        self._calls: collections.deque[tuple[Callable[[], Any], asyncio.Future[Any], bool]] = collections.deque()
        self._closing = False
        self._closed = False
        self._interval = config.commit_interval_ms / 1000
        # A group waits for more rows only while they keep coming: a lone reading (a scan, an alert, a
        # gauge every minute) is committed after the quiet time instead of the whole window, while at
        # hundreds a second, where gaps that long are rare, groups still fill the window (flash wear).
        self._quiet = min(config.commit_quiet_ms, config.commit_interval_ms) / 1000
        self._max_rows = config.commit_max_rows
        # per uplink, the future its `wait` is parked on (None while it is not waiting)
        self._waiters: dict[str, asyncio.Future[bool] | None] = dict.fromkeys(store.uplinks)
        self._wake_waiters: list[asyncio.Future[None]] = []  # `woken()` futures for the pending wake-up
        self._refused_total = 0
        self._refused_episode = 0  # loop side: readings refused since caps left no room; 0 = accepting
        self._dropping: collections.Counter[tuple[int, DropReason]] | None = (
            None  # thread side: drops of the current cap episode
        )
        self._last_commit_ms: float | None = None
        self._waking = False  # a wake-up of the uplinks for appended rows is scheduled
        self._last_wake = -_HANDED_OUT_WAKE_S  # loop time of the last one
        self._woken_through = 0  # the last seq handed out when that wake-up last came
        self._disk_full = False  # writer side: an insert was refused for want of disk space, and no clear room since
        self._disk_refused = 0  # writer side: readings refused since then
        self._looked_seq = store.next_seq  # writer side: rows from this seq on were stamped since the last clock look
        self._thread = threading.Thread(target=self._run, name=f"outbox:{path.name}", daemon=True)

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        config: BufferConfig,
        uplinks: Sequence[str],
        *,
        clock: Callable[[], float] = time.time,
        max_page_count: int | None = None,
        tail_rows: int = TAIL_ROWS,
    ) -> Outbox:
        """Open or create the outbox at `path` for the configured uplinks and start its writer thread.

        `clock` gives wall time in seconds. Tests move it to age rows: between close and open (time
        the gateway was stopped), or by less than store.STEP_S while open; a larger move while open,
        once the writer looks, is a step of the clock and ages nothing (see store.py). `max_page_count` caps the
        file in pages: an appliance may keep the buffer off the last free megabytes with it, and
        the tests use it to make the disk "full". `tail_rows` bounds the committed readings kept in
        memory for reads (see tail.py); the tests make it small to exercise its bound.
        """
        loop = asyncio.get_running_loop()
        space = Space(path, config.reserve_bytes)

        def make_room() -> bool:
            return space.release("opening the buffer")

        def opening() -> Outbox:
            opened = open_database(
                path, durability=config.durability, max_page_count=max_page_count, make_room=make_room
            )

            def load() -> tuple[Store, collections.Counter[tuple[int, DropReason]]]:
                # cursors of new uplinks, rows passed by all, aged rows: the writes an open may have to make
                store = Store(opened.conn, path=path, config=config, uplinks=uplinks, clock=clock, tail_rows=tail_rows)
                aged = store.drop_aged(store.age.now())
                store.reserve_seqs()
                return store, aged

            try:
                store, aged = with_room(make_room, load)
                room = Room(config, store.rows, store.bytes)
                store.room = room
                for name in store.removed_uplinks:
                    _say_dropped(name)
                for name in store.kept:
                    _say_kept(name, store, config)
                for name in store.returned:
                    log.info("buffer: uplink %s is configured again; it goes on from its cursors", name)
                space.look()
                store.checkpoint_every_commit(space.careful)
            except BaseException:
                opened.conn.close()
                raise
            box = cls(path=path, config=config, store=store, room=room, space=space, loop=loop)
            if aged:
                box._note_drops(aged)
            return box

        try:
            box: Outbox = await asyncio.to_thread(opening)
        except sqlite3.Error as exc:
            raise BufferError(f"buffer: cannot open {path}, got {exc}", path=str(path)) from exc
        box._thread.start()
        log.info(
            "buffer: opened %s (%d rows, durability %s, uplinks %s, %s free)",
            path,
            sum(box._store.rows),
            config.durability.value,
            ", ".join(box._store.uplinks),
            mib(space.free),
        )
        if box._store.skipped is not None:
            log.info(
                "buffer: seqs %d-%d were reserved by the last run and not stored (it was not closed); "
                "numbering goes on after them",
                *box._store.skipped,
            )
        if space.careful:
            box._log_careful()
        return box

    async def __aenter__(self) -> Outbox:
        """`async with await Outbox.open(…) as outbox:` closes it on the way out (open is a coroutine that
        starts the writer thread, so the opened outbox is the context manager)."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Commit everything queued, then stop the writer thread and close the file."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            if self._open is not None:
                self._open.sealed = True
                self._open = None
            self._closing = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)
        log.info("buffer: closed %s", self._path)

    # --- appends (loop side) -------------------------------------------------------------------

    def append(self, reading: Reading) -> Awaitable[None]:
        """Queue one reading; the awaitable resolves once it is committed. Raises BufferFull now if caps leave no room."""
        # Adapters emit one reading at a time, so this is append_many for one reading without its
        # per-call lists and loops: at 50,000 readings/s those were ~3 µs a reading (measured).
        if self._closed:
            raise BufferError("buffer: closed, got an append of 1 readings", path=str(self._path))
        body = encode_row(reading)
        lane = int(reading.lane)
        size = len(body)
        try:
            self._room.reserve_one(lane, size)
        except BufferFull:
            self._refused(1)
            raise
        if self._refused_episode:
            self._accepting()
        observed_us = to_epoch_us(reading.observed_at)
        store = self._store
        age = store.age
        with self._cond:
            # stamped under the condition: a clock step the writer takes out (_look_at_clock) is before or after
            row = (lane, reading.entity_id, observed_us, int(age.wall() * 1000) + age.offset_ms, size, body, None)
            with store.lock:
                seq = store.next_seq
                store.next_seq = seq + 1
                if store.pending_from is None:
                    store.pending_from = seq
                store.tail.expose(lane, seq, reading if seq <= store.reserved else None, size)
            group = self._open
            if group is None or len(group.rows) >= self._max_rows or group.first_seq + len(group.rows) != seq:
                group = self._new_group(seq)
            group.quiet_at = time.monotonic() + self._quiet
            group.rows.append(row)
            group.readings.append(reading)
            group.lane_rows[lane] += 1
            group.lane_bytes[lane] += size
            if len(group.rows) >= self._max_rows:
                group.sealed = True
                self._open = None
                self._cond.notify()
        self._deliver_soon()
        return group.future

    def _deliver_soon(self) -> None:
        """Wake the uplinks for rows just handed out, once per _HANDED_OUT_WAKE_S however many come."""
        if not self._waking:
            self._waking = True
            loop = self._loop
            wait = self._last_wake + _HANDED_OUT_WAKE_S - loop.time()
            if wait > 0:
                loop.call_later(wait, self._woken)
            else:
                # A burst (the messages of one MQTT socket read, a poll of several registers) is
                # appended in one loop turn: the uplinks wake after it, in the same turn, not 10 ms later.
                loop.call_soon(self._woken)

    def _woken(self) -> None:
        self._last_wake = self._loop.time()
        self._waking = False
        self._woken_through = self._store.next_seq - 1
        waiters, self._wake_waiters = self._wake_waiters, []
        for fut in waiters:
            _set_result(fut, None)
        self._wake()

    def seal(self) -> None:
        """End the open commit group now, so it commits as soon as the writer is free.

        For an appender that will append nothing more until this group is committed (an MQTT
        source whose receive window is full: the broker sends the next message only after a
        PUBACK, and the PUBACK waits for this commit); waiting out the group's quiet time or
        deadline would only stall it. Rows of other appenders in the group commit earlier too.
        """
        with self._cond:
            if self._open is not None:
                self._open.sealed = True
                self._open = None
                self._cond.notify()

    def _refused(self, n: int) -> None:
        self._refused_total += n
        if not self._refused_episode:
            log.warning("buffer: refusing new readings: caps reached and nothing left to drop")
        self._refused_episode += n

    def _accepting(self) -> None:
        log.info("buffer: accepting readings again (%d refused meanwhile)", self._refused_episode)
        self._refused_episode = 0

    def append_many(self, readings: Sequence[Reading]) -> Awaitable[None]:
        if len(readings) == 1:
            # a burst of one is what a source at everyday rates sends (a message a reading at 500/s):
            # append() skips the per-call lists, 3.9 instead of 5.8-11 µs (bench loop, warm)
            return self.append(readings[0])
        if self._closed:
            raise BufferError(f"buffer: closed, got an append of {len(readings)} readings", path=str(self._path))
        age = self._store.age
        offset = age.offset_ms
        now_ms = int(age.wall() * 1000) + offset
        rows: list[Row] = []
        lane_rows = [0] * _LANES
        lane_bytes = [0] * _LANES
        readings = list(readings)
        for r in readings:
            body = encode_row(r)
            lane = int(r.lane)
            rows.append((lane, r.entity_id, to_epoch_us(r.observed_at), now_ms, len(body), body, None))
            lane_rows[lane] += 1
            lane_bytes[lane] += len(body)
        if not rows:
            done = self._loop.create_future()
            done.set_result(None)
            return done
        try:
            self._room.reserve(lane_rows, lane_bytes)
        except BufferFull:
            self._refused(len(rows))
            raise
        if self._refused_episode:
            self._accepting()
        store = self._store
        with self._cond:
            if age.offset_ms != offset:
                # the writer took a clock step out meanwhile (_look_at_clock): stamp on the new offset
                now_ms = int(age.wall() * 1000) + age.offset_ms
                rows = [(*row[:3], now_ms, *row[4:]) for row in rows]
            with store.lock:
                first = store.next_seq
                store.next_seq = first + len(rows)
                if store.pending_from is None:
                    store.pending_from = first
                reserved, expose = store.reserved, store.tail.expose
                for k, r in enumerate(readings):
                    expose(rows[k][0], first + k, r if first + k <= reserved else None, rows[k][4])
            self._deliver_soon()
            if len(rows) <= self._max_rows:
                return self._queue(rows, readings, lane_rows, lane_bytes, first)
            futures = []
            for i in range(0, len(rows), self._max_rows):
                part = rows[i : i + self._max_rows]
                pr, pb = [0] * _LANES, [0] * _LANES
                for row in part:
                    pr[row[0]] += 1
                    pb[row[0]] += row[4]
                futures.append(self._queue(part, readings[i : i + self._max_rows], pr, pb, first + i))
        # a future, not a coroutine: a caller that never awaits it gets no "never awaited" warning
        return cast(Awaitable[None], asyncio.gather(*futures))

    def _new_group(self, first_seq: int) -> _Group:
        # called with self._cond held: seal the open group (if any) and open a new one
        if self._open is not None:
            self._open.sealed = True
        now = time.monotonic()
        group = _Group(
            future=_CommitFuture(loop=self._loop),
            first_seq=first_seq,
            deadline=now + self._interval,
            quiet_at=now + self._quiet,
        )
        self._groups.append(group)
        self._open = group
        self._cond.notify()
        return group

    def _queue(
        self, rows: list[Row], readings: list[Reading], lane_rows: list[int], lane_bytes: list[int], first_seq: int
    ) -> _CommitFuture:
        # called with self._cond held; the rows have the seqs first_seq, first_seq + 1, …
        group = self._open
        if (
            group is None
            or len(group.rows) + len(rows) > self._max_rows
            or group.first_seq + len(group.rows) != first_seq
        ):
            group = self._new_group(first_seq)
        group.quiet_at = time.monotonic() + self._quiet
        group.rows.extend(rows)
        group.readings.extend(readings)
        for i in range(_LANES):
            group.lane_rows[i] += lane_rows[i]
            group.lane_bytes[i] += lane_bytes[i]
        if len(group.rows) >= self._max_rows:
            group.sealed = True
            self._open = None
            self._cond.notify()
        return group.future

    # --- the other operations (run on the writer thread) ----------------------------------------

    def _call(self, fn: Callable[[], T], *, sync: bool = True) -> asyncio.Future[T]:
        """Run `fn` on the writer thread; with `sync`, after picking up other processes' writes."""
        if self._closed:
            raise BufferError("buffer: closed, got a call after close()", path=str(self._path))
        fut: asyncio.Future[T] = self._loop.create_future()
        with self._cond:
            self._calls.append((fn, fut, sync))
            self._cond.notify()
        return fut

    async def read(self, uplink: str, limit: int, after: Sequence[int] | None = None) -> list[Reading]:
        """Up to `limit` readings past the uplink's cursors: alert, then normal, then bulk, seq order in each.

        `after` (indexed by lane number) reads past those seqs where they are beyond the cursors: the
        batch after one that is being delivered and not yet acknowledged.
        """
        if self._closed:
            raise BufferError("buffer: closed, got a read after close()", path=str(self._path))
        # An uplink that keeps up reads rows committed moments ago: served from the tail here, on
        # the loop, instead of queueing behind the writer thread's commits and acks.
        recent = self._store.read_recent(uplink, limit, after)
        if recent is not None:
            return recent
        return await self._call(lambda: self._store.read(uplink, limit, after))

    def in_memory(self, uplink: str, after: Sequence[int] | None = None) -> bool:
        """Whether a read past `after` (see read) is served from memory, without waiting for the writer."""
        return self._store.covered(uplink, after)

    def ack_in_memory(self, uplink: str, batch: Sequence[Reading], outcomes: Sequence[Outcome]) -> bool:
        """`ack` done at once, when it only moves the cursors in memory (the usual batch, all delivered);
        False when it needs the writer thread: then call `ack`."""
        # on the loop, not handed to the writer thread and back (two thread wake-ups a batch)
        return (
            not self._closed
            and len(batch) == len(outcomes) == outcomes.count(DELIVERED)
            and self._store.ack_delivered(uplink, batch)
        )

    async def ack(self, uplink: str, batch: Sequence[Reading], outcomes: Sequence[Outcome]) -> None:
        """Move the uplink's cursors over what was delivered or rejected; on a full disk, wait until it can be written."""
        if not self.ack_in_memory(uplink, batch, outcomes):
            await self.ack_written(uplink, batch, outcomes)

    async def ack_written(self, uplink: str, batch: Sequence[Reading], outcomes: Sequence[Outcome]) -> None:
        """`ack` by the writer thread, for a batch `ack_in_memory` has refused (rejections, a full disk)."""
        # no look for other processes' writes first: acks are the hot path, and the writer looks
        # at least once a second anyway (see _run)
        waiting = False
        while True:
            try:
                await self._call(self._delivering(lambda: self._store.ack(uplink, batch, outcomes)), sync=False)
            except BufferFull as exc:
                # Giving up would stop the uplink's delivery loop for good; the records stay unacknowledged
                # meanwhile (at-least-once: they may be delivered again), and nothing new is stored anyway.
                if self._closed:
                    raise
                if not waiting:
                    waiting = True
                    log.error(
                        "buffer: disk full in %s, cannot record what %s delivered, got %s; free space there "
                        "(trying again every %.0f s)",
                        self._path.parent,
                        uplink,
                        exc.params.get("got"),
                        _ACK_RETRY_S,
                    )
                await asyncio.sleep(_ACK_RETRY_S)
                continue
            if waiting:
                log.info("buffer: recording what %s delivers again", uplink)
            return

    async def wait(self, uplink: str, timeout: float) -> bool:
        """True as soon as rows past the uplink's cursors exist (woken by commits and appends), False
        after `timeout` or at a `nudge`."""
        if uplink not in self._waiters:
            self._store.check_uplink(uplink)
            raise AssertionError("unreachable: an uplink without a wake-up is not configured")
        deadline = self._loop.time() + timeout
        while True:
            # A bare future and a timer, not an Event under wait_for (a task each time): an idle uplink
            # at 500 readings/s waits here about a hundred times a second.
            woken = self._waiters[uplink] = self._loop.create_future()
            # An uplink that keeps up is answered from the tail on the loop: asking the writer thread
            # cost two thread hand-offs each time the loop went idle, several times a second at 500/s.
            pending = self._store.pending_in_memory(uplink)
            if pending is None:
                pending = await self._call(lambda: self._store.has_pending(uplink))
            if pending:
                return True
            left = deadline - self._loop.time()
            if left <= 0:
                return False
            timer = self._loop.call_later(left, _set_result, woken, False)
            try:
                if not await woken:
                    return False
            finally:
                timer.cancel()
                if self._waiters[uplink] is woken:
                    self._waiters[uplink] = None

    def nudge(self, uplink: str) -> None:
        """End the uplink's `wait` now, returning False as after its timeout (a delivery loop told to stop)."""
        waiter = self._waiters.get(uplink)
        if waiter is not None:
            self._waiters[uplink] = None
            _set_result(waiter, False)

    def wake_pending(self, seq: int) -> bool:
        """Whether the row `seq` was appended after the uplinks' last wake-up for appended rows, so
        one is still to come for it (within _HANDED_OUT_WAKE_S of the first such row): a delivery
        loop with a small batch of such rows may wait for it (`woken`) and send one batch where it
        would send two. A row that was woken for already never waits for a second wake-up."""
        return self._waking and seq > self._woken_through

    def woken(self) -> asyncio.Future[None]:
        """Done at the next wake-up of the uplinks for appended rows (at once if none is pending)."""
        fut: asyncio.Future[None] = self._loop.create_future()
        if self._waking:
            self._wake_waiters.append(fut)
        else:
            fut.set_result(None)
        return fut

    async def stats(self) -> BufferStats:
        def settled_stats() -> BufferStats:
            # rows and cursors as the file has them: acknowledgements held in memory are written first,
            # and ages on a clock that has seen the latest step
            self._look_at_clock()
            self._settle()
            return self._store.stats(
                last_commit_ms=self._last_commit_ms,
                refused_total=self._refused_total,
                disk_full=self._disk_full,
            )

        return await self._call(settled_stats)

    async def dead_letters(self, uplink: str | None = None, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """The dead letters of `uplink` (all with None); an uplink not configured is refused, as retry and
        discard refuse it: a misspelt name answered with none would read as "nothing failed"."""
        if uplink is not None:
            self._store.check_uplink(uplink)
        return await self._call(lambda: self._store.dead_letters(uplink, limit, offset))

    async def discard_dead_letters(self, uplink: str | None, ids: Sequence[int]) -> int:
        """Delete dead letters for good (an operator decided they are not worth sending); returns how many."""
        if uplink is not None:
            self._store.check_uplink(uplink)
        n = await self._call(lambda: self._store.discard_dead_letters(uplink, ids))
        if n:
            log.info("buffer: discarded %d dead letters%s", n, f" of {uplink}" if uplink else "")
        return n

    async def retry_dead_letters(self, uplink: str | None = None, ids: Sequence[int] | None = None) -> int:
        """Re-queue dead letters for their own uplink only; returns how many were re-queued."""
        if uplink is not None:
            self._store.check_uplink(uplink)
        n = await self._call(lambda: self._store.retry_dead_letters(uplink, ids))
        if n:
            log.info("buffer: re-queued %d dead letters%s", n, f" for {uplink}" if uplink else "")
            self._wake()
        return n

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        next_maintenance = time.monotonic() + _MAINTENANCE_S
        next_age = time.monotonic() + _AGE_CHECK_S
        committed_last = False
        try:
            while True:
                groups: list[_Group] = []
                call: tuple[Callable[[], Any], asyncio.Future[Any], bool] | None = None
                with self._cond:
                    while True:
                        now = time.monotonic()
                        # maintenance first when due: a busy gateway always has a group or a call
                        # waiting, and other processes' writes must still be noticed within a second
                        if now >= next_maintenance:
                            break
                        # Commits and calls take turns when both wait: a source faster than the
                        # disk always has a group ready, and must not starve the uplinks' reads
                        # and acks (nor they its commits).
                        if self._calls and committed_last:
                            call = self._calls.popleft()
                            break
                        if self._groups:
                            head = self._groups[0]
                            if head.sealed or self._closing or now >= min(head.deadline, head.quiet_at):
                                groups = self._take_groups()
                                break
                        if self._calls:
                            call = self._calls.popleft()
                            break
                        if self._closing:
                            self._settle()
                            self._release_seqs()
                            return
                        wake = next_maintenance
                        if self._groups:
                            wake = min(wake, self._groups[0].deadline, self._groups[0].quiet_at)
                        self._cond.wait(max(0.0, wake - now))
                committed_last = bool(groups)
                if groups:
                    self._commit(groups)
                elif call is not None:
                    self._run_call(*call)
                else:
                    now = time.monotonic()
                    next_maintenance = now + _MAINTENANCE_S
                    self._maintain(age=now >= next_age)
                    if now >= next_age:
                        next_age = now + _AGE_CHECK_S
        except BaseException as exc:
            # a bug, not a database error (those are handled per commit): never leave appenders hanging
            log.critical("buffer: writer thread stopped: %r; the gateway must restart", exc, exc_info=True)
            self._fail_pending(BufferError(f"buffer: writer thread stopped, got {exc!r}; restart the gateway"))
        finally:
            self._store.conn.close()

    def _fail_pending(self, error: BufferError) -> None:
        self._closed = True  # later appends fail at once instead of waiting for a thread that is gone
        with self._cond:
            self._closing = True
            groups, self._groups, self._open = list(self._groups), collections.deque(), None
            calls, self._calls = list(self._calls), collections.deque()
        for g in groups:
            self._to_loop(_set_exception, g.future, error)
        for _, fut, _ in calls:
            self._to_loop(_set_exception, fut, error)

    def _take_groups(self) -> list[_Group]:
        # called with self._cond held: groups queued while the previous commit ran share one transaction
        taken = [self._groups.popleft()]
        total = len(taken[0].rows)
        while (
            self._groups
            and total + len(self._groups[0].rows) <= self._max_rows
            and self._groups[0].first_seq == taken[0].first_seq + total  # one run of seqs
        ):
            total += len(self._groups[0].rows)
            taken.append(self._groups.popleft())
        if self._open in taken:
            self._open = None
        return taken

    def _commit(self, groups: list[_Group]) -> None:
        if len(groups) == 1:
            g = groups[0]
            rows, readings, lane_rows, lane_bytes = g.rows, g.readings, g.lane_rows, g.lane_bytes
        else:
            rows = [row for g in groups for row in g.rows]
            readings = [r for g in groups for r in g.readings]
            lane_rows = [sum(g.lane_rows[i] for g in groups) for i in range(_LANES)]
            lane_bytes = [sum(g.lane_bytes[i] for g in groups) for i in range(_LANES)]
        started = time.perf_counter()
        error: BaseException | None = None
        drops = None
        nbytes = sum(lane_bytes)
        space = self._space
        try:
            if space.careful:
                error = self._no_room(rows, nbytes)
            if error is None:
                drops = self._store.insert(rows, lane_rows, lane_bytes, readings, first_seq=groups[0].first_seq)
        except sqlite3.Error as exc:
            error = self._commit_error(exc, len(rows))
            if isinstance(error, BufferFull) and self._store.unsettled:
                # acknowledged rows not deleted yet hold pages the insert may take: delete them, try once more
                self._settle()
                try:
                    drops = self._store.insert(rows, lane_rows, lane_bytes, readings, first_seq=groups[0].first_seq)
                    error = None
                except sqlite3.Error as again:
                    error = self._commit_error(again, len(rows))
        if error is not None:
            # handed out (maybe delivered) and never stored: the device was not acknowledged and sends
            # them again, so the far side may see them twice; the tail must not serve them any more
            self._store.forget_handed_out()
        with self._cond:
            store = self._store
            with store.lock:
                # the oldest rows handed out and not committed now start the next group, if any
                store.pending_from = self._groups[0].first_seq if self._groups else None
        if error is not None:
            for i in range(_LANES):
                self._room.release(i, lane_rows[i], lane_bytes[i])
            if isinstance(error, BufferFull):
                self._disk_refusing(len(rows), error)
        elif self._disk_full and self._room_again():
            log.info(
                "buffer: disk has room again in %s; accepting readings (%d refused meanwhile)",
                self._path.parent,
                self._disk_refused,
            )
            self._disk_full = False
            self._store.disk_full = False
        if not space.careful and space.spend(nbytes):
            self._look()
        self._last_commit_ms = (time.perf_counter() - started) * 1000
        if drops is not None:
            self._note_drops(drops)
        futures = [g.future for g in groups]
        self._to_loop(self._committed, futures, error, len(rows))

    # --- disk space (writer thread; see space.py) ------------------------------------------------

    def _no_room(self, rows: list[Row], nbytes: int) -> BufferFull | None:
        """With the disk running low: BufferFull unless the insert leaves the room kept for delivery."""
        space, store = self._space, self._store
        free = space.free_bytes()
        missing = shortfall(
            pages=store.insert_pages(rows, nbytes),
            free_pages=store.free_pages(),
            page_size=store.page_size,
            wal_bytes=space.wal_bytes(),
            free_bytes=free,
            keep=space.keep(),
        )
        if not missing:
            return None
        got = f"{free} bytes free in {self._path.parent} and {space.keep()} kept for delivery"
        return BufferFull(
            f"buffer: disk full while committing {len(rows)} readings, got {got}; "
            f"free space in {self._path.parent}, appends work again once there is room",
            path=str(self._path),
            rows=len(rows),
            got=got,
        )

    def _disk_refusing(self, n: int, error: BufferFull) -> None:
        if not self._disk_full:
            self._disk_full = True
            self._store.disk_full = True
            self._disk_refused = 0
            log.error(
                "buffer: disk full in %s: refusing new readings until there is room, got %s; delivery goes on",
                self._path.parent,
                error.params.get("got"),
            )
        self._disk_refused += n

    def _room_again(self) -> bool:
        """After an insert while refusing: whether there is clearly room again, not just for one small group.

        Near the limit a small group fits where a large one did not; saying "room again" then would
        flip the log between the two states with every group.
        """
        space, store = self._space, self._store
        if not space.careful:
            return True
        room = space.free_bytes() - space.keep() + store.free_pages() * store.page_size
        return room >= _ROOM_AGAIN

    def _look(self) -> None:
        space = self._space
        if not space.look():
            return
        self._store.checkpoint_every_commit(space.careful)
        if space.careful:
            self._log_careful()
        else:
            log.info(
                "buffer: %s free in %s again; commits are no longer checked one by one",
                mib(space.free),
                self._path.parent,
            )

    def _log_careful(self) -> None:
        log.warning(
            "buffer: disk nearly full: %s free in %s; each commit is now checked, and new readings are "
            "refused once %s is left (kept for delivery); free space, or lower [buffer] max_bytes",
            mib(self._space.free),
            self._path.parent,
            mib(self._space.keep()),
        )

    def _delivering(self, fn: Callable[[], T]) -> Callable[[], T]:
        """`fn` (a write delivery needs), tried once more after deleting the reserve file if the disk was full."""

        def run() -> T:
            try:
                return fn()
            except sqlite3.Error as exc:
                if not is_disk_full(exc) or not self._space.release("delivery"):
                    raise
            return fn()

        return run

    def _commit_error(self, exc: sqlite3.Error, n: int) -> BaseException:
        what = f"committing {n} readings" if n else "writing"
        if is_disk_full(exc):
            # said once per episode by _disk_refusing (appends) or ack (deliveries), not per commit
            self._look()
            got = f"{exc!r} on {self._path}"
            return BufferFull(
                f"buffer: disk full while {what}, got {got}; "
                f"free space in {self._path.parent}, appends work again once there is room",
                path=str(self._path),
                rows=n,
                got=got,
            )
        log.error("buffer: %s failed: %s", what, exc)
        return BufferError(f"buffer: {what} failed, got {exc!r} on {self._path}", path=str(self._path))

    def _committed(self, futures: list[_CommitFuture], error: BaseException | None, n: int) -> None:
        # on the loop
        if isinstance(error, BufferFull):
            self._refused_total += n
        for fut in futures:
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)
        if error is None:
            self._wake()

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            # the event loop is gone without close(): nobody waits any more; store what is queued and stop
            with self._cond:
                self._closing = True

    def _wake(self) -> None:
        waiters = self._waiters
        for name, waiter in waiters.items():
            if waiter is not None:
                waiters[name] = None
                _set_result(waiter, True)

    def _run_call(self, fn: Callable[[], Any], fut: asyncio.Future[Any], sync: bool) -> None:
        try:
            if sync:
                self._sync_external()
            result = fn()
        except sqlite3.Error as exc:
            self._to_loop(_set_exception, fut, self._commit_error(exc, 0))
        except BaseException as exc:  # handed to the awaiting coroutine, never lost on this thread
            self._to_loop(_set_exception, fut, exc)
        else:
            self._to_loop(_set_result, fut, result)

    def _sync_external(self) -> None:
        if self._store.changed_elsewhere():
            # another process (the CLI re-queueing dead letters) wrote rows: recount, let the uplinks look
            self._room.adjust(*self._store.load_totals())
            self._to_loop(self._wake)

    def _settle(self, *, due_only: bool = False) -> None:
        """Write the acknowledgements held in memory (see Store.settle); with `due_only`, only once due."""
        if not (self._store.settle_due() if due_only else self._store.unsettled):
            return
        try:
            self._delivering(self._store.settle)()
        except sqlite3.Error as exc:
            # kept in memory and tried again at the next settle; a crash meanwhile means duplicates only
            self._commit_error(exc, 0)

    def _release_seqs(self) -> None:
        try:
            self._store.release_seqs()
        except sqlite3.Error as exc:
            # the next start skips the seqs reserved, that is all
            log.warning("buffer: could not write the last seq handed out: %s", exc)

    def _look_at_clock(self) -> None:
        """Take a step of the wall clock out of the rows' ages (store.AgeClock); writer thread."""
        store = self._store
        with self._cond:  # the loop stamps rows under it: none is stamped across the offset's change
            step = store.age.look()
            since, self._looked_seq = self._looked_seq, store.next_seq
            if step is None:
                return
            for group in self._groups:
                rows = group.rows
                for k in range(max(0, since - group.first_seq), len(rows)):
                    row = rows[k]
                    if step.carried(row[3]):
                        rows[k] = (*row[:3], row[3] - step.ms, *row[4:])
        log.info(
            "buffer: the wall clock stepped %s by %.0f s (%.1f d); buffered readings keep their ages",
            "forward" if step.ms > 0 else "back",
            abs(step.ms) / 1000,
            abs(step.ms) / 86_400_000,
        )
        try:
            self._delivering(lambda: store.restamp(step, since))()
        except sqlite3.Error as exc:
            # the offset holds in memory and is written at close; only rows stamped in the last second keep the step
            log.error("buffer: could not write the clock step to %s: %s", self._path, exc)

    def _maintain(self, *, age: bool) -> None:
        self._look_at_clock()
        self._settle(due_only=True)  # when no append came to carry them
        try:
            self._look()
            self._sync_external()
            for name in self._delivering(self._store.expire_removed)():
                _say_dropped(name)
            if age:
                drops = self._delivering(lambda: self._store.drop_aged(self._store.age.now()))()
                if drops:
                    self._note_drops(drops)
        except sqlite3.Error as exc:
            log.error("buffer: maintenance failed: %s", exc)

    def _note_drops(self, drops: collections.Counter[tuple[int, DropReason]]) -> None:
        """Log a cap episode once when it starts (every lane and cap of its first drops), when it reaches a
        lane not named yet, and once when a commit needs no drop any more."""
        if drops:
            order = [int(lane) for lane in drop_order(self._config)]
            lanes = sorted({lane for lane, _ in drops}, key=order.index)
            if self._dropping is None:
                self._dropping = collections.Counter()
                reasons = [r for r in DropReason if any(reason is r for _, reason in drops)]
                log.warning(
                    "buffer: cap %s reached, dropping the oldest %s rows (policy: bulk, then normal%s)",
                    _and([r.value for r in reasons]),
                    _and([lane_name(lane) for lane in lanes]),
                    ", then alert" if self._config.drop_alert.value == "oldest" else "; alert never",
                )
            else:
                named = {lane for lane, _ in self._dropping}
                if new := [lane for lane in lanes if lane not in named]:
                    log.info(
                        "buffer: caps still reached, now dropping the oldest %s rows too",
                        _and([lane_name(lane) for lane in new]),
                    )
            self._dropping.update(drops)
        elif self._dropping is not None:
            summary = ", ".join(
                f"{n} {lane_name(lane)} ({reason.value})"
                for (lane, reason), n in sorted(self._dropping.items(), key=str)
            )
            log.info("buffer: back under the caps; dropped %s in that episode", summary)
            self._dropping = None


def _say_dropped(name: str) -> None:
    log.warning("buffer: uplink %s is no longer configured; dropped its cursors", name)


def _say_kept(name: str, store: Store, config: BufferConfig) -> None:
    """At every open, once per kept removed uplink: a technician reading the log learns what waits for it."""
    # Its cursors hold every row appended from now on too: a count of what is there now alone read as
    # "keeping nothing" while it held each new reading for a week.
    rows, alone = store.kept_rows(name)
    log.warning(
        "buffer: uplink %s is no longer configured; until %s UTC ([buffer] removed_uplink_keep_days = %d) the buffer "
        "keeps the %d rows it has not delivered (%d of them for it alone: every configured uplink has delivered them) "
        "and every row appended until then; configure it again before then to deliver them",
        name,
        store.on_wall(store.removed[name][1]).strftime("%Y-%m-%d %H:%M"),
        config.removed_uplink_keep_days,
        rows,
        alone,
    )


def _and(names: Sequence[str]) -> str:
    """Names as one phrase for a log line: "bulk", "bulk and normal", "bulk, normal and alert"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
