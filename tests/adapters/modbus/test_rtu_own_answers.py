"""What the asked unit sends in its own exchange is its answer, however wrong; a retry reads a clean line.

Regressions, on a socat pty pair with a scripted unit:
- a clone that caps reads answered FC04 x2 with a valid one-register frame; the link skipped it as a
  "late answer", the request timed out and the unit went offline with wiring advice, while the fault
  (the byte count) was never named;
- after an answer cut by one lost byte, the retry's clean answer was glued to the cut one's bytes and
  always failed as a CRC mismatch, so a retry never recovered a dropped byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.modbus import rtu
from adapters.modbus.transport import ModbusTimeout
from tests.adapters.modbus.raw_rigs import RtuLines, adapter_on_rtu_device, rtu_lines, until_frame_errors, xy_md02
from tests.adapters.modbus.rawpeers import rtu_answer
from tests.adapters.modbus.running import until

__all__ = ["rtu_lines"]  # the fixture
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


async def test_a_capped_answer_to_its_own_request_names_the_byte_count(rtu_lines: RtuLines) -> None:
    link = await rtu_lines.open(lambda request: [(0.005, _capped(request))])
    with pytest.raises(rtu.FrameError) as caught:
        await link.transact(FC04_X2, 0.1)
    assert not isinstance(caught.value, (rtu.CrcError, ModbusTimeout))
    assert caught.value.message == "modbus unit 1 FC04 @1 x2: expected 4 data bytes, got byte count 2 in 7 bytes"
    assert link.take_late_answers() == []
    # the next asking is not disturbed by the first: the same verdict, no late answer counted
    with pytest.raises(rtu.FrameError, match="expected 4 data bytes, got byte count 2"):
        await link.transact(FC04_X2, 0.1)
    assert link.take_late_answers() == []


async def test_a_late_answer_of_the_same_unit_and_function_is_still_skipped(rtu_lines: RtuLines) -> None:
    # unit 1 misses the first request and answers it during the second (same function code, another
    # count), ahead of the second's own answer: the first frame is the late one, the second the answer
    asked: list[rtu.Request] = []

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        asked.append(request)
        if len(asked) == 1:
            return []
        return [(0.002, rtu_answer(asked[0], 0x00C8)), (0.02, rtu_answer(request, 0x00D7))]

    link = await rtu_lines.open(script)
    with pytest.raises(ModbusTimeout):
        await link.transact(FC04_X2, 0.05)
    one = rtu.Request(unit_id=1, function_code=4, address=1, count=1)
    response = await link.transact(one, 0.1)
    assert response.registers == (0x00D7,)
    assert link.take_late_answers() == [1]


async def test_the_retry_after_a_cut_answer_reads_its_own_clean_answer(rtu_lines: RtuLines) -> None:
    sent = {"n": 0}

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        sent["n"] += 1
        good = rtu_answer(request, 0x00D7)
        return [(0.005, good[:-1] if sent["n"] == 1 else good)]  # the first loses its last CRC byte

    link = await rtu_lines.open(script)
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
    adapter, _ = await until_frame_errors(tmp_path, _capped)
    th1 = adapter.buses["rs485"].devices[0]
    c = th1.counters
    assert (c.late_answers, c.timeouts, c.crc_errors) == (0, 0, 0)
    assert "expected 4 data bytes, got byte count 2" in th1.last_error
    assert "late answer" not in th1.last_error


async def test_a_retry_recovers_an_answer_that_lost_a_byte(tmp_path: Path) -> None:
    fc4 = {"n": 0}

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        good = rtu_answer(request, 0x00D7)
        if request.function_code == 4:
            fc4["n"] += 1
            if fc4["n"] == 1:
                return [(0.005, good[:-1])]
        return [(0.005, good)]

    devices = [xy_md02(1, "rs485", poll_interval=5.0, retries=1)]
    async with adapter_on_rtu_device(tmp_path, script, devices) as (adapter, readings):
        th1 = adapter.buses["rs485"].devices[0]
        await until(lambda: any("temperature" in r.attributes for r in readings), timeout=5)
    c = th1.counters
    assert (c.retries, c.frame_errors, c.crc_errors, c.timeouts) == (1, 1, 0, 0)
    temperatures = [r.attributes["temperature"].value for r in readings if "temperature" in r.attributes]
    assert temperatures == [21.5]
