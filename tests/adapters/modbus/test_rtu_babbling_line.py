"""A line that babbles at the pace a real RS-485 line carries is found never quiet, not read as broken answers.

Regression (review 4, babble.py): the settling before a request waited in slices of the quiet time, and its
last slice, cut short by the limit, counted as quiet when no byte came in it, although the line had never
stayed quiet for a whole quiet time. A babbler at 9600-baud pace (960 B/s, far below what the inbox bounds)
was then taken for a line that went quiet: 12 exchanges gave 12 CRC errors (now and then 11 and one
LineNoisy), and the bus never said the line streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from adapters.modbus import rtu
from adapters.modbus.config import SerialSettings, parse_port
from adapters.modbus.transport import LineNoisy, ModbusTimeout, RtuSerialLink
from tests.adapters.modbus.peers import PtyPair

EXCHANGES = 10

# A unit that babbles NMEA-like text at 9600-baud pace: 960 B/s, in 4-byte bursts every 4.2 ms, as a USB
# dongle hands received bytes over. Its own process, as a babbling device is: a writer in the test's event
# loop would pause whenever the loop stalls, and the line would then be quiet for real. The bursts are
# scheduled on the clock, so a stall of the writer is caught up, not turned into a slower line.
_BABBLE = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_NOCTTY)
text = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\\r\\n" * 8
at, i = time.monotonic(), 0
while True:
    os.write(fd, text[i : i + 4])
    i = (i + 4) % (len(text) - 4)
    at += 4 / 960
    time.sleep(max(0.0, at - time.monotonic()))
"""


@contextlib.asynccontextmanager
async def _babbling_line(tmp_path: Path) -> AsyncIterator[RtuSerialLink]:
    pair = PtyPair(tmp_path)
    link = RtuSerialLink(parse_port(pair.a), SerialSettings(baud=9600))
    # the margin of a dongle that buffers longer (quiet 104 ms, not 24): a stall of the writer or of socat on a
    # loaded machine then makes no pause the link could take for a quiet line, and what is tested stays the
    # same, that the line is quiet only after a whole quiet time without a byte
    link.settle_margin = 0.1
    try:
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BABBLE, pair.b, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await link.open()
            await asyncio.sleep(0.1)  # the babble is on the line before the first request
            yield link
        finally:
            await link.close()
            with contextlib.suppress(ProcessLookupError):
                writer.kill()
            await writer.wait()
    finally:
        pair.close()


async def test_a_line_babbling_at_its_baud_rate_pace_is_never_quiet(tmp_path: Path) -> None:
    got: Counter[str] = Counter()
    async with _babbling_line(tmp_path) as link:
        for _ in range(EXCHANGES):
            try:
                await link.transact(rtu.Request(unit_id=1, function_code=3, address=0, count=2), 0.3)
                got["answer"] += 1
            except (LineNoisy, ModbusTimeout, rtu.ModbusError) as exc:
                got[type(exc).__name__] += 1
        dropped = link.dropped_bytes
    # each exchange is refused before its request goes out: the line never stays quiet for a frame's end
    # (one may go out after a stall longer than the quiet time; the old code refused at most a few, by luck)
    assert got["LineNoisy"] >= EXCHANGES - 1, dict(got)
    assert got["answer"] == 0, dict(got)
    assert dropped == 0  # 960 B/s is far below the inbox's bound: it is the pause, not the flood, that tells
