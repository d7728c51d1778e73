"""Sans-I/O Modbus value codec: registers and bits ↔ typed values, engineering scaling, read planning.

Nothing here touches a socket, a serial port or the clock. The adapter asks `plan_reads` which
requests to send for the points that are due, sends them (see `adapters.modbus.rtu` for RTU
frames), and hands the answers to `decode_reads`, which returns one `PointValue` per point with
its quality. `encode_point` / `encode_command` go the other way (test peers, commands).

Conventions (documented for technicians in firmware_profiles/README.md):
- raw → engineering: `value = raw × scale × 10^-decimals + offset` (decimals from `decimals_from`).
- a float32 reads as the shortest decimal that is the same float32 (230.1, not 230.10000610351562).
- `no_data` sentinels compare with the raw value; NaN/±inf floats are always "no data".
- a value outside `valid_range` is kept and flagged `out_of_range`, never dropped or clamped.
"""

from __future__ import annotations

import contextlib
import enum
import math
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from adapters.jsonmap.numbers import number_text
from gateway.errors import AdapterError, DeviceProtocolError
from gateway.profiles.schema import (
    INTEGER_TYPES,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    ByteOrder,
    Command,
    DataType,
    Point,
    integer_range,
    register_count,
)

__all__ = [
    "CodecError",
    "CommandRejected",
    "PointValue",
    "QualityCode",
    "RawValue",
    "ReadRequest",
    "Value",
    "WriteRequest",
    "bytes_to_registers",
    "decode_point",
    "decode_reads",
    "decode_registers",
    "encode_command",
    "encode_point",
    "encode_registers",
    "image_slice",
    "plan_reads",
    "registers_to_bytes",
    "shown",
]

RawValue = bool | int | float | str | dict[str, bool]
Value = bool | int | float | str | dict[str, bool]


class CodecError(DeviceProtocolError):
    """The data handed to the codec does not fit the point (wrong length, value out of the type)."""

    code = "modbus_codec"


class CommandRejected(AdapterError, ValueError):
    """A command value the profile does not allow; nothing was sent."""

    code = "modbus_command_rejected"


class QualityCode(enum.Enum):
    GOOD = "good"
    NO_DATA = "no_data"  # a sentinel, NaN, a missing decimals point, or a read the device refused
    OUT_OF_RANGE = "out_of_range"  # outside the point's valid_range; value kept


@dataclass(frozen=True, slots=True, kw_only=True)
class PointValue:
    """One decoded point: `value` in engineering units (None when there is no data) and its quality."""

    name: str
    raw: RawValue | None  # None when the device refused the read (an exception answer)
    value: Value | None
    quality: QualityCode
    detail: str = ""


# --- registers ↔ bytes ----------------------------------------------------------------------------------


def registers_to_bytes(registers: Sequence[int], order: ByteOrder, *, swap_words: bool = True) -> bytes:
    """The value's bytes, most significant first, from registers in wire order."""
    words = list(registers)
    if swap_words and order.swaps_words:
        words.reverse()
    out = bytearray()
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise CodecError(f"modbus codec: register values are 0..65535, got {w}", register=w)
        out += w.to_bytes(2, "big")
    if order.swaps_bytes:
        out[0::2], out[1::2] = out[1::2], out[0::2]
    return bytes(out)


def bytes_to_registers(data: bytes, order: ByteOrder, *, swap_words: bool = True) -> tuple[int, ...]:
    """Registers in wire order from the value's bytes, most significant first (inverse of the above)."""
    buf = bytearray(data)
    if order.swaps_bytes:
        buf[0::2], buf[1::2] = buf[1::2], buf[0::2]
    words = [int.from_bytes(buf[i : i + 2], "big") for i in range(0, len(buf), 2)]
    if swap_words and order.swaps_words:
        words.reverse()
    return tuple(words)


_STRUCT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}


def decode_registers(
    registers: Sequence[int], data_type: DataType, order: ByteOrder = ByteOrder.ABCD, *, count: int | None = None
) -> int | float | str:
    """The raw typed value held in `registers` (wire order). Bitfields decode as their uint16."""
    want = register_count(data_type, count)
    if len(registers) != want or data_type is DataType.BOOL:
        raise CodecError(
            f"modbus codec: {data_type.value} needs {want} register(s), got {len(registers)}",
            data_type=data_type.value,
            registers=len(registers),
        )
    if data_type is DataType.STRING:
        # word order has no meaning for text; only the byte order inside each register does
        text = registers_to_bytes(registers, order, swap_words=False)
        return text.rstrip(b"\x00 ").decode("ascii", errors="replace")
    if data_type is DataType.BITFIELD:
        return struct.unpack(">H", registers_to_bytes(registers, order))[0]  # type: ignore[no-any-return]
    return struct.unpack(_STRUCT[data_type], registers_to_bytes(registers, order))[0]  # type: ignore[no-any-return]


