"""A pad that stopped taking data: its request fails within the port's write timeout, and a close under it returns.

The pad is on a real pty whose far end is never read and whose kernel buffer is full (`stall`), so
a write waits for room, as it does behind a USB-serial adapter that hung (no flow control is
set, so a pad that is off or a cable that is out does not hold a UART's writes). Every wait here is bounded, and the cleanup reads the line free, so a write with
no bound fails the test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.rfid.errors import RfidTagError
from adapters.rfid.feig import FeigFrameError, req_inventory
from adapters.rfid.pad import SerialPad
from tests.adapters.rfid.port_threads import inside_pyserial, until_inside, watched_executor
from tests.adapters.rfid.port_threads import line as line
from tests.adapters.rfid.stalled_line import drain, settled, stall

STALLED = (
    "rfid pad {path}: the pad stopped taking data, got a 7-byte request not taken within 0.29 s; "
    "check the cable, the pad's power and whether its USB-serial adapter hung or was pulled out"
)


async def test_a_request_to_a_pad_that_stopped_taking_data_fails_within_the_write_timeout(
    line: tuple[str, int],
) -> None:
    """Regression: the port had no write timeout, so a request to a pad that stopped taking data waited in
    pyserial's write for good, holding the port's lock (and every later request and close behind it)."""
    path, far = line
    pad = SerialPad(path, timeout_s=0.5)  # 38400 baud: a write timeout of 0.29 s
    queued = stall(path)
    call = asyncio.create_task(pad.call(req_inventory(255)))
    try:
        done, _ = await asyncio.wait({call}, timeout=3)
        assert call in done, f"the request is still in pyserial ({inside_pyserial()}) after 3 s"
        with pytest.raises(FeigFrameError) as caught:
            call.result()
        assert isinstance(caught.value, RfidTagError)  # what the adapter's pad loop takes for the pad lost
        assert str(caught.value) == STALLED.format(path=path)
        assert inside_pyserial() == {}
        # What the line still held for the pad is thrown away: a pad that takes data again must not
        # answer requests that had already failed, nor be read as answering the next one.
        assert len(drain(far)) < queued
        pad.close()  # nothing in the port: returns at once
    finally:
        drain(far)
        await settled(call, asyncio.to_thread(pad.close))


async def test_a_pad_stopped_mid_request_to_a_stalled_line_closes_within_the_write_timeout(
    line: tuple[str, int],
) -> None:
    """Regression: stopping the adapter cancels its request and closes the pad, and the close waits for the
    request's thread to leave the port; that thread's write had no bound, so the gateway's shutdown hung."""
    path, far = line
    closing = None
    with watched_executor() as executor:
        pad = SerialPad(path, timeout_s=0.5)
        stall(path)
        call = asyncio.create_task(pad.call(req_inventory(255)))
        try:
            await until_inside("write")
            call.cancel()
            closing = asyncio.ensure_future(asyncio.to_thread(pad.close))  # as the adapter's `finally` does
            done, _ = await asyncio.wait({closing}, timeout=3)
            assert closing in done, (
                f"the close still waits for the request's thread, in pyserial ({inside_pyserial()}), after 3 s"
            )
            assert closing.result() is None
            assert inside_pyserial() == {}
            exchange = executor.work[0]
            ended = exchange.exception(timeout=0)
            assert isinstance(ended, FeigFrameError)  # its own end: the stalled line, not the close
            assert str(ended) == STALLED.format(path=path)
        finally:
            drain(far)
            await settled(call, closing)
