"""What the asked unit sends in its own exchange is its answer, however wrong; a retry reads a clean line.

Regressions, on a socat pty pair with a scripted unit:
- a clone that caps reads answered FC04 x2 with a valid one-register frame; the link skipped it as a
  "late answer", the request timed out and the unit went offline with wiring advice, while the fault
  (the byte count) was never named;
- after an answer cut by one lost byte, the retry's clean answer was glued to the cut one's bytes and
  always failed as a CRC mismatch, so a retry never recovered a dropped byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.modbus import rtu
from adapters.modbus.config import SerialSettings, parse_port
from adapters.modbus.transport import ModbusTimeout, RtuSerialLink
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.modbus.rawpeers import RawRtuDevice, RtuScript, rtu_answer
from tests.adapters.modbus.running import make_adapter, modbus_config, running, until

FC04_X2 = rtu.Request(unit_id=1, function_code=4, address=1, count=2)


def _capped(request: rtu.Request) -> bytes:
    """A clone's answer that holds one register fewer than asked (valid CRC, consistent byte count)."""
    short = rtu.Request(
        unit_id=request.unit_id,
        function_code=request.function_code,
        address=request.address,
        count=max(1, request.count - 1),
    )
    return rtu.encode_response(short, registers=(0x00D7,) * short.count)


class _Line:
    """A link on one end of a pty pair and a scripted unit on the other."""

    def __init__(self, tmp_path: Path, script: RtuScript) -> None:
        self.pair = PtyPair(tmp_path)
        self.device = RawRtuDevice(self.pair.b, script)
        self.link = RtuSerialLink(parse_port(self.pair.a), SerialSettings(baud=9600))


@pytest.fixture
async def line_factory(tmp_path: Path) -> AsyncIterator[list[_Line]]:
    lines: list[_Line] = []
    yield lines
    for line in lines:
        await line.link.close()
        line.device.close()
        line.pair.close()


async def _open(lines: list[_Line], tmp_path: Path, script: RtuScript) -> RtuSerialLink:
    line = _Line(tmp_path, script)
    lines.append(line)
    await line.link.open()
    return line.link


async def test_a_capped_answer_to_its_own_request_names_the_byte_count(
    tmp_path: Path, line_factory: list[_Line]
) -> None:
    link = await _open(line_factory, tmp_path, lambda request: [(0.005, _capped(request))])
    with pytest.raises(rtu.FrameError) as caught:
        await link.transact(FC04_X2, 0.1)
    assert not isinstance(caught.value, (rtu.CrcError, ModbusTimeout))
    assert caught.value.message == "modbus unit 1 FC04 @1 x2: expected 4 data bytes, got byte count 2 in 7 bytes"
    assert link.take_late_answers() == []
    # the next asking is not disturbed by the first: the same verdict, no late answer counted
    with pytest.raises(rtu.FrameError, match="expected 4 data bytes, got byte count 2"):
        await link.transact(FC04_X2, 0.1)
    assert link.take_late_answers() == []


async def test_a_late_answer_of_the_same_unit_and_function_is_still_skipped(
    tmp_path: Path, line_factory: list[_Line]
) -> None:
    # unit 1 misses the first request and answers it during the second (same function code, another
    # count), ahead of the second's own answer: the first frame is the late one, the second the answer
    asked: list[rtu.Request] = []

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        asked.append(request)
        if len(asked) == 1:
            return []
        return [(0.002, rtu_answer(asked[0], 0x00C8)), (0.02, rtu_answer(request, 0x00D7))]

    link = await _open(line_factory, tmp_path, script)
    with pytest.raises(ModbusTimeout):
        await link.transact(FC04_X2, 0.05)
    one = rtu.Request(unit_id=1, function_code=4, address=1, count=1)
    response = await link.transact(one, 0.1)
    assert response.registers == (0x00D7,)
    assert link.take_late_answers() == [1]


async def test_the_retry_after_a_cut_answer_reads_its_own_clean_answer(
    tmp_path: Path, line_factory: list[_Line]
) -> None:
    sent = {"n": 0}

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        sent["n"] += 1
        good = rtu_answer(request, 0x00D7)
        return [(0.005, good[:-1] if sent["n"] == 1 else good)]  # the first loses its last CRC byte

    link = await _open(line_factory, tmp_path, script)
    with pytest.raises(rtu.FrameError) as caught:
        await link.transact(FC04_X2, 0.1)
    assert caught.value.message == (
        f"modbus unit 1 FC04 @1 x2 on {link.description}: incomplete answer, got 8 of 9 bytes "
        "(01 04 04 00 d7 00 d7 0b); check baud rate, parity and termination"
    )
    response = await link.transact(FC04_X2, 0.1)  # the retry
    assert response.registers == (0x00D7, 0x00D7)
    assert link.take_late_answers() == []


async def test_a_unit_that_caps_reads_stays_a_frame_error_and_never_a_late_answer(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    device = RawRtuDevice(pair.b, lambda request: [(0.005, _capped(request))])
    devices = [
        {
            "name": "th1",
            "bus": "rs485",
            "profile": "generic/xy-md02",
            "unit_id": 1,
            "poll_interval": 0.1,
            "timeout": 0.1,
            "retries": 0,
        }
    ]
    adapter = make_adapter(modbus_config([{"name": "rs485", "port": f"rtu://{pair.a}"}], devices), tmp_path)
    try:
        async with running(adapter):
            th1 = adapter.buses["rs485"].devices[0]
            await until(lambda: th1.counters.frame_errors >= 3, timeout=5)
    finally:
        device.close()
        pair.close()
    c = th1.counters
    assert (c.late_answers, c.timeouts, c.crc_errors) == (0, 0, 0)
    assert "expected 4 data bytes, got byte count 2" in th1.last_error
    assert "late answer" not in th1.last_error


async def test_a_retry_recovers_an_answer_that_lost_a_byte(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    fc4 = {"n": 0}

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        good = rtu_answer(request, 0x00D7)
        if request.function_code == 4:
            fc4["n"] += 1
            if fc4["n"] == 1:
                return [(0.005, good[:-1])]
        return [(0.005, good)]

    device = RawRtuDevice(pair.b, script)
    devices = [
        {
            "name": "th1",
            "bus": "rs485",
            "profile": "generic/xy-md02",
            "unit_id": 1,
            "poll_interval": 5.0,
            "timeout": 0.1,
            "retries": 1,
        }
    ]
    adapter = make_adapter(modbus_config([{"name": "rs485", "port": f"rtu://{pair.a}"}], devices), tmp_path)
    try:
        async with running(adapter) as readings:
            th1 = adapter.buses["rs485"].devices[0]
            await until(lambda: any("temperature" in r.attributes for r in readings), timeout=5)
    finally:
        device.close()
        pair.close()
    c = th1.counters
    assert (c.retries, c.frame_errors, c.crc_errors, c.timeouts) == (1, 1, 0, 0)
    temperatures = [r.attributes["temperature"].value for r in readings if "temperature" in r.attributes]
    assert temperatures == [21.5]