def encode_registers(
    value: int | float | str, data_type: DataType, order: ByteOrder = ByteOrder.ABCD, *, count: int | None = None
) -> tuple[int, ...]:
    """Registers in wire order holding `value` (inverse of decode_registers)."""
    want = register_count(data_type, count)
    if data_type is DataType.STRING:
        if not isinstance(value, str):
            raise CodecError(f"modbus codec: string needs text, got {value!r}", value=repr(value))
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise CodecError(f"modbus codec: string must be ASCII, got {value!r}", value=value) from None
        if len(raw) > 2 * want:
            raise CodecError(f"modbus codec: {want} registers hold {2 * want} characters, got {len(raw)}", value=value)
        return bytes_to_registers(raw.ljust(2 * want, b"\x00"), order, swap_words=False)
    if data_type is DataType.BOOL:
        raise CodecError("modbus codec: bool is a bit, not a register value, got bool", data_type="bool")
    fmt = ">H" if data_type is DataType.BITFIELD else _STRUCT[data_type]
    if data_type in INTEGER_TYPES or data_type is DataType.BITFIELD:
        lo, hi = integer_range(DataType.UINT16 if data_type is DataType.BITFIELD else data_type)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise CodecError(
                f"modbus codec: {data_type.value} holds integers {lo}..{hi}, got {value!r}", value=repr(value)
            )
    elif isinstance(value, (str, bool)):
        raise CodecError(f"modbus codec: {data_type.value} needs a number, got {value!r}", value=repr(value))
    try:
        data = struct.pack(fmt, value)
    except (struct.error, OverflowError) as exc:
        raise CodecError(
            f"modbus codec: {value!r} does not fit {data_type.value}, got {exc}", value=repr(value)
        ) from None
    return bytes_to_registers(data, order)


# --- points ---------------------------------------------------------------------------------------------


_F32 = struct.Struct(">f")


def _float32_decimal(raw: float) -> float:
    """The shortest decimal (from 6 digits up) that is the same float32 as the finite `raw`.

    A float32 widened to a double shows its binary noise as digits (230.1 V reads 230.10000610351562):
    dashboards print it and equality filters on the platform miss. A decimal of 6 digits always comes
    back from a float32 unchanged, so a device's own value is found on the first try; 9 digits always
    tell two float32 apart, so the last try never loses a bit. -0.0 keeps its sign ("-0").
    """
    exact = _F32.pack(raw)
    for digits in (6, 7, 8):
        near = float(f"{raw:.{digits}g}")
        if _F32.pack(near) == exact:
            return near
    return float(f"{raw:.9g}")


def _float32_in(raw: RawValue, point: Point) -> bool:
    """Whether a float32 `raw` is one of the point's sentinels as a float32: a sentinel written as the register's
    value widened to a double (-9999.900390625, 3.4028234663852886e+38: what earlier releases showed) is the same
    float32 as the shortest decimal `raw` now is."""
    exact = _F32.pack(raw)
    for sentinel in point.no_data:
        with contextlib.suppress(OverflowError):  # beyond float32: never a float32 register's value
            if _F32.pack(sentinel) == exact:
                return True
    return False


def _raw_of(point: Point, data: Sequence[int] | Sequence[bool]) -> RawValue:
    if point.data_type is DataType.BOOL:
        if len(data) != 1:
            raise CodecError(f"modbus point {point.name}: bool needs 1 bit, got {len(data)}", point=point.name)
        return bool(data[0])
    raw = decode_registers([int(d) for d in data], point.data_type, point.byte_order, count=point.count)
    if point.data_type is DataType.FLOAT32 and isinstance(raw, float) and math.isfinite(raw):
        # before sentinels, scale and valid_range, which are written as decimals in the profile
        return _float32_decimal(raw)
    if point.data_type is DataType.BITFIELD:
        assert isinstance(raw, int)
        if point.bit is not None:
            return bool(raw >> point.bit & 1)
        return {name: bool(raw >> index & 1) for name, index in (point.bits or {}).items()}
    return raw


