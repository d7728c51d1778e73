"""An exchange that took the locker bus's port just before `close` and reaches it after: the same clear "closed"
error as any exchange after close, never pyserial's own wording. The bus is on a real pty."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapters.locker.bus import LinkError
from tests.adapters.locker.test_bus_close import silent_bus
from tests.adapters.rfid.port_threads import line as line
from tests.adapters.rfid.port_threads import pending


async def test_an_exchange_that_took_the_port_just_before_close_says_the_port_is_closed(
    line: tuple[str, int],
) -> None:
    """Regression: an exchange that took the port just before `close`, and whose thread reached it after the
    close, met pyserial's "Attempting to use a port that is not open" (reported as the line failed)."""
    path, board_end = line
    bus = silent_bus(path)
    await bus.link.open()
    loop = asyncio.get_running_loop()
    # The order of the two threads, fixed: the exchange's work waits in the queue of an executor whose
    # one thread is held, while the close runs on another; then the held thread is let go.
    gate = threading.Event()
    held = ThreadPoolExecutor(max_workers=1, thread_name_prefix="held")
    held.submit(gate.wait, 5)
    try:
        loop.set_default_executor(held)
        exchange = asyncio.create_task(bus.link.exchange(bus.boards[0].query, 0.5))
        await asyncio.sleep(0)  # it took the port and handed its blocking part to the held executor
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1, thread_name_prefix="close"))
        await bus.link.close()
        gate.set()
        done, _ = await asyncio.wait({exchange}, timeout=3)
        assert exchange in done
        with pytest.raises(LinkError) as caught:
            exchange.result()
        assert str(caught.value) == f"locker bus {path}: the port is closed, got an exchange"
        assert pending(board_end) == b""
    finally:
        gate.set()
        held.shutdown(wait=True)
