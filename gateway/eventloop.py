"""The event loop `edgegw run` runs on: uvloop's, or asyncio's own where uvloop is missing or refused.

uvloop (libuv under asyncio's API) runs the loop's own work in C: waiting for sockets, the ready
queue, timers, the transports' reads and writes. On asyncio's loop that work was ~29 µs of a
reading's ~120 at 500 readings/s (thread CPU per loop callback); on uvloop the race workload takes
10-16 % less user CPU at 500/s and 13 % less at 5,000/s (README Performance).
Nothing in the gateway depends on which loop it runs on; the loop-sensitive tests run on both
(`both_loops` in tests/conftest.py). `EDGEGW_EVENT_LOOP=asyncio` (a systemd drop-in's Environment=)
runs asyncio's loop instead, to rule the loop out when a box misbehaves.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

ENV = "EDGEGW_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    choice = os.environ.get(ENV, "uvloop")
    if choice == "asyncio":
        return asyncio.new_event_loop
    if choice != "uvloop":
        log.warning("%s=%r is neither uvloop nor asyncio: running on uvloop", ENV, choice)
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed: running on asyncio's own event loop")
        return asyncio.new_event_loop
    return uvloop.new_event_loop
