"""A locker line whose RS-485 adapter is pulled out is a LinkError naming the port, which the bus recovers from.

Every exchange starts with pyserial's input flush, which on a hung-up tty raises termios.error, no
OSError: it went past the link's handling of a failed line and out of the bus's run. Here the device
goes away for real: the socat process that is the other end of the pty is stopped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.locker.bus import Exchange, LinkError, SerialLink
from adapters.locker.codec import Dialect
from adapters.locker.config import BusConfig
from tests.adapters.modbus.peers import PtyPair


async def test_a_locker_line_unplugged_is_a_link_error_naming_the_port(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    link = SerialLink(BusConfig(name="lockers", port=pair.a), Dialect.KERONG)
    await link.open()
    try:
        pair.close()  # the RS-485 adapter pulled out
        with pytest.raises(LinkError) as failed:
            await link.exchange(Exchange(request=b"\x02\x00\x30\x03\x35", reply_len=9), timeout=0.2)
        assert str(failed.value) == f"locker bus {pair.a}: the line failed, got [Errno 5] Input/output error"
        assert not link.is_open
    finally:
        await link.close()
        pair.close()
