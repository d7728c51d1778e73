"""Which threads are inside pyserial right now, and how a cancelled call's thread ended.

A task awaiting `asyncio.to_thread` can be cancelled, its thread cannot: it stays in the port's
`read` until pyserial's own timeout. A close must not return while such a thread is still in the
port. Every thread's stack (`sys._current_frames`) shows that directly, with no stand-in for the
port and no sleep taken as proof; the loop's executor keeps each work item's future, so what the
cancelled call's thread ended with (its own timeout, or a TypeError from a port closed under it)
is seen although its awaiting task is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import FrameType
from typing import Any

import pytest


def inside_pyserial() -> dict[int, str]:
    """Thread id → the pyserial function (innermost) that thread is inside, for every thread but this one."""
    me = threading.get_ident()
    calls = {}
    for ident, top in sys._current_frames().items():
        frame: FrameType | None = top
        while frame is not None and ident != me:
            if str(frame.f_globals.get("__name__", "")).startswith("serial."):
                calls[ident] = frame.f_code.co_name
                break
            frame = frame.f_back
    return calls


async def until_inside(call: str) -> int:
    """Wait (up to 2 s) until some worker thread is inside pyserial's `call`; that thread's id."""
    for _ in range(2000):
        for ident, name in inside_pyserial().items():
            if name == call:
                return ident
        await asyncio.sleep(0.001)
    raise AssertionError(f"no thread entered pyserial's {call} within 2 s, got {inside_pyserial()}")


async def cancelled_in_read(task: asyncio.Task[Any]) -> int:
    """`task` cancelled once a worker thread of it is in pyserial's read (the thread goes on); that thread's id."""
    thread = await until_inside("read")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return thread


async def until_sent(fd: int, data: bytes) -> None:
    """Wait (up to 2 s) until the pty's other end has been sent `data` after what was read from it so far."""
    got = b""
    for _ in range(2000):
        got += pending(fd)
        if len(got) >= len(data):
            assert got == data
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"the port was not sent {data.hex()} within 2 s, got {got.hex()}")


def pending(fd: int) -> bytes:
    """What a pty's other end has been sent and not yet read (the fd is non-blocking for it)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


class WatchedExecutor(ThreadPoolExecutor):
    """The loop's default executor (what `asyncio.to_thread` runs on), keeping every work item's future."""

    def __init__(self) -> None:
        super().__init__(max_workers=4, thread_name_prefix="port-worker")
        self.work: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.work.append(future)
        return future


@contextlib.contextmanager
def watched_executor() -> Iterator[WatchedExecutor]:
    """The running loop's default executor replaced by a watched one; at the end, its threads are waited for."""
    watched = WatchedExecutor()
    asyncio.get_running_loop().set_default_executor(watched)
    try:
        yield watched
    finally:
        watched.shutdown(wait=True)


@pytest.fixture
def line() -> Iterator[tuple[str, int]]:
    """A pty: the device's end (a path, what the adapter opens) and the far end (an fd nothing answers on)."""
    far, near = os.openpty()
    try:
        yield os.ttyname(near), far
    finally:
        os.close(far)
        os.close(near)
