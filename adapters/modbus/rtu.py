"""Sans-I/O Modbus RTU framing: CRC-16, request/response frames, exception responses, t3.5 timing.

Bytes in, typed values or typed errors out; no port, no clock. The PDU helpers (`encode_pdu`,
`decode_response_pdu`) are shared with Modbus TCP, whose framing is an MBAP header instead of
address + CRC. Because USB–RS-485 dongles blur inter-frame timing, a transport should frame an
answer by `own_answer_length` (the byte count of a read's answer, else `expected_response_length`;
5 bytes for an exception) plus a timeout rather than by silence alone.

Errors (all `ModbusError`, a `DeviceProtocolError`):
    ModbusError
    ├── FrameError          the bytes are not the answer to this request (short, wrong unit, wrong length…)
    │   └── CrcError        the checksum does not match: noise, a second master, wrong baud/parity
    └── ExceptionResponse   the device understood and refused (FC|0x80 + code), with a technician hint
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import DeviceProtocolError

__all__ = [
    "EXCEPTION_HINTS",
    "EXCEPTION_NAMES",
    "FUNCTION_NAMES",
    "CrcError",
    "ExceptionResponse",
    "FrameError",
    "ModbusError",
    "Request",
    "Response",
    "answer_length",
    "char_time",
    "crc16",
    "crc_ok",
    "decode_request",
    "decode_response",
    "decode_response_pdu",
    "encode_exception",
    "encode_pdu",
    "encode_request",
    "encode_response",
    "expected_response_length",
    "longer_answer",
    "own_answer_length",
    "silent_interval",
]

FUNCTION_NAMES = {
    1: "read coils",
    2: "read discrete inputs",
    3: "read holding registers",
    4: "read input registers",
    5: "write single coil",
    6: "write single register",
    15: "write multiple coils",
    16: "write multiple registers",
}
_LIMITS = {1: 2000, 2: 2000, 3: 125, 4: 125, 15: 1968, 16: 123}

EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}
EXCEPTION_HINTS = {
    0x01: "the device does not support this function code; check the profile's function_code "
    "(clones differ between input registers FC04 and holding registers FC03)",
    0x02: "the address is usually off by one between 0-based addresses and 40001 notation; also check that "
    "the read does not run past the device's last register (lower interface.max_gap or max_registers_per_read)",
    0x03: "the device refused the quantity or the value; check max_registers_per_read and the command's allowed values",
    0x04: "the device failed while answering; check the probe or sensor wired to it and power-cycle it",
    0x05: "the device accepted a long-running command and is still busy with it; poll again later",
    0x06: "the device is busy; raise interface.inter_request_delay or poll less often",
    0x08: "the device reported a memory parity error; the device needs service",
    0x0A: "the Modbus gateway has no path to that unit; check its routing and the unit id",
    0x0B: "the unit behind the Modbus gateway did not answer; check the unit id, serial settings and wiring behind it",
}


class ModbusError(DeviceProtocolError):
    code = "modbus_error"


class FrameError(ModbusError):
    code = "modbus_frame"


class CrcError(FrameError):
    code = "modbus_crc"


class ExceptionResponse(ModbusError):
    """The device answered FC|0x80 with an exception code."""

    code = "modbus_exception"

    def __init__(self, message: str, *, unit_id: int, function_code: int, exception_code: int) -> None:
        super().__init__(
            message,
            unit_id=unit_id,
            function_code=function_code,
            exception_code=exception_code,
            name=EXCEPTION_NAMES.get(exception_code, "non-standard exception"),
        )
        self.unit_id = unit_id
        self.function_code = function_code
        self.exception_code = exception_code
        self.name = EXCEPTION_NAMES.get(exception_code, "non-standard exception")
        self.hint = EXCEPTION_HINTS.get(exception_code, "a non-standard exception code; see the device manual")


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A request: reads use `count`; FC5/FC6 use `value` (FC5: True/False as FF00/0000); FC15 `bits`, FC16 `registers`."""

    unit_id: int
    function_code: int
    address: int
    count: int = 0
    value: int = 0
    bits: tuple[bool, ...] = ()
    registers: tuple[int, ...] = ()

    def describe(self) -> str:
        n = self.count or len(self.bits) or len(self.registers) or 1
        return f"modbus unit {self.unit_id} FC{self.function_code:02d} @{self.address} x{n}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A normal answer: reads fill `registers` or `bits`; writes echo `address` and `value` (FC5/6) or `count`."""

    unit_id: int
    function_code: int
    registers: tuple[int, ...] = ()
    bits: tuple[bool, ...] = ()
    address: int = 0
    value: int = 0
    count: int = 0


