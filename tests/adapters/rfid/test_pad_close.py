"""A pad's close waits for the exchange a cancelled call left in a worker thread; a call after close is the pad lost.

The pad is on a real pty whose other end never answers, so the worker sits in pyserial's read
until the transact timeout, as it does when the reader is unplugged mid-request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from adapters.rfid.errors import RfidTagError
from adapters.rfid.feig import FeigFrameError, req_inventory
from adapters.rfid.pad import SerialPad
from tests.adapters.rfid.port_threads import inside_pyserial, pending, until_inside, until_sent, watched_executor


@pytest.fixture
def line() -> Iterator[tuple[str, int]]:
    """A pty: the pad's end (a path) and the reader's end (an fd nothing answers on)."""
    reader, pad_end = os.openpty()
    try:
        yield os.ttyname(pad_end), reader
    finally:
        os.close(reader)
        os.close(pad_end)


async def test_close_returns_only_after_the_cancelled_calls_worker_left_the_port(line: tuple[str, int]) -> None:
    """Regression: the adapter cancelled a call and closed the pad while the call's thread was still in
    read; the close freed the fd under it (a number the next `open()` is given) and the thread went on
    with a port that had none (TypeError)."""
    path, reader = line
    with watched_executor() as executor:
        pad = SerialPad(path, timeout_s=0.5)
        call = asyncio.create_task(pad.call(req_inventory(255)))
        await until_inside("read")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
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
        first_thread = await until_inside("read")
        assert pending(reader) == req_inventory(255)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
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
