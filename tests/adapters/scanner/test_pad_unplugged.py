"""A pad whose USB-serial adapter is pulled out is lost, said why, and found again once it is back.

The port of a device that is gone (a hung-up tty) fails its first call, pyserial's input flush, with
termios.error, which is no OSError: it went past the adapter's handling of a lost pad and ended the
pad's task for good, with the pad still shown online and never polled again. Here the device goes
away for real: the socat process that is the other end of the pty is stopped.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from adapters.scanner.adapter import ScannerAdapter
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.rfid.feig_sim import SimThread
from tests.adapters.scanner.test_adapter import make, until
from tests.adapters.scanner.test_pad_faults import LiftingSim, book, lost_lines


async def test_a_pad_unplugged_is_lost_with_the_reason_and_found_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters.scanner.adapter")
    pair = PtyPair(tmp_path)
    thread = SimThread(LiftingSim(), pair.b)
    doc = {
        "stations": [{"id": "ret", "purpose": "return"}],
        "pads": [{"name": "pad", "station": "ret", "port": pair.a, "poll_ms": 50}],
    }
    adapter: ScannerAdapter
    adapter, out, emit = make(tmp_path, doc)
    task = asyncio.create_task(adapter.run(emit))
    key = f"pad:{pair.a}"
    try:
        await until(lambda: adapter.connected.get(key) is True, "pad online")
        pair.close()  # pulled out: the pty the adapter has open is hung up
        await until(lambda: adapter.connected[key] is False, "pad lost")
        assert not task.done(), task.exception() if task.done() else None
        [said] = [line for line in lost_lines(caplog) if " lost: " in line]  # the test's path says "lost" too
        assert said.startswith(f"device {key} lost: rfid pad {pair.a}: the port failed, got ")
        assert said.endswith(
            ": the port failed, got [Errno 5] Input/output error; check the cable and the USB-serial adapter; the "
            "pad is opened again when it is found again"
        )
        # plugged in again (socat makes the same link): found by the rescan, and it reads books
        thread.stop()
        pair = PtyPair(tmp_path)
        sim = LiftingSim()
        sim.tags.append(book())
        thread = SimThread(sim, pair.b)
        await until(lambda: adapter.connected[key] is True, "pad found again")
        await until(lambda: len(out) == 1, "the return")
        assert out[0].attributes["item"].value == "40000007"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        thread.stop()
        pair.close()