def _pack_bits(bits: tuple[bool, ...]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _unpack_bits(data: bytes, count: int) -> tuple[bool, ...]:
    return tuple(bool(data[i // 8] >> (i % 8) & 1) for i in range(count))


def _check_request(req: Request) -> None:
    where = req.describe()
    # 248-255 are reserved by the spec, yet some sensors answer there (Senseair S8: 0xFE "any address")
    if not 0 <= req.unit_id <= 255:
        raise ValueError(f"{where}: unit id must be 0..255 (0 = broadcast), got {req.unit_id}")
    if req.function_code not in FUNCTION_NAMES:
        raise ValueError(f"{where}: function code must be one of 1-6, 15, 16, got {req.function_code}")
    if not 0 <= req.address <= 0xFFFF:
        raise ValueError(f"{where}: address must be 0..65535, got {req.address}")
    fc = req.function_code
    n = {15: len(req.bits), 16: len(req.registers)}.get(fc, req.count)
    if fc in _LIMITS and not 1 <= n <= _LIMITS[fc]:
        raise ValueError(f"{where}: quantity must be 1..{_LIMITS[fc]}, got {n}")
    if fc in _LIMITS and req.address + n > 0x10000:
        raise ValueError(f"{where}: runs past address 65535, got {req.address}+{n}")
    if fc == 5 and req.value not in (0, 1, 0xFF00):
        raise ValueError(f"{where}: a coil is on or off, got value {req.value}")
    if fc == 6 and not 0 <= req.value <= 0xFFFF:
        raise ValueError(f"{where}: a register holds 0..65535, got {req.value}")
    if fc == 16 and not all(0 <= r <= 0xFFFF for r in req.registers):
        raise ValueError(f"{where}: registers hold 0..65535, got {req.registers}")


def encode_pdu(req: Request) -> bytes:
    """The request PDU (function code + data), shared by RTU and TCP."""
    _check_request(req)
    fc, head = req.function_code, req.function_code.to_bytes(1, "big") + req.address.to_bytes(2, "big")
    if fc in (1, 2, 3, 4):
        return head + req.count.to_bytes(2, "big")
    if fc == 5:
        return head + (b"\xff\x00" if req.value else b"\x00\x00")
    if fc == 6:
        return head + req.value.to_bytes(2, "big")
    if fc == 15:
        data = _pack_bits(req.bits)
        return head + len(req.bits).to_bytes(2, "big") + bytes([len(data)]) + data
    data = b"".join(r.to_bytes(2, "big") for r in req.registers)
    return head + len(req.registers).to_bytes(2, "big") + bytes([len(data)]) + data


def encode_request(req: Request) -> bytes:
    """The RTU frame: unit id, PDU, CRC (low byte first). `01 03 00 00 00 02` → `… C4 0B`."""
    return _with_crc(bytes([req.unit_id]) + encode_pdu(req))


def _check_crc(frame: bytes, where: str) -> bytes:
    if len(frame) < 4:
        raise FrameError(
            f"{where}: frame too short, got {len(frame)} bytes ({frame.hex(' ')}); "
            "check wiring and that the device is powered",
            length=len(frame),
        )
    body, got = frame[:-2], int.from_bytes(frame[-2:], "little")
    want = crc16(body)
    if got != want:
        raise CrcError(
            f"{where}: CRC mismatch, got 0x{got:04X}, expected 0x{want:04X}; check A/B wiring, "
            "termination, baud rate and parity, and that only one master is on the bus",
            got=got,
            expected=want,
        )
    return body


def decode_request(frame: bytes) -> Request:
    """Parse a request frame (for test peers and bus sniffers); raises FrameError/CrcError."""
    where = "modbus rtu request"
    body = _check_crc(frame, where)
    if len(body) < 6:
        raise FrameError(f"{where}: too short for a request, got {len(body) + 2} bytes", length=len(frame))
    unit, fc = body[0], body[1]
    address = int.from_bytes(body[2:4], "big")
    word = int.from_bytes(body[4:6], "big")
    try:
        if fc in (1, 2, 3, 4):
            _expect_len(body, 6, where)
            req = Request(unit_id=unit, function_code=fc, address=address, count=word)
        elif fc == 5:
            _expect_len(body, 6, where)
            if word not in (0, 0xFF00):
                raise FrameError(f"{where}: coil value must be FF00 or 0000, got {word:04X}", value=word)
            req = Request(unit_id=unit, function_code=fc, address=address, value=1 if word else 0)
        elif fc == 6:
            _expect_len(body, 6, where)
            req = Request(unit_id=unit, function_code=fc, address=address, value=word)
        elif fc in (15, 16):
            if len(body) < 7 or len(body) != 7 + body[6]:
                raise FrameError(
                    f"{where}: byte count does not match the frame, got {len(body) + 2} bytes", length=len(frame)
                )
            data = body[7:]
            if fc == 15:
                if body[6] != (word + 7) // 8:
                    raise FrameError(f"{where}: byte count {body[6]} does not fit {word} coils", count=word)
                req = Request(unit_id=unit, function_code=fc, address=address, bits=_unpack_bits(data, word))
            else:
                if body[6] != 2 * word:
                    raise FrameError(f"{where}: byte count {body[6]} does not fit {word} registers", count=word)
                regs = tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
                req = Request(unit_id=unit, function_code=fc, address=address, registers=regs)
        else:
            raise FrameError(f"{where}: unsupported function code, got {fc}", function_code=fc)
        _check_request(req)
    except ValueError as exc:
        if isinstance(exc, FrameError):
            raise
        raise FrameError(str(exc)) from None
    return req


def _expect_len(body: bytes, n: int, where: str) -> None:
    if len(body) != n:
        raise FrameError(f"{where}: expected {n + 2} bytes, got {len(body) + 2}", length=len(body) + 2)


def expected_response_length(req: Request) -> int:
    """Bytes of a normal RTU answer to `req` (an exception answer is always 5)."""
    fc = req.function_code
    if fc in (1, 2):
        return 5 + (req.count + 7) // 8
    if fc in (3, 4):
        return 5 + 2 * req.count
    return 8  # FC5/6 echo; FC15/16 echo address + quantity


def answer_length(head: bytes | bytearray) -> int | None:
    """Bytes of the answer frame `head` begins (its first 3 bytes suffice), None for an unknown function code.

    For framing answers to requests that are not ours (a late answer from another unit) by their header.
    """
    if len(head) < 3:
        raise ValueError(f"modbus rtu: an answer's length needs its first 3 bytes, got {len(head)}")
    fc = head[1]
    if fc & 0x80:
        return 5
    if fc in (1, 2, 3, 4):
        return 5 + head[2]
    if fc in (5, 6, 15, 16):
        return 8
    return None


def own_answer_length(req: Request, data: bytes | bytearray, *, timed_out: bool = False) -> int | None:
    """Bytes at the front of `data` that are the answer to `req`; None while more may come.

    A read's answer is as long as its byte count says (at most 255 data bytes), not as long as the
    request expects: a unit that answers more than asked (a fixed block, a clone's off-by-one) is then
    named for that, where cutting at the expected length would call it a CRC mismatch and leave its
    tail on the line. When the expected length already ends in a valid CRC, the byte count is that
    frame's lie and the frame ends there. `timed_out`: no more bytes will come; what did is judged
    whole if its CRC holds (a byte count past a valid frame), else at the expected length (noise).
    """
    want = expected_response_length(req)
    fc = req.function_code
    if fc in (1, 2, 3, 4) and len(data) >= 3 and data[0] == req.unit_id and data[1] == fc and 5 + data[2] > want:
        declared = 5 + data[2]
        if len(data) >= declared:
            return declared
        if len(data) >= want and crc_ok(bytes(data[:want])):
            return want
        if not timed_out or len(data) < want:
            return None
        return len(data) if crc_ok(bytes(data)) else want
    return want if len(data) >= want else None


def crc_ok(frame: bytes) -> bool:
    """Whether `frame` ends with the CRC of the bytes before it."""
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def encode_exception(unit_id: int, function_code: int, exception_code: int) -> bytes:
    return _with_crc(bytes([unit_id, function_code | 0x80, exception_code]))


def encode_response(req: Request, *, registers: tuple[int, ...] = (), bits: tuple[bool, ...] = ()) -> bytes:
    """A device's normal answer to `req` (for test peers): reads need `registers` or `bits`."""
    fc = req.function_code
    head = bytes([req.unit_id, fc])
    if fc in (1, 2):
        if len(bits) != req.count:
            raise ValueError(f"{req.describe()}: answer needs {req.count} bits, got {len(bits)}")
        data = _pack_bits(bits)
        return _with_crc(head + bytes([len(data)]) + data)
    if fc in (3, 4):
        if len(registers) != req.count:
            raise ValueError(f"{req.describe()}: answer needs {req.count} registers, got {len(registers)}")
        data = b"".join(r.to_bytes(2, "big") for r in registers)
        return _with_crc(head + bytes([len(data)]) + data)
    return _with_crc(bytes([req.unit_id]) + encode_pdu(req)[:5])


def decode_response_pdu(req: Request, unit_id: int, pdu: bytes, where: str) -> Response:
    """Interpret an answer PDU against its request; raises ExceptionResponse or FrameError."""
    if not pdu:
        raise FrameError(f"{where}: empty answer, got 0 bytes")
    fc = pdu[0]
    if fc == req.function_code | 0x80:
        if len(pdu) != 2:
            raise FrameError(f"{where}: exception answer must be 5 bytes, got {len(pdu) + 3}", length=len(pdu) + 3)
        code = pdu[1]
        name = EXCEPTION_NAMES.get(code, "non-standard exception")
        hint = EXCEPTION_HINTS.get(code, "a non-standard exception code; see the device manual")
        raise ExceptionResponse(
            f"{where}: exception {code:02X} ({name}), got {code:02X}; {hint}",
            unit_id=unit_id,
            function_code=req.function_code,
            exception_code=code,
        )
    if fc != req.function_code:
        raise FrameError(f"{where}: answer for another function code, got {fc}", function_code=fc)
    if fc in (1, 2, 3, 4):
        want = _data_bytes(req)
        if len(pdu) < 2 or pdu[1] != want or len(pdu) != 2 + want:
            got = pdu[1] if len(pdu) >= 2 else None
            raise FrameError(
                f"{where}: expected {want} data bytes, got byte count {got} in {len(pdu) + 3} bytes", expected=want
            )
        data = pdu[2:]
        if fc in (1, 2):
            return Response(unit_id=unit_id, function_code=fc, bits=_unpack_bits(data, req.count))
        regs = tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
        return Response(unit_id=unit_id, function_code=fc, registers=regs)
    if len(pdu) != 5:
        raise FrameError(f"{where}: a write's echo is 8 bytes, got {len(pdu) + 3}", length=len(pdu) + 3)
    address, word = int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big")
    echo = encode_pdu(req)[:5]
    if pdu != echo:
        raise FrameError(
            f"{where}: the echo does not match the request, got {pdu.hex(' ')}, expected {echo.hex(' ')}",
            address=address,
        )
    if fc in (5, 6):
        return Response(unit_id=unit_id, function_code=fc, address=address, value=word)
    return Response(unit_id=unit_id, function_code=fc, address=address, count=word)


def decode_response(req: Request, frame: bytes) -> Response:
    """Check and parse a device's RTU answer to `req`; raises CrcError, FrameError or ExceptionResponse."""
    where = req.describe()
    body = _check_crc(frame, where)
    if body[0] != req.unit_id:
        raise FrameError(
            f"{where}: answer from another unit, got unit {body[0]}; two devices may share "
            f"unit id {req.unit_id}, or an echo of another request was read",
            unit_id=body[0],
        )
    longer = longer_answer(req, body[1:])
    if longer:
        raise FrameError(
            f"{where}: {longer} in {len(body) + 2} bytes; {_LONGER_RTU_CAUSE}",
            unit_id=body[0],
            expected=_data_bytes(req),
            got=body[2],
        )
    return decode_response_pdu(req, body[0], body[1:], where)


def _data_bytes(req: Request) -> int:
    """The byte count of a normal answer to the read `req`."""
    return (req.count + 7) // 8 if req.function_code in (1, 2) else 2 * req.count


# An RTU unit answers for itself: a longer answer is its own doing (Modbus TCP names a gateway too, transport.py).
_LONGER_RTU_CAUSE = (
    "the device answers a fixed block or miscounts (a clone's off-by-one): check that the profile is for this "
    "model, and its function code and addresses"
)


def longer_answer(req: Request, pdu: bytes) -> str:
    """What a read's answer holding more than asked (its byte count true to `pdu`) holds, in the words of every
    link: `unit 1 answered 3 registers to a read of 2: expected 4 data bytes, got byte count 6`; "" if not one.
    Each link adds the length of its own frame and the causes it can have."""
    fc = req.function_code
    if fc not in (1, 2, 3, 4) or len(pdu) < 2 or pdu[0] != fc or len(pdu) != 2 + pdu[1]:
        return ""
    want, got = _data_bytes(req), pdu[1]
    if got <= want:
        return ""
    if fc in (3, 4) and got % 2 == 0:
        what = f"{got // 2} registers to a read of {req.count}"
    else:
        table = {1: "coils", 2: "inputs", 3: "registers", 4: "registers"}[fc]
        what = f"{got} data bytes to a read of {req.count} {table}"
    return f"unit {req.unit_id} answered {what}: expected {want} data bytes, got byte count {got}"


def char_time(baud: int, bits_per_char: int = 11) -> float:
    """Seconds one character takes on the line (start + 8 data + parity/stop = 11 bits)."""
    if baud <= 0:
        raise ValueError(f"modbus rtu: baud must be positive, got {baud}")
    return bits_per_char / baud


def silent_interval(baud: int) -> float:
    """t3.5 in seconds: 3.5 characters up to 19200 baud, a fixed 1.75 ms above (the spec's advice)."""
    if baud > 19200:
        return 0.00175
    return 3.5 * char_time(baud)
