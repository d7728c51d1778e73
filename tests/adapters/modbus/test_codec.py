"""Register ↔ value codec for every type and order, engineering scaling, sentinels, ranges, commands."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.modbus.codec import (
    CodecError,
    CommandRejected,
    PointValue,
    QualityCode,
    WriteRequest,
    decode_point,
    decode_registers,
    encode_command,
    encode_point,
    encode_registers,
)
from gateway.profiles.schema import ByteOrder, Command, DataType, Point

ORDERS = list(ByteOrder)


def point(**kw: object) -> Point:
    return Point.model_validate({"name": "p", "function_code": 3, "address": 0, **kw})


# float32 230.0 = 0x43660000; the four layouts found in the wild
@pytest.mark.parametrize(
    ("order", "registers"),
    [
        (ByteOrder.ABCD, (0x4366, 0x0000)),
        (ByteOrder.CDAB, (0x0000, 0x4366)),
        (ByteOrder.BADC, (0x6643, 0x0000)),
        (ByteOrder.DCBA, (0x0000, 0x6643)),
    ],
)
def test_float32_layouts(order: ByteOrder, registers: tuple[int, int]) -> None:
    assert decode_registers(registers, DataType.FLOAT32, order) == 230.0
    assert encode_registers(230.0, DataType.FLOAT32, order) == registers


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        (ByteOrder.ABCD, (0x0102, 0x0304, 0x0506, 0x0708)),
        (ByteOrder.CDAB, (0x0708, 0x0506, 0x0304, 0x0102)),
        (ByteOrder.BADC, (0x0201, 0x0403, 0x0605, 0x0807)),
        (ByteOrder.DCBA, (0x0807, 0x0605, 0x0403, 0x0201)),
    ],
)
def test_float64_word_orders(order: ByteOrder, registers: tuple[int, ...]) -> None:
    value = struct.unpack(">d", bytes(range(1, 9)))[0]
    assert decode_registers(registers, DataType.FLOAT64, order) == value


def test_int16_sign_and_strings() -> None:
    assert decode_registers([0xFF33], DataType.INT16) == -205
    assert decode_registers([0xFF33], DataType.UINT16) == 0xFF33
    assert decode_registers([0x3344, 0xFF33], DataType.INT32, ByteOrder.CDAB) == 0xFF333344 - 2**32
    assert decode_registers([0x5344, 0x4D31, 0x3230, 0x0000], DataType.STRING, count=4) == "SDM120"
    assert decode_registers([0x4453, 0x314D, 0x3032, 0x0000], DataType.STRING, ByteOrder.BADC, count=4) == "SDM120"


value_for = {
    DataType.INT16: st.integers(-(2**15), 2**15 - 1),
    DataType.UINT16: st.integers(0, 2**16 - 1),
    DataType.INT32: st.integers(-(2**31), 2**31 - 1),
    DataType.UINT32: st.integers(0, 2**32 - 1),
    DataType.FLOAT32: st.floats(width=32, allow_nan=False),
    DataType.FLOAT64: st.floats(allow_nan=False),
    DataType.BITFIELD: st.integers(0, 2**16 - 1),
}
text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)


@settings(max_examples=300)
@given(st.data(), st.sampled_from(sorted(value_for, key=lambda t: t.value)), st.sampled_from(ORDERS))
def test_every_type_round_trips_in_every_order(data: st.DataObject, dt: DataType, order: ByteOrder) -> None:
    value = data.draw(value_for[dt])
    regs = encode_registers(value, dt, order)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode_registers(regs, dt, order) == value


@settings(max_examples=100)
@given(text, st.sampled_from(ORDERS), st.integers(0, 5))
def test_strings_round_trip_in_every_order(value: str, order: ByteOrder, spare: int) -> None:
    count = (len(value) + 1) // 2 + spare or 1
    regs = encode_registers(value, DataType.STRING, order, count=count)
    assert len(regs) == count
    assert decode_registers(regs, DataType.STRING, order, count=count) == value


@settings(max_examples=200)
@given(st.floats(-1e6, 1e6), st.floats(0.001, 1000), st.floats(-100, 100), st.sampled_from(ORDERS))
def test_scaled_float_points_round_trip(value: float, scale: float, offset: float, order: ByteOrder) -> None:
    p = point(data_type="float64", scale=scale, offset=offset, byte_order=order.value)
    decoded = decode_point(p, encode_point(p, value))
    assert decoded.value == pytest.approx(value, rel=1e-9, abs=1e-6)


@settings(max_examples=200)
@given(st.integers(-32768, 32767), st.integers(0, 4), st.sampled_from(ORDERS))
def test_decimals_points_round_trip(raw: int, decimals: int, order: ByteOrder) -> None:
    p = point(data_type="int16", decimals_from="decimals", byte_order=order.value)
    value = raw / 10**decimals
    regs = encode_point(p, value, decimals=decimals)
    assert decode_registers(regs, DataType.INT16, order) == raw
    assert decode_point(p, regs, decimals=decimals).value == pytest.approx(value)


def test_scale_offset_and_rounding() -> None:
    p = point(data_type="int16", scale=0.1, unit="CEL")
    assert decode_point(p, [0xFF33]) == PointValue(name="p", raw=-205, value=-20.5, quality=QualityCode.GOOD)
    assert decode_point(p, [3]).value == 0.3  # not 0.30000000000000004
    q = point(data_type="uint16", scale=0.01, offset=-40)
    assert decode_point(q, [6550]).value == 25.5


def test_sentinels_nan_and_range_are_flagged_not_dropped() -> None:
    p = point(data_type="int16", scale=0.1, no_data=[32767, -9999], valid_range=[-40, 60])
    assert decode_point(p, [0x7FFF]) == PointValue(
        name="p", raw=32767, value=None, quality=QualityCode.NO_DATA, detail="sentinel 32767"
    )
    assert decode_point(p, encode_registers(-9999, DataType.INT16)).quality is QualityCode.NO_DATA
    assert decode_point(p, [700]) == PointValue(
        name="p", raw=700, value=70.0, quality=QualityCode.OUT_OF_RANGE, detail="outside -40..60"
    )
    f = point(data_type="float32")
    assert decode_point(f, encode_registers(math.nan, DataType.FLOAT32)).quality is QualityCode.NO_DATA
    assert decode_point(f, (0x7F80, 0)).detail == "not a number"  # +inf


def test_missing_or_absurd_decimals_mean_no_data() -> None:
    p = point(data_type="int16", decimals_from="decimals")
    assert decode_point(p, [123], decimals=2).value == 1.23
    assert decode_point(p, [123]).detail == "decimals from decimals unusable, got None"
    assert decode_point(p, [123], decimals=12).quality is QualityCode.NO_DATA


def test_bitfields() -> None:
    one = point(data_type="bitfield", bit=5)
    table = point(data_type="bitfield", bits={"fatal": 0, "range": 5})
    assert decode_point(one, [0x0020]).value is True
    assert decode_point(one, [0x0001]).value is False
    assert decode_point(table, [0x0021]).value == {"fatal": True, "range": True}
    assert encode_point(table, {"fatal": False, "range": True}) == (0x0020,)


def test_wrong_lengths_and_values_raise_codec_errors() -> None:
    with pytest.raises(CodecError, match=r"^modbus codec: float32 needs 2 register\(s\), got 1$"):
        decode_registers([1], DataType.FLOAT32)
    with pytest.raises(CodecError, match=r"^modbus codec: int16 holds integers -32768..32767, got 40000$"):
        encode_registers(40000, DataType.INT16)
    with pytest.raises(CodecError, match=r"^modbus codec: 2 registers hold 4 characters, got 5$"):
        encode_registers("ABCDE", DataType.STRING, count=2)
    with pytest.raises(CodecError, match=r"^modbus codec: register values are 0..65535, got 70000$"):
        decode_registers([70000], DataType.UINT16)


def command(**kw: object) -> Command:
    return Command.model_validate({"name": "c", "address": 0, **kw})


def test_commands_encode_and_refuse() -> None:
    relay = command(function_code=5, data_type="bool", address=3)
    assert encode_command(relay, True) == WriteRequest(function_code=5, address=3, bits=(True,))
    cal = command(function_code=6, data_type="uint16", address=1, values=[0x7C06, 0x7C07])
    assert encode_command(cal, 0x7C06) == WriteRequest(function_code=6, address=1, registers=(0x7C06,))
    with pytest.raises(CommandRejected) as err:
        encode_command(cal, 5)
    assert str(err.value) == "command c: value not allowed, got 5; allowed: 31750, 31751"
    height = command(function_code=6, data_type="uint16", address=5, range=[1, 4000])
    with pytest.raises(CommandRejected, match=r"^command c: value outside 1..4000, got 5000$"):
        encode_command(height, 5000)
    with pytest.raises(CommandRejected, match=r"^command c: needs true or false, got 1$"):
        encode_command(relay, 1)
    wide = command(function_code=16, data_type="float32", address=10, byte_order="CDAB")
    assert encode_command(wide, 230.0) == WriteRequest(function_code=16, address=10, registers=(0, 0x4366))
