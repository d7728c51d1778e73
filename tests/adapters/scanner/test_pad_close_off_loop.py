"""The adapter stopped while a pad's request is in its port closes the pad in a thread: the close waits for the
request's thread (up to the pad's timeout), the event loop does not."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.adapters.rfid.port_threads import inside_pyserial, until_inside
from tests.adapters.scanner.test_adapter import make


async def test_stopping_the_adapter_mid_request_closes_the_pad_off_the_loop(tmp_path: Path) -> None:
    reader, pad_end = os.openpty()  # a pad that never answers: the inventory's thread sits in read
    path = os.ttyname(pad_end)
    doc = {
        "stations": [{"id": "ret", "purpose": "return"}],
        "pads": [{"name": "pad", "station": "ret", "port": path, "poll_ms": 50}],
    }
    adapter, _, emit = make(tmp_path, doc)
    task = asyncio.create_task(adapter.run(emit))
    try:
        await until_inside("read")
        task.cancel()
        for _ in range(20):  # the cancellation reaches the pad's task, whose close begins
            await asyncio.sleep(0)
        # the loop runs while the close waits for the request's thread (a close on the loop would have held
        # it until that thread left the port)
        assert "read" in inside_pyserial().values()
        assert not task.done()
        await asyncio.gather(task, return_exceptions=True)
        assert inside_pyserial() == {}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        os.close(reader)
        os.close(pad_end)
