"""RTU framing against public frames, round trips, corrupted frames and arbitrary bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.modbus.rtu import (
    CrcError,
    ExceptionResponse,
    FrameError,
    ModbusError,
    Request,
    Response,
    crc16,
    decode_request,
    decode_response,
    encode_exception,
    encode_request,
    encode_response,
    expected_response_length,
    silent_interval,
)
from gateway.errors import DeviceProtocolError

# (request, answer) pairs printed in public documents; every byte, CRC included, comes from there
PUBLIC_FRAMES = [
    # Modbus golden read: unit 1, holding registers 0-1
    ("01 03 00 00 00 02 C4 0B", None),
    # XY-MD02 manual: read temperature, answer 0x0131 = 30.5 °C
    ("01 04 00 01 00 01 60 0A", "01 04 02 01 31 79 74"),
    # Senseair S8 "any address" CO2 read (SFeli/ESP32_S8)
    ("FE 04 00 03 00 01 D5 C5", None),
    # Sonbest XM9505 rain gauge: counter 0x0218 = 536 tips
    ("01 03 00 00 00 01 84 0A", "01 03 02 02 18 B9 2E"),
    # Ebyte E821-RTU: analog input 9946 µA
    ("01 03 00 13 00 01 75 CF", "01 03 02 26 DA 23 BF"),
]


def hexb(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize(("request_hex", "answer_hex"), PUBLIC_FRAMES)
def test_public_frames(request_hex: str, answer_hex: str | None) -> None:
    frame = hexb(request_hex)
    req = decode_request(frame)
    assert encode_request(req) == frame
    if answer_hex is not None:
        answer = hexb(answer_hex)
        assert expected_response_length(req) == len(answer)
        resp = decode_response(req, answer)
        assert encode_response(req, registers=resp.registers) == answer


def test_golden_crc_is_sent_low_byte_first() -> None:
    assert crc16(hexb("01 03 00 00 00 02")) == 0x0BC4
    assert encode_request(Request(unit_id=1, function_code=3, address=0, count=2)).hex(" ") == "01 03 00 00 00 02 c4 0b"


def test_decoded_values_of_public_answers() -> None:
    req = decode_request(hexb("01 03 00 00 00 01 84 0A"))
    assert decode_response(req, hexb("01 03 02 02 18 B9 2E")) == Response(unit_id=1, function_code=3, registers=(536,))


def test_exception_02_names_the_off_by_one() -> None:
    req = Request(unit_id=1, function_code=3, address=1, count=2)
    frame = encode_exception(1, 3, 2)
    assert frame.hex(" ") == "01 83 02 c0 f1"
    with pytest.raises(ExceptionResponse) as err:
        decode_response(req, frame)
    assert str(err.value) == (
        "modbus unit 1 FC03 @1 x2: exception 02 (illegal data address), got 02; the address is usually off by one "
        "between 0-based addresses and 40001 notation; also check that the read does not run past the device's "
        "last register (lower interface.max_gap or max_registers_per_read)"
    )
    assert (err.value.exception_code, err.value.name, err.value.code) == (2, "illegal data address", "modbus_exception")
    assert isinstance(err.value, DeviceProtocolError)


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1, "illegal function"),
        (3, "illegal data value"),
        (4, "server device failure"),
        (6, "server device busy"),
        (0x0A, "gateway path unavailable"),
        (0x0B, "gateway target device failed to respond"),
        (0x42, "non-standard exception"),
    ],
)
def test_exception_names(code: int, name: str) -> None:
    req = Request(unit_id=7, function_code=4, address=0, count=1)
    with pytest.raises(ExceptionResponse) as err:
        decode_response(req, encode_exception(7, 4, code))
    assert err.value.name == name
    assert f"exception {code:02X} ({name})" in str(err.value)


def test_crc_mismatch_message() -> None:
    req = Request(unit_id=1, function_code=4, address=1, count=1)
    with pytest.raises(CrcError) as err:
        decode_response(req, hexb("01 04 02 01 31 79 75"))
    assert str(err.value) == (
        "modbus unit 1 FC04 @1 x1: CRC mismatch, got 0x7579, expected 0x7479; check A/B wiring, termination, "
        "baud rate and parity, and that only one master is on the bus"
    )


def test_answer_from_another_unit_and_short_frames() -> None:
    req = Request(unit_id=2, function_code=4, address=1, count=1)
    with pytest.raises(FrameError, match=r"answer from another unit, got unit 1; two devices may share unit id 2"):
        decode_response(req, hexb("01 04 02 01 31 79 74"))
    with pytest.raises(FrameError, match=r"frame too short, got 3 bytes \(01 04 02\)"):
        decode_response(req, hexb("01 04 02"))
    with pytest.raises(FrameError, match=r"expected 2 data bytes, got byte count 4"):
        decode_response(
            Request(unit_id=1, function_code=4, address=1, count=1),
            encode_response(Request(unit_id=1, function_code=4, address=1, count=2), registers=(1, 2)),
        )


def test_expected_lengths_and_silent_interval() -> None:
    assert expected_response_length(Request(unit_id=1, function_code=1, address=0, count=9)) == 7
    assert expected_response_length(Request(unit_id=1, function_code=3, address=0, count=125)) == 255
    assert expected_response_length(Request(unit_id=1, function_code=5, address=0, value=1)) == 8
    assert expected_response_length(Request(unit_id=1, function_code=16, address=0, registers=(1, 2))) == 8
    assert silent_interval(9600) == pytest.approx(0.0040104, abs=1e-6)
    assert silent_interval(19200) == pytest.approx(0.0020052, abs=1e-6)
    assert silent_interval(38400) == silent_interval(115200) == 0.00175


def test_coil_write_is_ff00_and_echoed() -> None:
    req = Request(unit_id=1, function_code=5, address=0, value=1)
    frame = encode_request(req)
    assert frame[:6] == hexb("01 05 00 00 FF 00")
    assert decode_response(req, encode_response(req)) == Response(unit_id=1, function_code=5, address=0, value=0xFF00)
    off = Request(unit_id=1, function_code=5, address=0, value=0)
    with pytest.raises(FrameError, match="the echo does not match the request"):
        decode_response(off, encode_response(req))


def test_requests_out_of_the_protocol_are_refused() -> None:
    with pytest.raises(ValueError, match=r"quantity must be 1..125, got 126"):
        encode_request(Request(unit_id=1, function_code=3, address=0, count=126))
    with pytest.raises(ValueError, match=r"runs past address 65535, got 65535\+2"):
        encode_request(Request(unit_id=1, function_code=4, address=65535, count=2))


# --- properties -----------------------------------------------------------------------------------------

units = st.integers(0, 255)
addresses = st.integers(0, 0xFFFF)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    fc = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16]))
    unit = draw(units)
    limit = {1: 2000, 2: 2000, 3: 125, 4: 125, 15: 1968, 16: 123}.get(fc, 1)
    address = draw(st.integers(0, 0x10000 - limit))
    if fc in (1, 2, 3, 4):
        return Request(unit_id=unit, function_code=fc, address=address, count=draw(st.integers(1, limit)))
    if fc == 5:
        return Request(unit_id=unit, function_code=fc, address=address, value=draw(st.sampled_from([0, 1])))
    if fc == 6:
        return Request(unit_id=unit, function_code=fc, address=address, value=draw(st.integers(0, 0xFFFF)))
    if fc == 15:
        bits = tuple(draw(st.lists(st.booleans(), min_size=1, max_size=limit)))
        return Request(unit_id=unit, function_code=fc, address=address, bits=bits)
    regs = tuple(draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=limit)))
    return Request(unit_id=unit, function_code=fc, address=address, registers=regs)


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[Request, bytes, Response]:
    req = draw(requests())
    if req.function_code in (1, 2):
        bits = tuple(draw(st.lists(st.booleans(), min_size=req.count, max_size=req.count)))
        return (
            req,
            encode_response(req, bits=bits),
            Response(unit_id=req.unit_id, function_code=req.function_code, bits=bits),
        )
    if req.function_code in (3, 4):
        regs = tuple(draw(st.lists(st.integers(0, 0xFFFF), min_size=req.count, max_size=req.count)))
        return (
            req,
            encode_response(req, registers=regs),
            Response(unit_id=req.unit_id, function_code=req.function_code, registers=regs),
        )
    frame = encode_response(req)
    return req, frame, decode_response(req, frame)


@settings(max_examples=150)
@given(requests())
def test_request_round_trip(req: Request) -> None:
    frame = encode_request(req)
    assert decode_request(frame) == req


@settings(max_examples=150)
@given(exchanges())
def test_response_round_trip_and_length(ex: tuple[Request, bytes, Response]) -> None:
    req, frame, want = ex
    assert len(frame) == expected_response_length(req)
    assert decode_response(req, frame) == want


@settings(max_examples=200)
@given(exchanges(), st.data())
def test_any_single_bit_flip_fails_the_crc(ex: tuple[Request, bytes, Response], data: st.DataObject) -> None:
    req, frame, _ = ex
    bit = data.draw(st.integers(0, 8 * len(frame) - 1))
    corrupted = bytearray(frame)
    corrupted[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CrcError):
        decode_response(req, bytes(corrupted))
    with pytest.raises(CrcError):
        decode_request(bytes(corrupted))


@settings(max_examples=300)
@given(requests(), st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_typed_errors(req: Request, junk: bytes) -> None:
    for frame in (junk, junk + crc16(junk).to_bytes(2, "little")):  # the second passes the CRC
        with contextlib.suppress(ModbusError):
            decode_response(req, frame)
        with contextlib.suppress(ModbusError):
            decode_request(frame)
