"""`python -m tests.gateway.watchdog_emfile <notify socket>`: the sd_notify calls through a moment without file descriptors.

Its own process, because it lowers RLIMIT_NOFILE and takes every descriptor left: pytest's own files must not
share that moment. Prints one JSON line: the exceptions the calls raised, and whether the watchdog task ended.
Logs go to stderr as `logger: LEVEL message`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
from typing import Any

from gateway.systemd import Notifier

PING_S = 0.05  # WatchdogSec=0.1 s


def _take_every_descriptor() -> list[int]:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        return held


async def main(address: str) -> dict[str, Any]:
    notifier = Notifier(address, watchdog_usec=int(PING_S * 2_000_000))
    raised: list[str] = []
    held = _take_every_descriptor()
    for call in (notifier.ready, notifier.reloading, notifier.stopping):
        try:
            call()
        except Exception as exc:  # what the gateway's reload or stop would have met
            raised.append(f"{call.__name__}: {type(exc).__name__}")
    pings = asyncio.create_task(notifier.feed_watchdog())
    await asyncio.sleep(PING_S * 4)  # a few pings fail
    for fd in held:
        os.close(fd)
    await asyncio.sleep(PING_S * 6)  # and go through again
    ended = pings.done()
    pings.cancel()
    await asyncio.wait([pings])
    return {"raised": raised, "watchdog_task_ended": ended}


if __name__ == "__main__":
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s: %(levelname)s %(message)s")
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
