"""Moves one uplink's share of the buffer to the far side: read a batch, deliver, acknowledge, back off.

Theory of operation. Each uplink has its own loop and its own cursors, so one far side being down
never holds back another. A batch is acknowledged only for what the uplink reports delivered or
rejected; records it says to retry, and the records after them in their lane whatever was said of
them, are read again, from the cursors, after a backoff with jitter. Counters and dead-letter lines
follow the acknowledgement (`store.settled`), so a record is counted once, when it settles.
Two things overlap with the delivery of a batch, and `_Pipeline` keeps both in one place:

- the previous batch's acknowledgement, still being written (it queues behind the buffer's commits;
  awaiting it before the next delivery left the uplink idle for a commit's time per batch), and
- the next batch, read past the one in flight (from the file, when behind: `prefetch`).

Because acknowledgements lag, reads go past `sent` (per lane, the highest seq handed to the uplink
since the cursors were last current), not past the cursors. All three are valid only while every
batch since then settled completely: after a retry, a broken uplink or an idle moment the pipeline
is resynchronised (prefetch dropped, acknowledgement awaited, reads from the cursors again). Acks
apply in order (the buffer runs its calls in order, and each is awaited before the next is sent);
a crash before one is written only means those records are delivered again.

Pacing (for fleets that come back together). A batch is a *catch-up* batch when it is full: at least
as much is waiting as one batch takes (live traffic at the usual rates gives batches of a few rows,
and a backlog smaller than one batch is a single request). Before the first catch-up batch
after start and after an outage (the first delivery that goes through after failures), the loop
waits a random time up to `start_delay_max_s` (default 5 s: a fleet's first requests spread out, an
alert queued behind the backlog barely held back); a box with nothing waiting starts at once. While
catching up, `drain_rate` caps readings/s. Time and randomness are injected, so tests never sleep for real.

States and transitions (UplinkState; `status()` shows the state, one `_Batch` holds a batch's own):

    state        event                                              next state
    STARTING     uplink.start() failed                              BACKING_OFF (retries start())
    any          nothing past the cursors                           IDLE (waits for new rows)
    IDLE         rows arrive                                        SENDING, or WAITING first for a catch-up batch
    WAITING      random start delay / drain_rate pace over          SENDING
    SENDING      every record delivered or dead-lettered            SENDING (next batch)
    SENDING      some records to retry                              BACKING_OFF, or REFUSED for a configuration fault
    BACKING_OFF  next attempt                                       BACKING_OFF (the status keeps saying so)
    BACKING_OFF  a delivery goes through ("recovered")              SENDING
    any          a step raises (a broken uplink, the buffer failing) BACKING_OFF (said once at ERROR)
    any          stop_soon() (the batch in flight is finished)      STOPPED

A batch goes: read (`_Pipeline.next`, maybe lingering for more) → handed out (reads go past it) →
paced → delivered (outcomes, redacted) → acknowledgement started → tallied → backed off if any
record is to be retried.

Logs: a failure once when it starts (WARNING; ERROR when the far side refuses our requests as such, a
configuration problem) and "recovered" once when something is delivered again; each dead letter once
at WARNING with how to re-queue it, at most DEAD_LETTER_LINES per batch and then one summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gateway import redact
from gateway.backoff import Backoff
from gateway.buffer.outbox import Outbox
from gateway.buffer.store import settled
from gateway.diagnostics import DiagnosticsReader
from gateway.fleet.latency import LatencyHistogram
from gateway.logs import StateLog, component_logger
from gateway.records import Lane, Reading
from gateway.uplinks.api import DELIVERED, Fault, Outcome, Status, Uplink, UplinkConfig

_LANES = len(Lane)  # per-lane lists are indexed by Lane's values, 0..len(Lane)-1

DEAD_LETTER_LINES = 10  # dead letters logged one by one per batch; the rest are summed up in one line


class UplinkState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"  # caught up, waiting for new data
    SENDING = "sending"
    WAITING = "waiting"  # the random start delay, or the drain rate's pace
    BACKING_OFF = "backing-off"  # the far side is down or failing: retrying
    REFUSED = "refused"  # the far side refuses our requests as such: retrying until the configuration is fixed
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkStatus:
    name: str
    type: str
    state: UplinkState
    delivered: int
    rejected: int  # dead-lettered since start (`edgegw buffer stats` has the file's total)
    retries: int
    last_error: str
    last_rejection: str  # the far side's reason for the latest dead letter
    last_delivery: float  # wall-clock time, 0 if never
    diagnostics: dict[str, Any] = field(default_factory=dict)  # the uplink's own counters, if it has diagnostics()


def _redacted(outcomes: list[Outcome]) -> list[Outcome]:
    """The outcomes with every reason redacted: a dead letter's reason is stored, shown and exported, and a far
    side may have echoed a token into it (whatever the uplink did about it already)."""
    if outcomes.count(DELIVERED) == len(outcomes):
        return outcomes
    return [o if o is DELIVERED or not o.reason else replace(o, reason=redact.text(o.reason)) for o in outcomes]


def _last_seqs(batch: Sequence[Reading]) -> list[int]:
    """Per lane number, the highest seq in the batch (0 where the batch has none of that lane)."""
    last = [0] * _LANES
    for r in batch:
        lane = int(r.lane)
        if r.seq is not None and r.seq > last[lane]:
            last[lane] = r.seq
    return last


def _first_seq(batch: Sequence[Reading]) -> int:
    """The lowest seq in the batch (lanes are read one after the other, so not always the first's)."""
    return min((r.seq for r in batch if r.seq is not None), default=0)


def _advance(sent: list[int] | None, batch: Sequence[Reading]) -> list[int]:
    """`sent` moved past the batch's seqs, lane by lane."""
    last = _last_seqs(batch)
    return last if sent is None else [max(a, b) for a, b in zip(sent, last, strict=True)]


class _Pipeline:
    """The reads ahead of and the acknowledgement behind the batch being delivered (module docstring)."""

    def __init__(self, outbox: Outbox, name: str, limit: int) -> None:
        self.outbox = outbox
        self.name = name
        self.limit = limit
        self.sent: list[int] | None = None
        self.prefetch: asyncio.Task[list[Reading]] | None = None
        self.acking: asyncio.Future[None] | None = None

    async def next(self) -> list[Reading]:
        """The next batch: the prefetched one, or read past `sent`."""
        if self.prefetch is not None:
            batch, self.prefetch = await self.prefetch, None
            return batch
        return await self.outbox.read(self.name, self.limit, after=self.sent)

    async def more(self, batch: list[Reading], limit: int) -> list[Reading]:
        """Up to `limit` rows past `batch` (a lingering batch filling up)."""
        return await self.outbox.read(self.name, limit, after=_advance(self.sent, batch))

    def handed_out(self, batch: Sequence[Reading]) -> None:
        """`batch` goes to the uplink: read past it from now on, and start reading the next batch now if
        that is a read from the file, or the loop idles for every batch's round trip."""
        self.sent = _advance(self.sent, batch)
        if not self.outbox.in_memory(self.name, self.sent):
            self.prefetch = asyncio.create_task(self.outbox.read(self.name, self.limit, after=self.sent))

    async def acknowledge(self, batch: Sequence[Reading], outcomes: Sequence[Outcome]) -> None:
        """Start writing `batch`'s acknowledgement, once the previous one is written."""
        await self._settle()
        # the usual batch only moves cursors in memory: done now, without a task for the writer's turn
        if not self.outbox.ack_in_memory(self.name, batch, outcomes):
            self.acking = asyncio.ensure_future(self.outbox.ack_written(self.name, batch, outcomes))

    async def resync(self) -> None:
        """Drop the read ahead and wait for the cursors: the next read starts from them again."""
        self._discard()
        await self._settle()
        self.sent = None

    async def close(self) -> None:
        self._discard()
        if self.acking is not None:
            # written even if this task is cancelled: the buffer's thread runs the call regardless
            await asyncio.shield(self.acking)

    def _discard(self) -> None:
        """Drop a prefetch: cancel it, and retrieve whatever it ends with so nothing is logged as unretrieved."""
        if self.prefetch is not None:
            self.prefetch.cancel()
            self.prefetch.add_done_callback(lambda t: t.cancelled() or t.exception())
            self.prefetch = None

    async def _settle(self) -> None:
        if self.acking is not None:
            acking, self.acking = self.acking, None
            await acking


@dataclass(slots=True)
class _Batch:
    """One batch's state through the loop: its readings, the uplink's outcomes and their tally."""

    readings: list[Reading]
    outcomes: list[Outcome] = field(default_factory=list)
    delivered: int = 0
    retry: int = 0  # records not settled: read again from the cursors after a backoff (see store.settled)
    rejected: list[int] = field(default_factory=list)  # indexes of the dead letters


class DeliveryLoop:
    def __init__(
        self,
        uplink: Uplink,
        config: UplinkConfig,
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.uplink = uplink
        self.config = config
        self.outbox = outbox
        self._rng = rng or random.Random()
        self.backoff = Backoff(config.retry_initial_s, config.retry_max_s, rng=self._rng)
        self.log = component_logger(__name__, config.name)
        self._diagnostics = DiagnosticsReader("uplink", uplink, self.log)
        self.state = UplinkState.STARTING
        self.delivered = 0
        self.rejected = 0
        self.retries = 0
        self.last_error = ""
        self.last_rejection = ""
        self.last_delivery = 0.0
        self.latency = LatencyHistogram()  # gateway/fleet: /metrics' delivery latency
        self._clock = clock
        self._sleep = sleep
        self._stopping = asyncio.Event()
        self._failing = StateLog(self.log)  # its state: BACKING_OFF or REFUSED while deliveries fail
        self._spread = True  # the next catch-up batch waits the random start delay
        self._pace_at = 0.0  # (clock) the earliest start of the next catch-up batch under drain_rate

    async def _start_uplink(self) -> bool:
        """Start the uplink, retrying with backoff; False if stop_soon() came first."""
        while not self._stopping.is_set():
            try:
                await self.uplink.start()
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = self.backoff.next()
                self.state = UplinkState.BACKING_OFF
                self.log.warning("uplink cannot start: %s; retrying in %.1f s", self.last_error, delay)
                await self._pause(delay)
        return False

    async def run(self) -> None:
        if not await self._start_uplink():
            return
        self.backoff.reset()
        limit = self.config.batch_max_rows
        linger_s = self.config.batch_linger_ms / 1000
        # Under load, a batch that is not full waits a moment for more rows: each batch costs a round
        # trip and, for the IoT Agent formats, a message per entity, so fuller batches carry more
        # readings per message. "Under load" is a batch of at least 1/16 of the limit: at low rates
        # batches hold a few rows and nothing waits (a threshold on the previous batch instead
        # could get stuck below it under load, every small batch making the next one small).
        linger_from = max(2, limit // 16)
        pipe = _Pipeline(self.outbox, self.config.name, limit)
        try:
            while not self._stopping.is_set():
                try:
                    await self._step(pipe, limit, linger_s, linger_from)
                except Exception as exc:  # one bad step must not end this uplink's deliveries
                    await self._broken(pipe, exc)
        finally:
            self.state = UplinkState.STOPPED
            await pipe.close()

    async def _step(self, pipe: _Pipeline, limit: int, linger_s: float, linger_from: int) -> None:
        """One batch: read (maybe lingering for more), hand out, pace, deliver, acknowledge, tally."""
        rows = await pipe.next()
        if linger_from <= len(rows) < limit and linger_s:
            await asyncio.sleep(linger_s)
            rows += await pipe.more(rows, limit - len(rows))
        elif linger_s and rows and len(rows) < linger_from and self.outbox.wake_pending(_first_seq(rows)):
            # Rows that came in while the previous batch was out, with their wake-up still
            # to come (at most 10 ms after the buffer's last wake-up): wait for it and send
            # one batch, not these now and the next few alone (at 500/s, half the batches).
            # batch_linger_ms = 0 says never to wait for more rows: then they go at once.
            await self.outbox.woken()
            rows += await pipe.more(rows, limit - len(rows))
        if not rows:
            self.state = UplinkState.IDLE
            self._spread = False  # nothing was waiting: no fleet to spread out
            await pipe.resync()  # the cursors are current once the last ack is written
            if not self._stopping.is_set():  # stop_soon() nudges the wait to end it
                await self.outbox.wait(self.config.name, timeout=1.0)
            return
        batch = _Batch(rows)
        pipe.handed_out(rows)
        await self._pace(len(rows), catching_up=len(rows) >= limit)
        if self._stopping.is_set():
            return  # not delivered, not acknowledged: read again at the next start
        # while failing, the status keeps saying so through each new attempt
        self.state = self._failing_state() or UplinkState.SENDING
        outcomes = await self.uplink.deliver(rows)
        if len(outcomes) != len(rows):
            # a broken uplink must not move cursors over records it did not account for
            self.log.error("uplink returned %d outcomes for %d records; retrying the batch", len(outcomes), len(rows))
            await pipe.resync()
            await self._pause(self.backoff.next())
            return
        batch.outcomes = _redacted(outcomes)
        await pipe.acknowledge(rows, batch.outcomes)
        self._tally(batch)
        if batch.retry:
            # the records after the first retry are read again from the cursors, once they moved
            await pipe.resync()
            await self._back_off(batch)
            return
        if self._failing.failing:
            if not batch.delivered:
                return  # all dead letters: the far side answers, but nothing went through yet
            self._failing.ok("delivery recovered after %d attempts", self.backoff.attempts)
            self.state = UplinkState.SENDING
            self._spread = True  # an outage ended: what waited is drained after a random delay
        self.backoff.reset()

    async def _broken(self, pipe: _Pipeline, exc: Exception) -> None:
        """A step failed in a way no contract allows (an uplink that raised instead of saying RETRY, the
        buffer failing a read): said once a spell at ERROR, and the batch is read again after a backoff,
        where the loop's task would otherwise end, the uplink stopped for good with nothing logged."""
        self.last_error = f"{type(exc).__name__}: {exc}"
        delay = self.backoff.next()
        self.retries += 1
        self._failing.fail(
            ("broken", type(exc).__name__),
            logging.ERROR,
            "delivery failed unexpectedly: %s; retrying in %.1f s",
            self.last_error,
            delay,
            exc_info=True,
        )
        self.state = UplinkState.BACKING_OFF
        with contextlib.suppress(Exception):  # the buffer failing again: the next step says so
            await pipe.resync()
        await self._pause(delay)

    def _tally(self, batch: _Batch) -> None:
        """Count what the batch's acknowledgement settles into it and the loop's counters; log the dead letters."""
        outcomes = batch.outcomes
        if outcomes.count(DELIVERED) == len(outcomes):
            # the usual batch: counted in C (identity first) instead of a status test per record
            batch.delivered = len(outcomes)
            self.delivered += len(outcomes)
            self.last_delivery = now = time.time()
            if outcomes:
                self.latency.observe(now - batch.readings[-1].observed_at.timestamp(), len(outcomes))
            return
        for outcome in outcomes:
            if outcome is not DELIVERED and outcome.status is Status.RETRY:
                self.last_error = outcome.reason or self.last_error
        # Only what the acknowledgement settles counts: a lane's records after its first RETRY are read
        # and sent again, and counted (a dead letter written, and said) when they settle, once.
        done = settled(batch.readings, outcomes)
        batch.retry = len(outcomes) - len(done)
        for i in done:
            if outcomes[i].status is Status.REJECTED:
                batch.rejected.append(i)
        batch.delivered = len(done) - len(batch.rejected)
        self.delivered += batch.delivered
        if batch.delivered:
            self.last_delivery = time.time()
            self.latency.observe(self.last_delivery - batch.readings[-1].observed_at.timestamp(), batch.delivered)
        if batch.rejected:
            self._dead_letters(batch)

    def _dead_letters(self, batch: _Batch) -> None:
        name = self.config.name
        rejected, outcomes = batch.rejected, batch.outcomes
        self.rejected += len(rejected)
        self.last_rejection = outcomes[rejected[-1]].reason
        for i in rejected[:DEAD_LETTER_LINES]:
            self.log.warning(
                "dead-lettered %s: %s; once the cause is fixed: edgegw buffer retry-dead-letters --uplink %s",
                batch.readings[i].entity_id,
                outcomes[i].reason,
                name,
            )
        if len(rejected) > DEAD_LETTER_LINES:
            self.log.warning(
                "dead-lettered %d more readings of this batch (%d in all); see edgegw buffer dead-letters --uplink %s",
                len(rejected) - DEAD_LETTER_LINES,
                len(rejected),
                name,
            )

    async def _back_off(self, batch: _Batch) -> None:
        self.retries += 1
        retry, total = batch.retry, len(batch.readings)
        refused = any(o.fault is Fault.CONFIGURATION for o in batch.outcomes if o.status is Status.RETRY)
        state = UplinkState.REFUSED if refused else UplinkState.BACKING_OFF
        if refused:
            self._failing.fail(
                state,
                logging.ERROR,
                "delivery refused (%d of %d records to retry): %s; nothing is "
                "dead-lettered until the configuration is fixed",
                retry,
                total,
                self.last_error,
            )
        else:
            self._failing.fail(
                state,
                logging.WARNING,
                "delivery failing (%d of %d records to retry): %s; backing off",
                retry,
                total,
                self.last_error,
            )
        self.state = state
        delay = self.backoff.next()
        if not refused and all(o.fault is Fault.UNREACHABLE for o in batch.outcomes if o.status is Status.RETRY):
            # Nothing reached the far side: a probe costs it nothing, so try again within probe_s
            # (jittered, so a fleet does not probe in step) instead of backing off to retry_max_s;
            # once it answers, the random start delay and drain_rate spread the catch-up.
            delay = min(delay, self._rng.uniform(0.5, 1.0) * self.config.probe_s)
        # a far side that said how long it needs (Retry-After with a 429 or 503) gets at least that
        asked = max((o.retry_after_s for o in batch.outcomes if o.status is Status.RETRY), default=0.0)
        await self._pause(max(delay, asked))

    def _failing_state(self) -> UplinkState | None:
        state = self._failing.state
        return state if isinstance(state, UplinkState) else None

    async def _pace(self, n: int, *, catching_up: bool) -> None:
        """The random start delay and the drain rate, for catch-up batches only."""
        if not catching_up:
            self._spread = False  # live traffic: nothing piled up that a fleet would send at once
            return
        if self._spread:
            self._spread = False
            delay = self._rng.uniform(0, self.config.start_delay_s)
            if delay > 0:
                self.state = UplinkState.WAITING
                self.log.info(
                    "a backlog is waiting: draining it in %.1f s (random, up to start_delay_max_s = %g), "
                    "so gateways that came back together do not all send at once",
                    delay,
                    self.config.start_delay_s,
                )
                await self._pause(delay)
        rate = self.config.drain_rate
        if rate is not None:
            wait = self._pace_at - self._clock()
            if wait > 0:
                self.state = UplinkState.WAITING
                await self._pause(wait)
            self._pace_at = max(self._pace_at, self._clock()) + n / rate

    async def _pause(self, seconds: float) -> None:
        """Sleep (the injected way), cut short by stop_soon()."""
        await self._until_stopped(lambda: self._sleep(seconds))

    async def _until_stopped(self, waiting: Callable[[], Awaitable[object]]) -> None:
        """Wait for what `waiting()` starts, or for stop_soon(), whichever comes first."""
        if self._stopping.is_set():
            return
        waiter = asyncio.ensure_future(waiting())
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                waiter.result()  # what it failed with, if it failed
        finally:
            waiter.cancel()
            stopper.cancel()

    def stop_soon(self) -> None:
        """Finish the batch in flight, then return from run()."""
        self._stopping.set()
        self.outbox.nudge(self.config.name)

    def status(self) -> UplinkStatus:
        return UplinkStatus(
            name=self.config.name,
            type=self.config.type,
            state=self.state,
            delivered=self.delivered,
            rejected=self.rejected,
            retries=self.retries,
            last_error=self.last_error,
            last_rejection=self.last_rejection,
            last_delivery=self.last_delivery,
            diagnostics=self._diagnostics.read(),
        )
