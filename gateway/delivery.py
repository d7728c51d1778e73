"""Moves one uplink's share of the buffer to the far side: read a batch, deliver, acknowledge, back off.

Each uplink has its own loop and its own cursors, so one far side being down never holds back
another. A batch is acknowledged only for what the uplink reports delivered or rejected; records
it says to retry are read again after a backoff with jitter.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass

from gateway.backoff import Backoff
from gateway.buffer.outbox import Outbox
from gateway.logs import component_logger
from gateway.uplinks.api import Status, Uplink, UplinkConfig


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
        while not self._stopping:
            batch = await self.outbox.read(self.config.name, limit)
            if not batch:
                self.state = UplinkState.IDLE
                await self.outbox.wait(self.config.name, timeout=1.0)
                continue
            self.state = UplinkState.SENDING
            outcomes = await self.uplink.deliver(batch)
            if len(outcomes) != len(batch):
                # a broken uplink must not move cursors over records it did not account for
                self.log.error("uplink returned %d outcomes for %d records; retrying the batch",
                               len(outcomes), len(batch))
                await asyncio.sleep(self.backoff.next())
                continue
            await self.outbox.ack(self.config.name, batch, outcomes)
            retry = 0
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

    def stop_soon(self) -> None:
        """Finish the batch in flight, then return from run()."""
        self._stopping = True

    def status(self) -> UplinkStatus:
        return UplinkStatus(name=self.config.name, type=self.config.type, state=self.state,
                            delivered=self.delivered, rejected=self.rejected, retries=self.retries,
                            last_error=self.last_error, last_delivery=self.last_delivery)
