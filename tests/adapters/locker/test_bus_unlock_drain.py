"""A Kerong unlock (no reply) waits, bounded, for its frame to leave the port, and is delivered.

A pty takes the bytes at once, so only the normal path shows here; an adapter whose driver holds the
bytes and never sends them (the bound running out) cannot be made on a pty.
"""

from __future__ import annotations

import time

from adapters.locker import codec
from tests.adapters.locker.test_bus_close import silent_bus
from tests.adapters.rfid.port_threads import line as line
from tests.adapters.rfid.port_threads import until_sent


async def test_a_kerong_unlock_on_a_line_taking_data_completes_and_is_delivered(line: tuple[str, int]) -> None:
    path, far = line
    bus = silent_bus(path)
    await bus.link.open()
    try:
        started = time.monotonic()
        assert await bus.link.exchange(bus.boards[0].unlock_exchange(1), 0.5) is None
        assert time.monotonic() - started < bus.link.write_timeout
        await until_sent(far, codec.encode_cu16_unlock(0, 1))
        assert bus.link.is_open
    finally:
        await bus.link.close()
