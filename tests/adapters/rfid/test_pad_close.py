"""A pad's close waits for the exchange a cancelled call left in a worker thread; a call after close is the pad lost.

The pad is on a real pty whose other end never answers, so the worker sits in pyserial's read
until the transact timeout, as it does when the reader is unplugged mid-request.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.rfid.errors import RfidTagError
from adapters.rfid.feig import FeigFrameError, req_inventory
from adapters.rfid.pad import SerialPad
from tests.adapters.rfid.port_threads import (
    cancelled_in_read,
    inside_pyserial,
    pending,
    until_sent,
    watched_executor,
)
from tests.adapters.rfid.port_threads import line as line


async def test_close_returns_only_after_the_cancelled_calls_worker_left_the_port(line: tuple[str, int]) -> None:
    """Regression: the adapter cancelled a call and closed the pad while the call's thread was still in
    read; the close freed the fd under it (a number the next `open()` is given) and the thread went on
    with a port that had none (TypeError)."""
    path, reader = line
    with watched_executor() as executor:
        pad = SerialPad(path, timeout_s=0.5)
        call = asyncio.create_task(pad.call(req_inventory(255)))
        await cancelled_in_read(call)
        pad.close()  # directly, to see when it returns (the adapter calls it in a thread)
        assert inside_pyserial() == {}
        (exchange,) = executor.work
        ended = exchange.exception(timeout=2)
    assert isinstance(ended, FeigFrameError)  # its own end: the reader's silence, not the close
    assert str(ended) == "rfid feig reader: no reply within the timeout, got 0.5 s; check the cable"
    assert pending(reader) == req_inventory(255)


async def test_a_call_after_a_cancelled_one_waits_until_that_ones_worker_left_the_port(line: tuple[str, int]) -> None:
    """Regression: the next call's thread wrote its request while the cancelled call's thread still read,
    so the reply to the one could be taken by the other."""
    path, reader = line
    pad = SerialPad(path, timeout_s=0.3)
    try:
        first = asyncio.create_task(pad.call(req_inventory(255)))
        first_thread = await cancelled_in_read(first)
        assert pending(reader) == req_inventory(255)
        second = asyncio.create_task(pad.call(req_inventory(255, more=True)))
        await until_sent(reader, req_inventory(255, more=True))
        assert first_thread not in inside_pyserial()
        with pytest.raises(FeigFrameError, match="no reply within the timeout"):
            await second
    finally:
        pad.close()


async def test_a_call_after_close_is_the_reader_lost_and_leaves_the_port_alone(line: tuple[str, int]) -> None:
    path, reader = line
    pad = SerialPad(path)
    pad.close()
    with pytest.raises(FeigFrameError) as caught:
        await pad.call(req_inventory(255))
    assert isinstance(caught.value, RfidTagError)  # what the adapter's pad loop takes for the pad lost
    assert str(caught.value) == (
        f"rfid pad {path}: the port is closed, got a request; the pad is opened again when it is found again"
    )
    assert pending(reader) == b""
    pad.close()  # a second close is harmless