def _engineering(point: Point, raw: RawValue, decimals: int | None) -> PointValue:
    if point.data_type not in _STRUCT or isinstance(raw, (bool, str, dict)):
        return PointValue(name=point.name, raw=raw, value=raw, quality=QualityCode.GOOD)
    if isinstance(raw, float) and not math.isfinite(raw):
        return PointValue(name=point.name, raw=raw, value=None, quality=QualityCode.NO_DATA, detail="not a number")
    if raw in point.no_data or (point.data_type is DataType.FLOAT32 and point.no_data and _float32_in(raw, point)):
        return PointValue(name=point.name, raw=raw, value=None, quality=QualityCode.NO_DATA, detail=f"sentinel {raw:g}")
    factor = point.scale
    if point.decimals_from is not None:
        if decimals is None or not 0 <= decimals <= 9:
            return PointValue(
                name=point.name,
                raw=raw,
                value=None,
                quality=QualityCode.NO_DATA,
                detail=f"decimals from {point.decimals_from} unusable, got {decimals}",
            )
        factor = point.scale / 10**decimals
    value: int | float
    if point.scale == 1 and point.offset == 0 and point.decimals_from is None:
        value = raw
    else:
        # round away binary noise (0.1 × 3 = 0.30000000000000004) to what the register can express
        value = raw * factor + point.offset
        value = float(f"{value:.12g}")
    if point.valid_range is not None and not point.valid_range[0] <= value <= point.valid_range[1]:
        lo, hi = point.valid_range
        return PointValue(
            name=point.name, raw=raw, value=value, quality=QualityCode.OUT_OF_RANGE, detail=f"outside {lo:g}..{hi:g}"
        )
    return PointValue(name=point.name, raw=raw, value=value, quality=QualityCode.GOOD)


def decode_point(point: Point, data: Sequence[int] | Sequence[bool], *, decimals: int | None = None) -> PointValue:
    """One point from exactly its own registers (or bit); `decimals` feeds `decimals_from`."""
    return _engineering(point, _raw_of(point, data), decimals)


def encode_point(point: Point, value: Value, *, decimals: int | None = None) -> tuple[int, ...] | tuple[bool]:
    """The registers (or the bit) a device shows for an engineering `value`: for test peers and images.

    Integer types round to the nearest raw step. Bitfields take a bool (`bit`) or a name → bool table.
    """
    if point.data_type is DataType.BOOL:
        return (bool(value),)
    if point.data_type is DataType.BITFIELD:
        if point.bit is not None:
            word = int(bool(value)) << point.bit
        else:
            assert isinstance(value, dict)
            word = sum(1 << (point.bits or {})[k] for k, on in value.items() if on)
        return encode_registers(word, DataType.BITFIELD, point.byte_order)
    if point.data_type is DataType.STRING:
        return encode_registers(str(value), DataType.STRING, point.byte_order, count=point.count)
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
    factor = point.scale / 10 ** (decimals or 0) if point.decimals_from is not None else point.scale
    raw: int | float = (value - point.offset) / factor
    if point.data_type in INTEGER_TYPES:
        raw = round(raw)
    return encode_registers(raw, point.data_type, point.byte_order)


# --- planning -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRequest:
    """One read: `count` registers (FC3/FC4) or bits (FC1/FC2) from `address`, serving `points`."""

    function_code: int
    address: int
    count: int
    points: tuple[str, ...]


def plan_reads(
    points: Iterable[Point],
    *,
    max_registers: int = MAX_READ_REGISTERS,
    max_bits: int = MAX_READ_BITS,
    max_gap: int = 0,
) -> tuple[ReadRequest, ...]:
    """Coalesce points into as few reads as the limits allow.

    Points of one function code are sorted by address; a point joins the current read when the
    registers between it and the read's end number at most `max_gap` (reading over a gap can hit
    unmapped registers, which some devices answer with exception 02 — hence the default 0) and the
    read stays within `max_registers` (FC3/FC4) or `max_bits` (FC1/FC2). Every point lands in exactly
    one read. A point wider than the limit raises CodecError (profile validation prevents it).
    """
    if not 1 <= max_registers <= MAX_READ_REGISTERS or not 1 <= max_bits <= MAX_READ_BITS or max_gap < 0:
        raise ValueError(
            f"plan_reads: limits out of range, got max_registers={max_registers}, "
            f"max_bits={max_bits}, max_gap={max_gap}"
        )
    by_fc: dict[int, list[Point]] = {}
    for p in points:
        by_fc.setdefault(p.function_code, []).append(p)
    out: list[ReadRequest] = []
    for fc in sorted(by_fc):
        limit = max_bits if fc in (1, 2) else max_registers
        start = end = -1
        members: list[str] = []
        for p in sorted(by_fc[fc], key=lambda q: (q.address, q.name)):
            p_end = p.address + p.width
            if p.width > limit:
                raise CodecError(
                    f"modbus plan: point {p.name} needs {p.width}, more than one read's {limit}, got {p.width}",
                    point=p.name,
                )
            if members and p.address - end <= max_gap and max(end, p_end) - start <= limit:
                end = max(end, p_end)
                members.append(p.name)
                continue
            if members:
                out.append(ReadRequest(function_code=fc, address=start, count=end - start, points=tuple(members)))
            start, end, members = p.address, p_end, [p.name]
        if members:
            out.append(ReadRequest(function_code=fc, address=start, count=end - start, points=tuple(members)))
    return tuple(out)


