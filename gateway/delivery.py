"""Moves one uplink's share of the buffer to the far side: read a batch, deliver, acknowledge, back off.

Each uplink has its own loop and its own cursors, so one far side being down never holds back
another. A batch is acknowledged only for what the uplink reports delivered or rejected; records
it says to retry are read again after a backoff with jitter. While a batch is with the far side,
the next one is read (prefetched) past it; that read is dropped unless the whole batch settled.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.backoff import Backoff
from gateway.buffer.outbox import Outbox
from gateway.logs import component_logger
from gateway.records import Reading
from gateway.uplinks.api import DELIVERED, Status, Uplink, UplinkConfig


class UplinkState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"  # caught up, waiting for new data
    SENDING = "sending"
    BACKING_OFF = "backing-off"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkStatus:
    name: str
    type: str
    state: UplinkState
    delivered: int
    rejected: int
    retries: int
    last_error: str
    last_delivery: float  # wall-clock time, 0 if never


def _last_seqs(batch: Sequence[Reading]) -> list[int]:
    """Per lane number, the highest seq in the batch (0 where the batch has none of that lane)."""
    last = [0, 0, 0]
    for r in batch:
        lane = int(r.lane)
        if r.seq is not None and r.seq > last[lane]:
            last[lane] = r.seq
    return last


def _advance(sent: list[int] | None, batch: Sequence[Reading]) -> list[int]:
    """`sent` moved past the batch's seqs, lane by lane."""
    last = _last_seqs(batch)
    return last if sent is None else [max(a, b) for a, b in zip(sent, last)]


def _discard(task: asyncio.Task[list[Reading]] | None) -> None:
    """Drop a prefetch: cancel it, and retrieve whatever it ends with so nothing is logged as unretrieved."""
    if task is not None:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _settle(acking: asyncio.Future[None] | None) -> None:
    """Wait for an acknowledgement being written (the cursors are current afterwards)."""
    if acking is not None:
        await acking


class DeliveryLoop:
    def __init__(self, uplink: Uplink, config: UplinkConfig, outbox: Outbox) -> None:
        self.uplink = uplink
        self.config = config
        self.outbox = outbox
        self.backoff = Backoff(config.retry_initial_s, config.retry_max_s)
        self.log = component_logger(__name__, config.name)
        self.state = UplinkState.STARTING
        self.delivered = 0
        self.rejected = 0
        self.retries = 0
        self.last_error = ""
        self.last_delivery = 0.0
        self._stopping = False
        self._failing = False

    async def _start_uplink(self) -> None:
        while True:
            try:
                await self.uplink.start()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = self.backoff.next()
                self.state = UplinkState.BACKING_OFF
                self.log.warning("uplink cannot start: %s; retrying in %.1f s", self.last_error, delay)
                await asyncio.sleep(delay)

    async def run(self) -> None:
        await self._start_uplink()
        self.backoff.reset()
        limit = self.config.batch_max_rows
        linger_s = self.config.batch_linger_ms / 1000
        name = self.config.name
        outbox = self.outbox
        prefetch: asyncio.Task[list[Reading]] | None = None
        # Per lane, the highest seq handed to the uplink since the cursors were last current: reads
        # go past it, since the cursors lag behind by the acknowledgement being written (below).
        sent: list[int] | None = None
        # The previous batch's acknowledgement, still being written while this batch is delivered:
        # it queues behind the buffer's commits, and awaiting it before the next delivery left the
        # uplink idle for a commit's time per batch. Acks still apply in order (the buffer runs its
        # calls in order, and each ack is awaited before the next is sent), and a crash before one is
        # written only means those records are delivered again.
        acking: asyncio.Future[None] | None = None
        # Under load, a batch that is not full waits a moment for more rows: each batch costs a round
        # trip and, for the IoT Agent formats, a message per entity, so fuller batches carry more
        # readings per message. "Under load" is a batch of at least 1/16 of the limit: at low rates
        # batches hold a few rows and nothing waits (a threshold on the previous batch instead
        # could get stuck below it under load, every small batch making the next one small).
        linger_from = max(2, limit // 16)
        try:
            while not self._stopping:
                if prefetch is not None:
                    batch = await prefetch
                    prefetch = None
                else:
                    batch = await outbox.read(name, limit, after=sent)
                if linger_from <= len(batch) < limit and linger_s:
                    await asyncio.sleep(linger_s)
                    batch += await outbox.read(name, limit - len(batch), after=_advance(sent, batch))
                if not batch:
                    self.state = UplinkState.IDLE
                    # the cursors are current once the last ack is written: reads start from them again
                    await _settle(acking)
                    acking, sent = None, None
                    await outbox.wait(name, timeout=1.0)
                    continue
                self.state = UplinkState.SENDING
                sent = _advance(sent, batch)
                if not outbox.in_memory(name, sent):
                    # A backlog: the next batch is decoded from the file. Read it while this one is
                    # with the far side, or the loop idles for every batch's round trip. It is used
                    # only if this batch settles completely; cursors move only over delivered records.
                    prefetch = asyncio.create_task(outbox.read(name, limit, after=sent))
                outcomes = await self.uplink.deliver(batch)
                if len(outcomes) != len(batch):
                    # a broken uplink must not move cursors over records it did not account for
                    self.log.error("uplink returned %d outcomes for %d records; retrying the batch",
                                   len(outcomes), len(batch))
                    _discard(prefetch)
                    await _settle(acking)
                    prefetch, acking, sent = None, None, None
                    await asyncio.sleep(self.backoff.next())
                    continue
                await _settle(acking)
                acking = asyncio.ensure_future(outbox.ack(name, batch, outcomes))
                retry = 0
                if outcomes.count(DELIVERED) == len(outcomes):
                    # the usual batch: counted in C (identity first) instead of a status test per record
                    self.delivered += len(outcomes)
                else:
                    for outcome in outcomes:
                        if outcome.status is Status.DELIVERED:
                            self.delivered += 1
                        elif outcome.status is Status.REJECTED:
                            self.rejected += 1
                        else:
                            retry += 1
                            self.last_error = outcome.reason or self.last_error
                if retry < len(batch):
                    self.last_delivery = time.time()
                if retry:
                    # the records after the first retry are read again from the cursors, once they moved
                    _discard(prefetch)
                    await _settle(acking)
                    prefetch, acking, sent = None, None, None
                    self.retries += 1
                    delay = self.backoff.next()
                    if not self._failing:
                        self._failing = True
                        self.log.warning("delivery failing (%d of %d records to retry): %s; backing off",
                                         retry, len(batch), self.last_error)
                    self.state = UplinkState.BACKING_OFF
                    await asyncio.sleep(delay)
                else:
                    if self._failing:
                        self._failing = False
                        self.log.info("delivery recovered after %d attempts", self.backoff.attempts)
                    self.backoff.reset()
        finally:
            _discard(prefetch)
            if acking is not None:
                # written even if this task is cancelled: the buffer's thread runs the call regardless
                await asyncio.shield(acking)

    def stop_soon(self) -> None:
        """Finish the batch in flight, then return from run()."""
        self._stopping = True

    def status(self) -> UplinkStatus:
        return UplinkStatus(name=self.config.name, type=self.config.type, state=self.state,
                            delivered=self.delivered, rejected=self.rejected, retries=self.retries,
                            last_error=self.last_error, last_delivery=self.last_delivery)
