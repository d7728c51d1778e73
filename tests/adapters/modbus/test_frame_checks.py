"""The framing checks the links use on received bytes: any bytes in, a verdict out, never an exception."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.modbus import rtu
from adapters.modbus.transport import mbap_partial, mbap_problem

_reads = st.builds(
    lambda unit, fc, address, count: rtu.Request(unit_id=unit, function_code=fc, address=address, count=count),
    st.integers(1, 247),
    st.sampled_from([1, 2, 3, 4]),
    st.integers(0, 1000),
    st.integers(1, 100),
)


def _answer(request: rtu.Request, value: int = 7) -> bytes:
    if request.function_code in (3, 4):
        return rtu.encode_response(request, registers=(value,) * request.count)
    return rtu.encode_response(request, bits=(True,) * request.count)


@settings(max_examples=300)
@given(request=_reads, value=st.integers(0, 0xFFFF))
def test_answer_length_frames_every_answer_by_its_header(request: rtu.Request, value: int) -> None:
    frame = _answer(request, value)
    assert rtu.answer_length(frame[:3]) == len(frame)
    assert rtu.crc_ok(frame)
    exception = rtu.encode_exception(request.unit_id, request.function_code, 2)
    assert rtu.answer_length(exception[:3]) == len(exception) == 5
    flipped = bytearray(frame)
    flipped[len(frame) // 2] ^= 0x01
    assert not rtu.crc_ok(bytes(flipped))


def _mbap(tid: int, request: rtu.Request, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, request.unit_id) + pdu


@settings(max_examples=300)
@given(request=_reads, tid=st.integers(0, 0xFFFF), late=st.integers(0, 0xFFFF))
def test_a_good_answer_passes_after_late_ones_and_a_cut_one_is_incomplete(
    request: rtu.Request, tid: int, late: int
) -> None:
    pdu = _answer(request)[1:-2]  # unit id and CRC off: the PDU
    frame = _mbap(tid, request, pdu)
    earlier = _mbap(late, request, b"\x04\x02\x00\x01") if late != tid else b""
    assert mbap_problem(request, tid, earlier + frame) is None
    for cut in range(1, len(frame)):
        assert mbap_problem(request, tid, earlier + frame[:cut]) is None  # not judged before it is whole
        assert mbap_partial(tid, earlier + frame[:cut]) is not None
    assert mbap_partial(tid, earlier) is None  # only a late answer: nothing of this one came
    refused = _mbap(tid, request, bytes([request.function_code | 0x80, 2]))
    assert mbap_problem(request, tid, refused) is None  # a refusal is an answer


@settings(max_examples=1000)
@given(request=_reads, tid=st.integers(0, 0xFFFF), data=st.binary(max_size=300))
def test_any_bytes_get_a_verdict_and_never_an_exception(request: rtu.Request, tid: int, data: bytes) -> None:
    problem = mbap_problem(request, tid, data)
    assert problem is None or (isinstance(problem, str) and problem)
    partial = mbap_partial(tid, data)
    assert partial is None or partial.startswith("incomplete answer, got ")