def decode_reads(
    points: Iterable[Point], results: Iterable[tuple[ReadRequest, Sequence[int] | Sequence[bool]]]
) -> dict[str, PointValue]:
    """Decode the answers to `plan_reads`' requests: one PointValue per point that was read.

    Raw values come first so that a `decimals_from` point read in another request still applies.
    Raises CodecError when an answer's length does not match its request.
    """
    by_name = {p.name: p for p in points}
    raws: dict[str, RawValue] = {}
    for request, data in results:
        if len(data) != request.count:
            raise CodecError(
                f"modbus read FC{request.function_code:02d} @{request.address}: expected {request.count} "
                f"values, got {len(data)}",
                function_code=request.function_code,
                address=request.address,
            )
        for name in request.points:
            p = by_name[name]
            lo = p.address - request.address
            raws[name] = _raw_of(p, data[lo : lo + p.width])
    out: dict[str, PointValue] = {}
    for name, raw in raws.items():
        p = by_name[name]
        decimals: int | None = None
        if p.decimals_from is not None:
            d = raws.get(p.decimals_from)
            decimals = d if isinstance(d, int) and not isinstance(d, bool) else None
        out[name] = _engineering(p, raw, decimals)
    return out


# --- commands -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRequest:
    """One write: FC5/FC15 carry `bits`, FC6/FC16 carry `registers`."""

    function_code: int
    address: int
    registers: tuple[int, ...] = ()
    bits: tuple[bool, ...] = ()


# the largest finite value each floating type holds: a command value beyond it is refused, not written as inf
_FLOAT_MAX = {DataType.FLOAT32: struct.unpack(">f", b"\x7f\x7f\xff\xff")[0], DataType.FLOAT64: sys.float_info.max}
_SHOWN_KEEP = 17  # a long quoted value keeps this many characters at each end: a command value may be megabytes


