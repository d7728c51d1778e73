"""The syslog receiver's GatewayClock (`gateway.device_clock`, shared with the RADIUS server): its log lines'
words, for association events and APs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway import device_clock
from gateway.device_clock import SYNC_TTL_S, ClockWords, SyncSource
from gateway.host import clock_synced

__all__ = ["WORDS", "GatewayClock"]

WORDS = ClockWords(
    where="wifi syslog",
    sender="",
    dated="dated an association event",
    kept="the AP's time",
    otherwise="device times more than a day off it are replaced by the arrival time",
)


class GatewayClock(device_clock.GatewayClock):
    """Whether the gateway's clock may overrule an AP's, as `gateway.device_clock.GatewayClock` says."""

    __slots__ = ()

    def __init__(
        self,
        log: logging.Logger | logging.LoggerAdapter[Any],
        source: SyncSource = clock_synced,
        *,
        ttl_s: float = SYNC_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
        not_before: datetime | None = None,
    ) -> None:
        super().__init__(log, source, words=WORDS, ttl_s=ttl_s, monotonic=monotonic, not_before=not_before)
