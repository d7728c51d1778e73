"""An RTU answer with more registers than asked is framed by its byte count and named for what it is.

Regression: a unit that answers a fixed block (or a clone with an off-by-one) sent 3 registers to a
read of 2; the link cut the frame at the expected 9 bytes and reported a CRC mismatch, which sends
the technician after wiring and noise, and after one timeout such an answer was even skipped as a
"late answer" and the unit reported silent. Tested on a socat pty pair with a scripted unit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.modbus import rtu
from adapters.modbus.transport import ModbusTimeout
from tests.adapters.modbus.raw_rigs import RtuLines, rtu_lines, until_frame_errors
from tests.adapters.modbus.rawpeers import rtu_answer

__all__ = ["rtu_lines"]  # the fixture
FC04_X2 = rtu.Request(unit_id=1, function_code=4, address=1, count=2)
HINT = (
    "; the device answers a fixed block or miscounts (a clone's off-by-one): check that the profile is "
    "for this model, and its function code and addresses"
)


def _longer(request: rtu.Request, extra: int = 1) -> bytes:
    """An answer holding `extra` more registers than asked (valid CRC, byte count true to the frame)."""
    more = rtu.Request(
        unit_id=request.unit_id,
        function_code=request.function_code,
        address=request.address,
        count=request.count + extra,
    )
    return rtu.encode_response(more, registers=(0x00D7,) * more.count)


def _framed(body: bytes) -> bytes:
    return body + rtu.crc16(body).to_bytes(2, "little")


async def test_more_registers_than_asked_are_named_and_the_next_poll_reads_a_clean_line(rtu_lines: RtuLines) -> None:
    sent = {"n": 0}

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        sent["n"] += 1
        return [(0.005, _longer(request) if sent["n"] == 1 else rtu_answer(request, 0x00C8))]

    link = await rtu_lines.open(script)
    with pytest.raises(rtu.FrameError) as caught:
        await link.transact(FC04_X2, 0.1)
    assert not isinstance(caught.value, rtu.CrcError)
    assert caught.value.message == (
        "modbus unit 1 FC04 @1 x2: unit 1 answered 3 registers to a read of 2: expected 4 data bytes, "
        "got byte count 6 in 11 bytes" + HINT
    )
    # the whole frame was taken: its last register and CRC are not read as the next answer
    response = await link.transact(FC04_X2, 0.1)
    assert response.registers == (0x00C8, 0x00C8)
    assert link.take_late_answers() == []


async def test_the_longest_answer_a_byte_count_can_say_is_read_whole(rtu_lines: RtuLines) -> None:
    # byte count 254: 127 registers, more than any read may ask (125), to a read of 2
    link = await rtu_lines.open(lambda request: [(0.005, _longer(request, 125))])
    with pytest.raises(
        rtu.FrameError,
        match="unit 1 answered 127 registers to a read of 2: expected 4 data bytes, got byte count 254 in 259",
    ):
        await link.transact(FC04_X2, 0.1)


async def test_an_odd_byte_count_to_a_register_read_is_named_in_bytes(rtu_lines: RtuLines) -> None:
    link = await rtu_lines.open(lambda request: [(0.005, _framed(bytes([1, 4, 5]) + b"\x00\xd7" * 2 + b"\x01"))])
    with pytest.raises(rtu.FrameError) as caught:
        await link.transact(FC04_X2, 0.1)
    assert caught.value.message == (
        "modbus unit 1 FC04 @1 x2: unit 1 answered 5 data bytes to a read of 2 registers: expected 4 data bytes, "
        "got byte count 5 in 10 bytes" + HINT
    )


async def test_a_byte_count_that_claims_more_than_the_frame_holds_is_still_caught(rtu_lines: RtuLines) -> None:
    # byte count 6, but only the 4 data bytes asked for, and the CRC over those 9 bytes
    lying = _framed(bytes([1, 4, 6]) + b"\x00\xd7" * 2)
    link = await rtu_lines.open(lambda request: [(0.005, lying)])
    with pytest.raises(rtu.FrameError) as caught:
        await link.transact(FC04_X2, 0.1)
    assert not isinstance(caught.value, rtu.CrcError)
    assert caught.value.message == "modbus unit 1 FC04 @1 x2: expected 4 data bytes, got byte count 6 in 9 bytes"


async def test_a_byte_count_beyond_a_longer_frame_is_caught_when_the_line_stays_quiet(rtu_lines: RtuLines) -> None:
    # byte count 8 (13 bytes), but the frame ends with a valid CRC after 6 data bytes (11 bytes)
    lying = _framed(bytes([1, 4, 8]) + b"\x00\xd7" * 3)
    link = await rtu_lines.open(lambda request: [(0.005, lying)])
    with pytest.raises(rtu.FrameError) as caught:
        await link.transact(FC04_X2, 0.1)
    assert not isinstance(caught.value, rtu.CrcError)
    assert caught.value.message == "modbus unit 1 FC04 @1 x2: expected 4 data bytes, got byte count 8 in 11 bytes"


async def test_noise_on_the_byte_count_is_still_a_crc_mismatch(rtu_lines: RtuLines) -> None:
    good = rtu_answer(FC04_X2)
    noisy = good[:2] + bytes([good[2] | 0x20]) + good[3:]  # one bit flipped: byte count 36, CRC of the original
    link = await rtu_lines.open(lambda request: [(0.005, noisy)])
    with pytest.raises(rtu.CrcError, match="CRC mismatch"):
        await link.transact(FC04_X2, 0.1)


async def test_after_a_timeout_a_longer_answer_is_its_answer_not_a_late_one(rtu_lines: RtuLines) -> None:
    sent = {"n": 0}

    def script(request: rtu.Request) -> list[tuple[float, bytes]]:
        sent["n"] += 1
        return [] if sent["n"] == 1 else [(0.005, _longer(request))]

    link = await rtu_lines.open(script)
    with pytest.raises(ModbusTimeout):
        await link.transact(FC04_X2, 0.05)
    for _ in range(2):
        with pytest.raises(rtu.FrameError, match="unit 1 answered 3 registers to a read of 2"):
            await link.transact(FC04_X2, 0.1)
    assert link.take_late_answers() == []


async def test_a_unit_answering_a_longer_block_is_counted_as_frame_errors_with_its_cause(tmp_path: Path) -> None:
    adapter, readings = await until_frame_errors(tmp_path, _longer)
    th1 = adapter.buses["rs485"].devices[0]
    c = th1.counters
    assert (c.crc_errors, c.timeouts, c.late_answers) == (0, 0, 0)
    assert "answered 3 registers to a read of 2" in th1.last_error or "answered 2 registers to a read of 1" in (
        th1.last_error
    )
    assert not any("temperature" in r.attributes for r in readings)
    diag = adapter.diagnostics()["buses"]["rs485"]["devices"]["th1"]
    assert diag["frame_errors"] == c.frame_errors and diag["crc_errors"] == 0


# --- the codec, for every read and every longer answer --------------------------------------------------------

_reads = st.builds(
    lambda fc, count, unit: rtu.Request(unit_id=unit, function_code=fc, address=0, count=count),
    st.sampled_from([3, 4]),
    st.integers(1, 125),
    st.integers(1, 247),
)


@given(_reads, st.integers(1, 127), st.integers(0, 0xFFFF))
def test_any_longer_register_answer_is_framed_whole_and_named(request: rtu.Request, extra: int, value: int) -> None:
    got = min(127, request.count + extra)
    if got == request.count:
        return
    more = rtu.Request(unit_id=request.unit_id, function_code=request.function_code, address=0, count=got)
    frame = rtu.encode_response(more, registers=(value,) * got)
    want = rtu.expected_response_length(request)
    assert rtu.own_answer_length(request, frame) == len(frame)
    for cut in range(len(frame)):
        # a prefix is never taken for the whole answer, unless it is itself a valid frame of the expected length
        n = rtu.own_answer_length(request, frame[:cut])
        assert n is None or (n == want and rtu.crc_ok(frame[:want]))
    with pytest.raises(rtu.FrameError) as caught:
        rtu.decode_response(request, frame)
    assert not isinstance(caught.value, rtu.CrcError)
    assert f"unit {request.unit_id} answered {got} registers to a read of {request.count}: " in caught.value.message


@given(st.sampled_from([1, 2]), st.integers(1, 2000), st.integers(1, 255))
def test_any_longer_bit_answer_is_named_in_bytes(fc: int, count: int, data_bytes: int) -> None:
    request = rtu.Request(unit_id=9, function_code=fc, address=0, count=count)
    want = (count + 7) // 8
    if data_bytes <= want:
        return
    frame = _framed(bytes([9, fc, data_bytes]) + b"\x55" * data_bytes)
    assert rtu.own_answer_length(request, frame) == len(frame)
    table = "coils" if fc == 1 else "inputs"
    with pytest.raises(rtu.FrameError) as caught:
        rtu.decode_response(request, frame)
    assert f"unit 9 answered {data_bytes} data bytes to a read of {count} {table}: expected {want} data bytes, " in (
        caught.value.message
    )


@given(_reads, st.binary(min_size=0, max_size=300))
def test_the_framing_never_takes_more_than_came_or_more_than_a_frame_can_be(request: rtu.Request, tail: bytes) -> None:
    data = bytes([request.unit_id, request.function_code]) + tail
    for timed_out in (False, True):
        n = rtu.own_answer_length(request, data, timed_out=timed_out)
        assert n is None or 5 <= n <= min(len(data), 260)
