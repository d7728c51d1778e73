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


def _discard(task: asyncio.Task[list[Reading]]) -> None:
    """Drop a prefetch: cancel it, and retrieve whatever it ends with so nothing is logged as unretrieved."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return None


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
        name = self.config.name
        prefetch: asyncio.Task[list[Reading]] | None = None
        try:
            while not self._stopping:
                if prefetch is not None:
                    batch = await prefetch
                    prefetch = None
                else:
                    batch = await self.outbox.read(name, limit)
                if not batch:
                    self.state = UplinkState.IDLE
                    await self.outbox.wait(name, timeout=1.0)
                    continue
                self.state = UplinkState.SENDING
                # Read (and decode) the next batch while this one waits for the far side's answer:
                # otherwise the loop idles for every batch's round trip. It reads past this batch's
                # seqs, not past the cursors, and is used only if this batch moves the cursors over
                # every record; cursors still move only over delivered records, in order.
                prefetch = asyncio.create_task(self.outbox.read(name, limit, after=_last_seqs(batch)))
                outcomes = await self.uplink.deliver(batch)
                if len(outcomes) != len(batch):
                    # a broken uplink must not move cursors over records it did not account for
                    self.log.error("uplink returned %d outcomes for %d records; retrying the batch",
                                   len(outcomes), len(batch))
                    _discard(prefetch)
                    prefetch = None
                    await asyncio.sleep(self.backoff.next())
                    continue
                await self.outbox.ack(name, batch, outcomes)
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
                    # the records after the first retry are read again from the cursors
                    _discard(prefetch)
                    prefetch = None
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
            if prefetch is not None:
                _discard(prefetch)

    def stop_soon(self) -> None:
        """Finish the batch in flight, then return from run()."""
        self._stopping = True

    def status(self) -> UplinkStatus:
        return UplinkStatus(name=self.config.name, type=self.config.type, state=self.state,
                            delivered=self.delivered, rejected=self.rejected, retries=self.retries,
                            last_error=self.last_error, last_delivery=self.last_delivery)
