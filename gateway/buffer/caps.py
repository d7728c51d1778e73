"""The cap policy: which lanes may be dropped, and the cheap in-memory room check done on every append."""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence

from gateway.buffer.config import AlertDropPolicy, BufferConfig
from gateway.errors import BufferFull
from gateway.records import Lane

LANES = (Lane.ALERT, Lane.NORMAL, Lane.BULK)


class DropReason(enum.Enum):
    MAX_ROWS = "max_rows"
    MAX_BYTES = "max_bytes"
    MAX_AGE = "max_age"


def drop_order(config: BufferConfig) -> tuple[Lane, ...]:
    """Lanes the cap policy may drop from, in the order it drops them (oldest rows first in each)."""
    if config.drop_alert is AlertDropPolicy.OLDEST:
        return (Lane.BULK, Lane.NORMAL, Lane.ALERT)
    return (Lane.BULK, Lane.NORMAL)


class Room:
    """Rows and bytes per lane, committed plus queued, shared by the event loop and the writer thread.

    The loop reserves room before it queues a group; the writer thread releases what it deletes
    (acknowledged rows, cap drops) and what a failed commit did not store.
    """

    def __init__(self, config: BufferConfig, rows: Sequence[int], nbytes: Sequence[int]) -> None:
        self._config = config
        self._droppable = tuple(int(lane) for lane in drop_order(config))
        self._lock = threading.Lock()
        self.rows = list(rows)
        self.bytes = list(nbytes)

    def reserve(self, rows: Sequence[int], nbytes: Sequence[int]) -> None:
        """Count a group in, or raise BufferFull if even dropping every droppable row leaves no room."""
        cfg = self._config
        with self._lock:
            excess_rows = sum(self.rows) + sum(rows) - cfg.max_rows
            excess_bytes = sum(self.bytes) + sum(nbytes) - cfg.max_bytes
            if excess_rows > 0 or excess_bytes > 0:
                drop_rows = sum(self.rows[i] for i in self._droppable)
                drop_bytes = sum(self.bytes[i] for i in self._droppable)
                if drop_rows < excess_rows or drop_bytes < excess_bytes:
                    raise self._full(sum(self.rows), sum(self.bytes))
            for i in range(3):
                self.rows[i] += rows[i]
                self.bytes[i] += nbytes[i]

    def release(self, lane: int, rows: int, nbytes: int) -> None:
        with self._lock:
            self.rows[lane] -= rows
            self.bytes[lane] -= nbytes

    def adjust(self, rows: Sequence[int], nbytes: Sequence[int]) -> None:
        """Add signed per-lane deltas (rows written by another process, e.g. the CLI re-queueing)."""
        with self._lock:
            for i in range(3):
                self.rows[i] += rows[i]
                self.bytes[i] += nbytes[i]

    def _full(self, rows: int, nbytes: int) -> BufferFull:
        cfg = self._config
        why = (
            'the rest are alert rows, which drop_alert = "never" keeps'
            if cfg.drop_alert is AlertDropPolicy.NEVER
            else "the new readings alone exceed the caps"
        )
        return BufferFull(
            f"buffer: full, got {rows} rows / {nbytes} bytes against max_rows = {cfg.max_rows}, "
            f"max_bytes = {cfg.max_bytes} and nothing left to drop ({why}); check that the uplinks "
            "deliver (edgegw buffer stats), or raise [buffer] max_rows / max_bytes",
            rows=rows,
            bytes=nbytes,
        )