def shown(value: object) -> str:
    """`value` quoted for a message (repr, at most ~40 characters), whatever the platform sent."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        # str() of an int over 4300 digits raises, and quoting thousands of digits helps nobody
        magnitude = abs(value)
        digits = int((magnitude.bit_length() - 1) * math.log10(2)) + 1
        digits += magnitude >= 10**digits
        return f"{'a negative' if value < 0 else 'an'} integer of {digits} digits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # a huge int or a deep nesting inside a list
        return f"a {type(value).__name__}"
    if len(text) > 2 * _SHOWN_KEEP + 3:
        text = f"{text[:_SHOWN_KEEP]}...{text[-_SHOWN_KEEP:]}"
    return text


def _type_bounds(data_type: DataType) -> tuple[int | float, int | float, str] | None:
    """What a numeric type holds, and how a refusal says so; None for a type that takes no number."""
    if data_type in INTEGER_TYPES or data_type is DataType.BITFIELD:
        lo, hi = integer_range(DataType.UINT16 if data_type is DataType.BITFIELD else data_type)
        return lo, hi, f"{data_type.value} holds integers {lo}..{hi}"
    top = _FLOAT_MAX.get(data_type)
    return None if top is None else (-top, top, f"{data_type.value} holds {-top:g}..{top:g}")


def _allowed_text(command: Command) -> str:
    if command.values is not None:
        return ", ".join(f"{v:g}" for v in command.values)
    if command.range is not None:
        return f"{command.range[0]:g}..{command.range[1]:g}"
    bounds = _type_bounds(command.data_type)
    return "no number" if bounds is None else f"{bounds[0]:g}..{bounds[1]:g}"


def _command_number(command: Command, value: object, where: str) -> int | float:
    """The number a numeric command's value stands for, checked against what the command allows.

    The bounds are checked on the value as sent (int, float or the Decimal its text spells) before
    any conversion: int() of the 9 characters "1e999999" builds a million-digit number and holds
    the event loop for half a minute.
    """

    def refuse(what: str) -> CommandRejected:
        return CommandRejected(f"{where}: {what}", command=command.name)

    allowed = _allowed_text(command)
    bounds = _type_bounds(command.data_type)
    number: int | float | Decimal
    if isinstance(value, str):
        parsed = number_text(value)
        if parsed is None:
            raise refuse(f"needs a number, got {shown(value)}; allowed: {allowed}")
        number = parsed
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise refuse(f"needs a finite number, got {shown(value)}; allowed: {allowed}")
        number = value
    else:
        raise refuse(f"needs a number, got {shown(value)}; allowed: {allowed}")
    if bounds is None:
        raise refuse(f"{command.data_type.value} takes no number, got {shown(value)}")
    lo, hi, holds = bounds
    # int, float and Decimal compare exactly with each other, whatever their size; past what the type
    # holds, the refusal names the command's own limits when the value is past them too
    if not lo <= number <= hi:
        if command.range is not None and not command.range[0] <= number <= command.range[1]:
            raise refuse(f"value outside {allowed}, got {shown(value)}")
        if command.values is not None and not min(command.values) <= number <= max(command.values):
            raise refuse(f"value not allowed, got {shown(value)}; allowed: {allowed}")
        raise refuse(f"{holds}, got {shown(value)}")
    # bounded by the type now, so converting is cheap; the profile's limits are floats and compare with
    # the converted value (the text "0.1" is the float 0.1 a profile's `values` or `range` holds)
    converted: int | float
    if isinstance(lo, int):
        if number != int(number):
            raise refuse(f"needs a whole number, got {shown(value)}; allowed: {allowed}")
        converted = int(number)
    else:
        converted = float(number)
    if command.values is not None and converted not in command.values:
        raise refuse(f"value not allowed, got {shown(value)}; allowed: {allowed}")
    if command.range is not None and not command.range[0] <= converted <= command.range[1]:
        raise refuse(f"value outside {allowed}, got {shown(value)}")
    return converted


def encode_command(command: Command, value: object) -> WriteRequest:
    """The write for a command value; raises CommandRejected (and nothing else) when the profile does not allow it.

    Numeric commands take numbers or numbers written as text (UltraLight carries every value as text).
    """
    where = f"command {command.name}"
    fc = command.function_code
    if fc in (5, 15):
        if fc == 15 and not isinstance(value, bool):
            bits = tuple(value) if isinstance(value, (list, tuple)) else ()
            if len(bits) != (command.count or 1) or not all(isinstance(b, bool) for b in bits):
                raise CommandRejected(
                    f"{where}: needs {command.count or 1} true/false values, got {shown(value)}", command=command.name
                )
            return WriteRequest(function_code=fc, address=command.address, bits=bits)
        if not isinstance(value, bool):
            raise CommandRejected(f"{where}: needs true or false, got {shown(value)}", command=command.name)
        return WriteRequest(function_code=fc, address=command.address, bits=(value,) * (command.count or 1))
    written: int | float | str
    if command.data_type is DataType.STRING:
        width = 2 * register_count(command.data_type, command.count)
        if not isinstance(value, str) or not value.isascii() or len(value) > width:
            raise CommandRejected(
                f"{where}: needs ASCII text of at most {width} characters, got {shown(value)}", command=command.name
            )
        written = value
    else:
        written = _command_number(command, value, where)
    try:
        registers = encode_registers(written, command.data_type, command.byte_order, count=command.count)
    except CodecError as exc:  # the checks above leave none; kept so that no other error leaks from here
        raise CommandRejected(f"{where}: {exc.message.split(': ', 1)[-1]}", command=command.name) from None
    return WriteRequest(function_code=fc, address=command.address, registers=registers)


def image_slice(image: Mapping[int, int], request: ReadRequest) -> list[int]:
    """The request's window of a register (or 0/1 bit) image keyed by address; absent addresses read 0.

    For test peers and simulators that hold a device's memory as a dict.
    """
    return [image.get(a, 0) for a in range(request.address, request.address + request.count)]
