"""A locker line that stopped taking data: an exchange fails within the port's write timeout and the link is
lost (its port closed, reopened by the bus later), and a bus stopped under that exchange closes.

The bus is on a real pty whose far end is never read and whose kernel buffer is full (`stall`), so
a write waits for room, as it does behind an RS-485 adapter or a TCP serial server that stopped
taking data. Every wait here is bounded, and
the cleanup reads the line free, so a write with no bound fails the test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.locker.bus import LinkError
from tests.adapters.locker.test_bus_close import silent_bus
from tests.adapters.rfid.port_threads import inside_pyserial, until_inside, watched_executor
from tests.adapters.rfid.port_threads import line as line
from tests.adapters.rfid.stalled_line import drain, kept_stalled, settled, stall

STALLED = (
    "locker bus {path}: the line stopped taking data, got a 5-byte request not taken within 0.31 s; "
    "check the power and the cable of the RS-485 adapter or TCP serial server, and whether it hung or was pulled out"
)


async def test_an_exchange_on_a_line_that_stopped_taking_data_fails_within_the_write_timeout(
    line: tuple[str, int],
) -> None:
    """Regression: the port had no write timeout, so a request to a line that stopped taking data waited in
    pyserial's write for good, holding the link's thread lock (and every later exchange and close behind it)."""
    path, far = line
    bus = silent_bus(path)  # 9600 baud: a write timeout of 0.31 s
    await bus.link.open()
    queued = stall(path)
    exchange = asyncio.create_task(bus.link.exchange(bus.boards[0].query, 0.5))
    try:
        done, _ = await asyncio.wait({exchange}, timeout=3)
        assert exchange in done, f"the request is still in pyserial ({inside_pyserial()}) after 3 s"
        with pytest.raises(LinkError) as caught:
            exchange.result()
        assert str(caught.value) == STALLED.format(path=path)
        assert inside_pyserial() == {}
        # The link is lost, what the line still held is thrown away: a line that takes data again gets
        # neither a request that already failed nor an unlock pulse long after it was given up.
        assert not bus.link.is_open
        assert len(drain(far)) < queued
    finally:
        drain(far)
        await settled(exchange, bus.link.close())


async def test_a_bus_stopped_mid_poll_on_a_stalled_line_closes_within_the_write_timeout(
    line: tuple[str, int],
) -> None:
    """Regression: stopping the bus cancels its poll and closes the link in `run`'s `finally`, and the close
    waits for the poll's thread to leave the port; that thread's write had no bound, so the shutdown hung."""
    path, far = line
    with watched_executor() as executor:
        bus = silent_bus(path)
        stall(path)
        run = asyncio.create_task(bus.run())
        try:
            await until_inside("write")
            run.cancel()
            done, _ = await asyncio.wait({run}, timeout=3)
            assert run in done, f"the bus still closes its port, its poll in pyserial ({inside_pyserial()}), after 3 s"
            assert run.cancelled()
            assert inside_pyserial() == {}
            opened, poll, closed = executor.work
            assert opened.exception(timeout=0) is None and closed.exception(timeout=0) is None
            ended = poll.exception(timeout=0)
            assert isinstance(ended, LinkError)  # its own end: the stalled line, not the close
            assert str(ended) == STALLED.format(path=path)
            assert not bus.link.is_open
        finally:
            drain(far)
            await settled(run)


async def test_a_bus_on_a_line_that_stays_stalled_says_why_once_and_polls_again_once_it_takes_data(
    line: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """The bus's own recovery: the link lost to the stall is reopened after a pause that doubles while the
    line stays stalled, and the board is polled again once it takes data; meanwhile the stall is the bus's
    `link_error`, logged once, not once per reopen (a stalled line opens fine every time)."""
    path, far = line
    bus = silent_bus(path)
    caplog.set_level(logging.INFO, logger="adapters.locker.bus")
    run = None
    try:
        with kept_stalled(path):
            run = asyncio.create_task(bus.run())
            for _ in range(300):
                if bus.link_error:
                    break
                await asyncio.sleep(0.01)
            assert bus.link_error == STALLED.format(path=path)
            await asyncio.sleep(2.5)  # eight write timeouts' time: the pauses of 1 s and 2 s allow two reopens
            assert bus.link_error == STALLED.format(path=path)
            said = [r.getMessage() for r in caplog.records]
            assert said == [f"bus rs485: {STALLED.format(path=path)}"]
            # reopened after pauses of 1 s and 2 s, not after every write timeout (nine by now)
            assert 2 <= bus.boards[0].counters.polls <= 3
        drain(far)
        for _ in range(1000):  # the pause under way, up to 4 s, and the board's 0.5 s of silence
            if bus.boards[0].counters.timeouts:
                break
            await asyncio.sleep(0.01)
        assert bus.boards[0].counters.timeouts == 1  # polled again: the line takes data, the board is silent
        assert bus.link_error == ""
        assert [r.getMessage() for r in caplog.records][1:] == ["bus rs485: port open again"]
    finally:
        if run is not None:
            run.cancel()
        drain(far)
        await settled(run)
