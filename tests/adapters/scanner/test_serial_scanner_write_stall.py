"""A serial scanner that stopped taking data: its beep command fails within the port's write timeout and the
scanner is lost (its port closed), and a close under that command returns.

The scanner is on a real pty whose far end is never read and whose kernel buffer is full (`stall`),
so a write waits for room, as it does behind a scanner that is off, a cable that is out, or flow
control holding the line. Every wait here is bounded, and the cleanup reads the line free, so a
write with no bound fails the test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.scanner.aim import FramingConfig, Suffix
from adapters.scanner.serial_scanner import ScannerPortClosed, SerialScanner
from tests.adapters.rfid.port_threads import inside_pyserial, until_inside, watched_executor
from tests.adapters.rfid.port_threads import line as line
from tests.adapters.rfid.stalled_line import drain, settled, stall

BEEP = bytes.fromhex("1b 07 0d")  # a vendor's good-read beep: three bytes

STALLED = (
    "serial scanner {path}: the scanner stopped taking data, got a 3-byte command not taken within 0.42 s; "
    "check the cable, the scanner's power and whether its USB-serial adapter hung or was pulled out"
)


async def test_a_beep_to_a_scanner_that_stopped_taking_data_fails_within_the_write_timeout(
    line: tuple[str, int],
) -> None:
    """Regression: the port had no write timeout, so a beep to a scanner that stopped taking data waited in
    pyserial's write for good, holding the port's lock: no scan was read again and the close hung."""
    path, far = line
    scanner = SerialScanner(path, FramingConfig(suffix=Suffix.CR))  # 9600 baud: a write timeout of 0.42 s
    queued = stall(path)
    send = asyncio.create_task(scanner.send(BEEP))
    try:
        done, _ = await asyncio.wait({send}, timeout=3)
        assert send in done, f"the beep is still in pyserial ({inside_pyserial()}) after 3 s"
        with pytest.raises(ScannerPortClosed) as caught:
            send.result()
        assert isinstance(caught.value, ConnectionError)  # what the adapter's device task takes for the scanner lost
        assert str(caught.value) == STALLED.format(path=path)
        assert inside_pyserial() == {}
        # What the line still held for the scanner is thrown away, and the scanner is lost: found again,
        # it starts on a port of its own, not behind commands that had already failed.
        assert len(drain(far)) < queued
        with pytest.raises(ScannerPortClosed) as read:
            await anext(scanner.scans())
        assert str(read.value) == f"serial scanner {path}: the port is closed, got a read"
        scanner.close()  # a second close is harmless
    finally:
        drain(far)
        await settled(send, asyncio.to_thread(scanner.close))


async def test_a_scanner_stopped_mid_beep_to_a_stalled_line_closes_within_the_write_timeout(
    line: tuple[str, int],
) -> None:
    """Regression: stopping the adapter cancels its device task and closes the scanner, and the close waits for
    the thread in the port; that thread's write had no bound, so the gateway's shutdown hung."""
    path, far = line
    closing = None
    with watched_executor() as executor:
        scanner = SerialScanner(path, FramingConfig(suffix=Suffix.CR))
        stall(path)
        send = asyncio.create_task(scanner.send(BEEP))
        try:
            await until_inside("write")
            send.cancel()
            closing = asyncio.ensure_future(asyncio.to_thread(scanner.close))  # as the adapter's `finally` does
            done, _ = await asyncio.wait({closing}, timeout=3)
            assert closing in done, (
                f"the close still waits for the beep's thread, in pyserial ({inside_pyserial()}), after 3 s"
            )
            assert closing.result() is None
            assert inside_pyserial() == {}
            ended = executor.work[0].exception(timeout=0)
            assert isinstance(ended, ScannerPortClosed)  # its own end: the stalled line, not the close
            assert str(ended) == STALLED.format(path=path)
        finally:
            drain(far)
            await settled(send, closing)
