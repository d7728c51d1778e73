"""The firmware profile schema: typed sections for one device model, and the checks across them.

A profile is validated in two steps (see `gateway.profiles.loader.parse_profile`): pydantic checks
each section's keys and types, then `point_problems` / `command_problems` / `profile_problems`
check what depends on more than one key (function code vs data type, overlapping registers, …).
Every problem is one `<key.path>: <what>, got <value>[; <fix>]` line.
"""

from __future__ import annotations

import bisect
import enum
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo, field_validator

from gateway.configbase import Field, Section
from gateway.ngsi.identifiers import check_attribute_name, check_attribute_type, check_entity_type

__all__ = [
    "BAUD_RATES",
    "BIT_FUNCTIONS",
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "READ_FUNCTIONS",
    "WRITE_FUNCTIONS",
    "ByteOrder",
    "Command",
    "ControlledProperties",
    "DataType",
    "Interface",
    "Parity",
    "Point",
    "Profile",
    "Quality",
    "Transport",
    "command_problems",
    "parse_address",
    "point_problems",
    "profile_problems",
    "register_count",
]

MAX_READ_REGISTERS = 125  # FC03/FC04 limit of the Modbus application protocol
MAX_READ_BITS = 2000  # FC01/FC02
MAX_WRITE_REGISTERS = 123  # FC16
MAX_WRITE_COILS = 1968  # FC15
BAUD_RATES = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 128000, 230400, 256000)

READ_FUNCTIONS = (1, 2, 3, 4)
WRITE_FUNCTIONS = (5, 6, 15, 16)
BIT_FUNCTIONS = (1, 2, 5, 15)
# the leading digit of "40001"-style (Modicon) references, per function code
_MODICON_PREFIX = {1: "0", 5: "0", 15: "0", 2: "1", 4: "3", 3: "4", 6: "4", 16: "4"}


class Transport(enum.Enum):
    RTU = "rtu"
    TCP = "tcp"
    RTU_OVER_TCP = "rtu-over-tcp"


class Parity(enum.Enum):
    NONE = "N"
    EVEN = "E"
    ODD = "O"


