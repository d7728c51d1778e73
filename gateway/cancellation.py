"""Waiting on the loop without losing a cancellation.

On Python 3.11 (Debian 12's, the appliance's) two everyday idioms swallow a cancellation that
lands at the wrong moment, and the task that should stop runs on: a stop hangs until systemd
kills the gateway, and an adapter a reload removed keeps polling its devices.

- `asyncio.wait_for` returns the awaited result when its caller is cancelled just as that
  completes (the `if fut.done(): return fut.result()` in its CancelledError branch; Python 3.12
  rebuilt it on `asyncio.timeout`). `asyncio.timeout` runs the awaitable in the caller's own
  task and has no such window; ruff's TID251 (pyproject.toml) keeps `wait_for` out.
- `task.cancel()` then `with suppress(CancelledError): await task`: a cancellation of the caller
  that lands while it waits is forwarded to the task it awaits, and the one CancelledError that
  comes back is taken for the task's own. `cancel_and_wait` tells the two apart by the caller's
  cancellation count.

Found when a Modbus TCP adapter polled on for 300 s after its test cancelled it (CI, 2026-12-06).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has ended; a cancellation of the caller meanwhile is raised, never lost.

    The task's own cancellation is taken; any other exception it ended with is raised, as `await task`
    would. Called while the caller is already being cancelled (in a `finally`), that cancellation goes on.
    """
    me = asyncio.current_task()
    before = me.cancelling() if me is not None else 0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if me is not None and me.cancelling() > before:
        # the caller was cancelled while it waited: Task.cancel() handed that to `task`, whose one
        # CancelledError (or normal end, if it swallowed its own) was all that came back
        raise asyncio.CancelledError


async def event_set_within(event: asyncio.Event, seconds: float | None) -> bool:
    """Whether `event` is set within `seconds` (None: no limit; at once if it already is); a cancellation
    meanwhile is raised."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
