"""A serial line whose device stopped taking data, on a real pty, and a bounded wait for what it holds up.

`stall` fills the kernel's buffer toward the pty's far end, which nothing reads, until it takes no
more: a write to the line then waits for room that never comes, as it does behind a USB-serial
adapter or TCP serial server that hung. A driver that gives up on such a line
flushes what it holds, which on a pty frees room again; `kept_stalled` fills whatever room the line
gets at once, as a device that still takes nothing would leave it. `drain` reads the far end empty,
which frees the line, so a write with no bound cannot outlive the test that stalled it; `settled`
waits (bounded) for what such a write held up, so no task and no worker thread is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import Any

# The kernel moves queued bytes along in the background: "full" and "empty" hold only when they
# still hold a while later.
_SETTLE_S = 0.05


def stall(path: str) -> int:
    """Fill the line from `path` (the device's end) toward the far end until it takes no more; the bytes queued."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    queued = 0
    full_since: float | None = None
    try:
        while full_since is None or time.monotonic() - full_since < _SETTLE_S:
            try:
                queued += os.write(fd, bytes(4096))
                full_since = None
            except BlockingIOError:
                full_since = full_since or time.monotonic()
                time.sleep(0.005)
    finally:
        os.close(fd)
    return queued


@contextlib.contextmanager
def kept_stalled(path: str) -> Iterator[None]:
    """The line from `path` stalled, and kept full while inside (every byte of room it gets is filled again)."""
    stall(path)
    stop = threading.Event()

    def refill() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            while not stop.is_set():
                try:
                    os.write(fd, bytes(4096))
                except BlockingIOError:
                    stop.wait(0.001)
        finally:
            os.close(fd)

    thread = threading.Thread(target=refill, name="stalled-line", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def drain(fd: int) -> bytes:
    """Everything queued toward the far end `fd`, read off it (which frees the line)."""
    os.set_blocking(fd, False)
    got = bytearray()
    empty_since: float | None = None
    while empty_since is None or time.monotonic() - empty_since < _SETTLE_S:
        try:
            got += os.read(fd, 65536)
            empty_since = None
        except BlockingIOError:
            empty_since = empty_since or time.monotonic()
            time.sleep(0.005)
    return bytes(got)


async def settled(*work: Awaitable[Any] | None) -> None:
    """Wait (up to 5 s) for `work` to end, whatever it ended with; run after `drain` in a test's cleanup."""
    futures = [asyncio.ensure_future(w) for w in work if w is not None]
    if not futures:
        return
    await asyncio.wait(futures, timeout=5)
    for future in futures:
        if future.done():
            with contextlib.suppress(BaseException):
                future.result()  # retrieved: an error the test already judged is not reported again