class DataType(enum.Enum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BITFIELD = "bitfield"


class ByteOrder(enum.Enum):
    """Order of the value's bytes on the wire, A = most significant; encodes byte *and* word order.

    ABCD big-endian; CDAB word-swapped (the most common 32-bit layout after ABCD); BADC byte-swapped
    within each register; DCBA fully little-endian. For 16-bit values only the byte swap matters; for
    strings only the byte swap within each register matters.
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"

    @property
    def swaps_words(self) -> bool:
        return self in (ByteOrder.CDAB, ByteOrder.DCBA)

    @property
    def swaps_bytes(self) -> bool:
        return self in (ByteOrder.BADC, ByteOrder.DCBA)


NUMERIC_TYPES = frozenset(
    {DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.FLOAT32, DataType.FLOAT64}
)
INTEGER_TYPES = frozenset({DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32})
_WIDTH = {
    DataType.BOOL: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.BITFIELD: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
}
_INT_RANGE = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}
_DEFAULT_ATTRIBUTE_TYPE = {DataType.BOOL: "Boolean", DataType.STRING: "Text"}


def register_count(data_type: DataType, count: int | None = None) -> int:
    """How many registers (or bits, for bool on FC1/FC2) a value of this type occupies."""
    if data_type is DataType.STRING:
        if count is None:
            raise ValueError("string needs a count of registers")
        return count
    return _WIDTH[data_type]


def integer_range(data_type: DataType) -> tuple[int, int]:
    return _INT_RANGE[data_type]


_HEX_RE = re.compile(r"^0[xX][0-9A-Fa-f]{1,4}$")
_MODICON_RE = re.compile(r"^[0134](\d{4}|\d{5})$")


def parse_address(value: Any, function_code: int | None) -> int:
    """A 0-based protocol address from an integer, a "0x…" string or a "40001"-style reference.

    An integer is always the 0-based address. An integer that reads like Modicon notation for its
    function code (40001-49999 on FC03, 30001-39999 on FC04, 10001-19999 on FC02) is ambiguous and
    refused: the fix names both unambiguous spellings.
    """
    if isinstance(value, bool):
        raise ValueError('must be an integer 0..65535, a "0x…" string or a "40001"-style string')
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFF:
            raise ValueError("must be 0..65535 (the 0-based protocol address)")
        prefix = _MODICON_PREFIX.get(function_code or 0)
        lo = {"4": 40001, "3": 30001, "1": 10001}.get(prefix or "")
        if lo is not None and function_code in READ_FUNCTIONS and lo <= value <= lo + 9998:
            raise ValueError(
                f'is ambiguous: {value} looks like 1-based {prefix}xxxx notation; write address = "{value}" '
                f'for register {value} of that notation (0-based {value - lo}), or address = "0x{value:04X}" '
                f"if {value} really is the 0-based protocol address"
            )
        return value
    if isinstance(value, str):
        if _HEX_RE.match(value):
            return int(value, 16)
        if _MODICON_RE.match(value):
            prefix = _MODICON_PREFIX.get(function_code or 0)
            if prefix is not None and value[0] != prefix:
                raise ValueError(
                    f"is {value[0]}xxxx notation, which does not belong to function code {function_code} "
                    f"(expected {prefix}xxxx)"
                )
            number = int(value[1:])
            if not 1 <= number <= 0x10000:
                raise ValueError("must name register 1..65536 in 1-based notation")
            return number - 1
        raise ValueError('must be an integer 0..65535, a "0x…" string or a 1-based "40001"-style string')
    raise ValueError('must be an integer 0..65535, a "0x…" string or a "40001"-style string')


def _check_unit(v: str) -> str:
    if not re.fullmatch(r"[A-Z0-9]{2,3}", v):
        raise ValueError("must be a UN/CEFACT common code of 2-3 characters A-Z 0-9 (e.g. CEL, MTR, P1, KWH)")
    return v


def _check_finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


def _check_range(v: tuple[float, float]) -> tuple[float, float]:
    if not (math.isfinite(v[0]) and math.isfinite(v[1])) or v[0] >= v[1]:
        raise ValueError(f"must be [min, max] with min < max, got [{v[0]:g}, {v[1]:g}]")
    return v


def _read_function(v: int) -> int:
    if v not in READ_FUNCTIONS:
        raise ValueError("must be 1 (coils), 2 (discrete inputs), 3 (holding registers) or 4 (input registers)")
    return v


def _write_function(v: int) -> int:
    if v not in WRITE_FUNCTIONS:
        raise ValueError("must be 5 (write coil), 6 (write register), 15 (write coils) or 16 (write registers)")
    return v


_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _check_name(v: str) -> str:
    if not _NAME_RE.match(v):
        raise ValueError("must be 1-64 characters of a-z 0-9 _ starting with a letter")
    return v


Name = Annotated[str, AfterValidator(_check_name)]
UnitCode = Annotated[str, AfterValidator(_check_unit)]
Finite = Annotated[float, AfterValidator(_check_finite)]
Range = Annotated[tuple[float, float], AfterValidator(_check_range)]
AttributeName = Annotated[str, AfterValidator(check_attribute_name)]
AttributeType = Annotated[str, AfterValidator(check_attribute_type)]
EntityType = Annotated[str, AfterValidator(check_entity_type)]


def _nonblank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


NonBlank = Annotated[str, AfterValidator(_nonblank)]


_CONTROLLED_RE = re.compile(r"^[a-z][A-Za-z0-9]{0,63}$")


def _check_controlled(v: tuple[str, ...]) -> tuple[str, ...]:
    for name in v:
        if not _CONTROLLED_RE.match(name):
            raise ValueError(
                f"must list Smart Data Models property names in lowerCamelCase (waterLevel, temperature, "
                f'humidity), got "{name}"'
            )
    duplicate = next((name for i, name in enumerate(v) if name in v[:i]), None)
    if duplicate is not None:
        raise ValueError(f'must name each property once, got "{duplicate}" twice')
    return v


ControlledProperties = Annotated[tuple[str, ...], AfterValidator(_check_controlled)]


def _baud(v: int) -> int:
    if v not in BAUD_RATES:
        raise ValueError(f"must be one of {', '.join(map(str, BAUD_RATES))}")
    return v


class Interface(Section):
    """How to reach the device: serial line or TCP settings and the polite limits it needs."""

    transport: Transport = Transport.RTU
    baud: Annotated[int, AfterValidator(_baud)] = 9600
    parity: Parity = Parity.NONE
    data_bits: Annotated[int, Field(ge=7, le=8)] = 8
    stop_bits: Annotated[int, Field(ge=1, le=2)] = 1
    unit_id: Annotated[int, Field(ge=1, le=247)] = 1
    timeout: Annotated[float, Field(gt=0, le=60)] = 1.0
    inter_request_delay: Annotated[float, Field(ge=0, le=60)] = 0.0
    max_registers_per_read: Annotated[int, Field(ge=1, le=MAX_READ_REGISTERS)] = MAX_READ_REGISTERS
    max_bits_per_read: Annotated[int, Field(ge=1, le=MAX_READ_BITS)] = MAX_READ_BITS
    max_gap: Annotated[int, Field(ge=0, le=MAX_READ_REGISTERS)] = 0


class Quality(Section):
    """Per-point plausibility checks the adapter applies; a failing sample is kept and flagged."""

    stuck_window: Annotated[float, Field(gt=0)] | None = None  # seconds without any change
    spike_threshold: Annotated[float, Field(gt=0)] | None = None  # largest plausible change between samples


def _address_before(value: Any, info: ValidationInfo) -> Any:
    return parse_address(value, info.data.get("function_code"))


class Point(Section):
    """One value read from the device."""

    name: Name
    function_code: Annotated[int, AfterValidator(_read_function)]
    address: int
    data_type: DataType
    byte_order: ByteOrder = ByteOrder.ABCD
    count: Annotated[int, Field(ge=1, le=MAX_READ_REGISTERS)] | None = None
    bit: Annotated[int, Field(ge=0, le=15)] | None = None
    bits: dict[str, Annotated[int, Field(ge=0, le=15)]] | None = None
    scale: Finite = 1.0
    offset: Finite = 0.0
    decimals_from: Name | None = None
    unit: UnitCode | None = None
    valid_range: Range | None = None
    no_data: tuple[Finite, ...] = ()
    poll_interval: Annotated[float, Field(gt=0)] | None = None
    attribute: AttributeName | None = None
    attribute_type: AttributeType | None = None
    quality: Quality | None = None
    description: str = ""

    _address = field_validator("address", mode="before")(_address_before)

    @property
    def width(self) -> int:
        """Registers (FC3/FC4) or bits (FC1/FC2) this point occupies."""
        return (self.count or 1) if self.data_type is DataType.STRING else _WIDTH[self.data_type]

    @property
    def ngsi_type(self) -> str:
        if self.attribute_type:
            return self.attribute_type
        if self.data_type is DataType.BITFIELD:
            return "Boolean" if self.bit is not None else "StructuredValue"
        return _DEFAULT_ATTRIBUTE_TYPE.get(self.data_type, "Number")


class Command(Section):
    """One write the device accepts (a relay, a calibration, a setting)."""

    name: Name
    function_code: Annotated[int, AfterValidator(_write_function)]
    address: int
    data_type: DataType
    byte_order: ByteOrder = ByteOrder.ABCD
    count: Annotated[int, Field(ge=1, le=MAX_WRITE_COILS)] | None = None
    values: tuple[Finite, ...] | None = None
    range: Range | None = None
    description: str = ""

    _address = field_validator("address", mode="before")(_address_before)


class Profile(Section):
    """One device model (and the firmware versions it is known to fit)."""

    vendor: NonBlank
    model: NonBlank
    description: str = ""
    firmware_versions: tuple[str, ...] = ()
    source: NonBlank = Field(description="the public document the register map comes from")
    entity_type: EntityType
    # what the device senses or switches, in the Device model's words: its Device entity's controlledProperty
    controlled_property: ControlledProperties = ()
    poll_interval: Annotated[float, Field(gt=0)] = 60.0
    interface: Interface = Interface()
    points: tuple[Point, ...]
    commands: tuple[Command, ...] = ()

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)

    def command(self, name: str) -> Command:
        for c in self.commands:
            if c.name == name:
                return c
        raise KeyError(name)

    def interval_of(self, point: Point) -> float:
        return point.poll_interval if point.poll_interval is not None else self.poll_interval


# --- checks across keys ---------------------------------------------------------------------------------


def _show(v: object) -> str:
    if isinstance(v, enum.Enum):
        v = v.value
    if isinstance(v, float):
        return f"{v:g}"
    return f'"{v}"' if isinstance(v, str) else str(v)


def point_problems(p: Point, where: str, interface: Interface | None = None) -> list[str]:
    """What is wrong with one point that no single key shows."""
    out: list[str] = []
    dt = p.data_type
    is_bits = p.function_code in (1, 2)
    if is_bits and dt is not DataType.BOOL:
        out.append(
            f"{where}.data_type: function code {p.function_code} reads bits, so only bool fits, got "
            f"{_show(dt)}; use function_code 3 or 4 for registers"
        )
    if not is_bits and dt is DataType.BOOL:
        out.append(
            f"{where}.data_type: bool is only for function codes 1 and 2 (coils, discrete inputs), got "
            f'"bool" on function code {p.function_code}; use bitfield with bit = N for a bit of a register'
        )
    if dt is DataType.STRING and p.count is None:
        out.append(f"{where}.count: required for string (registers, 2 characters each), got nothing")
    if dt is not DataType.STRING and p.count is not None:
        out.append(f"{where}.count: only for string, got {p.count} on {_show(dt)}")
    if dt is DataType.BITFIELD:
        if (p.bit is None) == (p.bits is None):
            out.append(
                f"{where}.bit: bitfield needs exactly one of bit = N or bits = {{name = N, ...}}, got "
                f"{'both' if p.bit is not None else 'neither'}"
            )
        if p.bits is not None:
            out.extend(
                f'{where}.bits.{key}: name must be 1-64 characters of a-z 0-9 _ starting with a letter, got "{key}"'
                for key in p.bits
                if not _NAME_RE.match(key)
            )
            seen: dict[int, str] = {}
            for key, index in p.bits.items():
                if index in seen:
                    out.append(f"{where}.bits.{key}: bit {index} is already named {seen[index]}, got {index}")
                seen.setdefault(index, key)
    else:
        out.extend(
            f"{where}.{key}: only for bitfield, got {_show(getattr(p, key)) if key == 'bit' else 'a table'} "
            f"on {_show(dt)}"
            for key in ("bit", "bits")
            if getattr(p, key) is not None
        )
    numeric = dt in NUMERIC_TYPES
    if p.scale == 0:
        out.append(f"{where}.scale: must not be 0 (every value would read 0), got 0")
    if not numeric:
        out.extend(
            f"{where}.{key}: only for numeric data types, got it on {_show(dt)}"
            for key in ("scale", "offset", "decimals_from", "valid_range", "quality")
            if key in p.model_fields_set
        )
        if p.no_data:
            out.append(f"{where}.no_data: only for numeric data types, got it on {_show(dt)}")
    if numeric and dt in INTEGER_TYPES:
        lo, hi = _INT_RANGE[dt]
        for i, s in enumerate(p.no_data):
            if not (s == int(s) and lo <= s <= hi):
                out.append(
                    f"{where}.no_data[{i}]: must be a raw {dt.value} value {lo}..{hi}, got {_show(s)}; "
                    f"sentinels compare with the raw register value, before scale and offset"
                )
    if "byte_order" in p.model_fields_set and dt is DataType.BOOL:
        out.append(f'{where}.byte_order: only for register data types, got it on "bool"')
    end = p.address + p.width - 1
    if end > 0xFFFF:
        out.append(
            f"{where}.address: {dt.value} needs {p.width} {'bits' if is_bits else 'registers'} from "
            f"{p.address}, past the last address 65535, got {p.address}"
        )
    if interface is not None:
        limit = interface.max_bits_per_read if is_bits else interface.max_registers_per_read
        if p.width > limit:
            key = "max_bits_per_read" if is_bits else "max_registers_per_read"
            out.append(
                f"{where}.count: needs {p.width} registers, more than interface.{key}, got {p.width}; "
                f"raise interface.{key} or split the point"
            )
    if p.decimals_from is not None and p.decimals_from == p.name:
        out.append(f'{where}.decimals_from: must name another point, got "{p.name}"')
    return out


def command_problems(c: Command, where: str) -> list[str]:
    """What is wrong with one command that no single key shows."""
    out: list[str] = []
    fc, dt = c.function_code, c.data_type
    if fc in (5, 15) and dt is not DataType.BOOL:
        out.append(f"{where}.data_type: function code {fc} writes coils, so only bool fits, got {_show(dt)}")
    if fc == 6 and dt not in (DataType.INT16, DataType.UINT16):
        out.append(
            f"{where}.data_type: function code 6 writes one register, so only int16 or uint16 fit, got "
            f"{_show(dt)}; use function code 16 for wider values"
        )
    if fc == 16 and dt in (DataType.BOOL, DataType.BITFIELD):
        out.append(f"{where}.data_type: function code 16 writes registers, got {_show(dt)}")
    if dt is DataType.STRING and c.count is None:
        out.append(f"{where}.count: required for string, got nothing")
    if c.count is not None:
        if fc == 15 and c.count > MAX_WRITE_COILS:
            out.append(f"{where}.count: at most {MAX_WRITE_COILS} coils, got {c.count}")
        if fc == 16 and dt is DataType.STRING and c.count > MAX_WRITE_REGISTERS:
            out.append(f"{where}.count: at most {MAX_WRITE_REGISTERS} registers, got {c.count}")
        if not (fc == 15 or dt is DataType.STRING):
            out.append(f"{where}.count: only for function code 15 or a string, got {c.count}")
    if c.values is not None and c.range is not None:
        out.append(f"{where}.values: give values or range, not both, got both")
    if dt in INTEGER_TYPES:
        lo, hi = _INT_RANGE[dt]
        for i, v in enumerate(c.values or ()):
            if not (v == int(v) and lo <= v <= hi):
                out.append(f"{where}.values[{i}]: must fit {dt.value} ({lo}..{hi}), got {_show(v)}")
        if c.range is not None and (c.range[0] < lo or c.range[1] > hi):
            out.append(f"{where}.range: must fit {dt.value} ({lo}..{hi}), got [{c.range[0]:g}, {c.range[1]:g}]")
    if dt in (DataType.BOOL, DataType.STRING) and (c.values is not None or c.range is not None):
        out.append(
            f"{where}.{'values' if c.values is not None else 'range'}: only for numeric data types, got it on "
            f"{_show(dt)}"
        )
    return out


def _table(fc: int) -> str:
    return {1: "coils", 2: "discrete inputs", 3: "holding registers", 4: "input registers"}[fc]


def profile_problems(points: list[tuple[int, Point]], commands: list[tuple[int, Command]]) -> list[str]:
    """Checks across points and commands: unique names, overlaps, decimals_from references."""
    out: list[str] = []
    names: dict[str, int] = {}
    attrs: dict[str, int] = {}
    for i, p in points:
        if p.name in names:
            out.append(f'points[{i}].name: must be unique, got "{p.name}"; points[{names[p.name]}] has it already')
        names.setdefault(p.name, i)
        if p.attribute is not None:
            if p.attribute in attrs:
                out.append(
                    f'points[{i}].attribute: must be unique, got "{p.attribute}"; '
                    f"points[{attrs[p.attribute]}] has it already"
                )
            attrs.setdefault(p.attribute, i)
    by_name = {p.name: (i, p) for i, p in points}
    out.extend(_overlaps(points))
    for i, p in points:
        if p.decimals_from is None or p.decimals_from == p.name:
            continue
        ref = by_name.get(p.decimals_from)
        if ref is None:
            out.append(
                f'points[{i}].decimals_from: no point is named so, got "{p.decimals_from}"; '
                f"valid: {', '.join(sorted(names)) or 'none'}"
            )
            continue
        j, q = ref
        if q.data_type not in (DataType.INT16, DataType.UINT16) or q.function_code not in (3, 4):
            out.append(
                f'points[{i}].decimals_from: must name an int16 or uint16 register point, got "{q.name}" '
                f"({q.data_type.value} on function code {q.function_code})"
            )
        elif q.decimals_from is not None or q.scale != 1 or q.offset != 0:
            out.append(
                f'points[{i}].decimals_from: points[{j}] ("{q.name}") must be a plain count of decimals '
                f"without scale, offset or decimals_from of its own, got one with them"
            )
    cnames: dict[str, int] = {}
    for i, c in commands:
        if c.name in cnames:
            out.append(f'commands[{i}].name: must be unique, got "{c.name}"; commands[{cnames[c.name]}] has it already')
        cnames.setdefault(c.name, i)
    return out


def _overlaps(points: list[tuple[int, Point]]) -> list[str]:
    """One line per point that overlaps a point before it, naming the first such point.

    "Before" is in the order (function code, address, index in the file); two bitfields on the same
    register that read different bits do not overlap. A sweep, not a comparison of every pair (a
    profile is checked at every config load and for every profile the devices page lists): the
    running maximum of the end addresses, kept per position, is non-decreasing, so a binary search
    finds the first earlier point that reaches past this one's address. When that point starts at a
    lower address it is the answer; when it starts at the same address, the answer is the first point
    at this address that is not a bitfield, or a bitfield sharing a bit (kept per bit as the sweep
    goes).
    """
    out: list[str] = []
    ordered = sorted(points, key=lambda ip: (ip[1].function_code, ip[1].address, ip[0]))
    reach: list[int] = []  # running maximum of `address + width` in this function code, per position
    group: list[tuple[int, Point]] = []  # the points of this function code so far, in order
    here: int | None = None  # the address of the latest point
    first_other: int | None = None  # position of the first non-bitfield at `here`
    first_with_bit: dict[int, int] = {}  # bit -> position of the first bitfield at `here` reading it
    for i, p in ordered:
        if group and group[-1][1].function_code != p.function_code:
            reach, group, here = [], [], None
        if p.address != here:
            here, first_other, first_with_bit = p.address, None, {}
        k = bisect.bisect_right(reach, p.address)
        if k < len(group):
            found: int | None = k
            if group[k][1].address == p.address and p.data_type is DataType.BITFIELD:
                candidates = (first_other, *(first_with_bit.get(b) for b in _bits_of(p)))
                found = min((c for c in candidates if c is not None), default=None)
            if found is not None:
                out.append(_overlap(i, p, *group[found]))
        pos = len(group)
        group.append((i, p))
        reach.append(max(reach[-1], p.address + p.width) if reach else p.address + p.width)
        if p.data_type is not DataType.BITFIELD:
            first_other = pos if first_other is None else first_other
        else:
            for b in _bits_of(p):
                first_with_bit.setdefault(b, pos)
    return out


def _overlap(i: int, p: Point, j: int, q: Point) -> str:
    if p.data_type is DataType.BITFIELD and q.data_type is DataType.BITFIELD and p.address == q.address:
        shared = ", ".join(map(str, sorted(_bits_of(p) & _bits_of(q))))
        return (
            f"points[{i}].bits: bit {shared} of {_table(p.function_code)[:-1]} {p.address} is also read "
            f'by points[{j}] ("{q.name}"), got bit {shared}; each bit belongs to one point'
        )
    span = f"{q.address}" if q.width == 1 else f"{q.address}-{q.address + q.width - 1}"
    taken = "" if q.width == 1 else f"; {q.data_type.value} takes {q.width} registers"
    return (
        f'points[{i}].address: overlaps points[{j}] ("{q.name}", {_table(q.function_code)} '
        f"{span}), got {p.address}{taken}"
    )


def _bits_of(p: Point) -> set[int]:
    if p.bit is not None:
        return {p.bit}
    return set((p.bits or {}).values())
