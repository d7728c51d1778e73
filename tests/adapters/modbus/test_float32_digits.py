"""float32 points read as the decimal the register holds (230.1 V), not its binary noise widened (230.10000610351562)."""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.modbus.codec import QualityCode, decode_point, decode_reads, encode_registers, plan_reads
from gateway.profiles import load_profile
from gateway.profiles.schema import ByteOrder, DataType, Point
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, until

SDM120 = load_profile("eastron/sdm120")
FLT_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
FLT_TRUE_MIN = struct.unpack(">f", b"\x00\x00\x00\x01")[0]  # the smallest subnormal


def point(**kw: object) -> Point:
    return Point.model_validate({"name": "p", "function_code": 3, "address": 0, "data_type": "float32", **kw})


def registers(data: bytes) -> list[int]:
    """Wire registers (ABCD, high word first) built by hand, independently of the codec's encoder."""
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def f32(value: float) -> list[int]:
    return registers(struct.pack(">f", value))


def significant_digits(value: float) -> int:
    return len(Decimal(repr(value)).normalize().as_tuple().digits)


@settings(max_examples=2000)
@given(st.binary(min_size=4, max_size=4).filter(lambda b: math.isfinite(struct.unpack(">f", b)[0])))
@example(b"\x43\x66\x19\x9a")  # 230.1
@example(b"\x80\x00\x00\x00")  # -0.0
@example(b"\x00\x00\x00\x01")  # the smallest subnormal
@example(b"\x00\x7f\xff\xff")  # the largest subnormal
@example(b"\x00\x80\x00\x00")  # the smallest normal
@example(b"\x7f\x7f\xff\xff")  # the largest finite
@example(b"\xff\x7f\xff\xff")
@example(b"\x4b\x80\x00\x01")  # 16777218, past where float32 holds every integer
def test_every_finite_float32_reads_as_a_short_decimal_of_the_same_float32(data: bytes) -> None:
    pv = decode_point(point(), registers(data))
    assert pv.quality is QualityCode.GOOD
    assert isinstance(pv.value, float) and pv.raw == pv.value
    assert struct.pack(">f", pv.value) == data  # the same float32, sign of zero included
    digits = significant_digits(pv.value)
    assert digits <= 9
    if digits > 6:  # no shorter correctly rounded decimal (from 6 digits on) is the same float32
        assert struct.pack(">f", float(f"{pv.value:.{digits - 1}g}")) != data


@settings(max_examples=300)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(list(ByteOrder)))
def test_the_short_decimal_does_not_depend_on_the_byte_order(value: float, order: ByteOrder) -> None:
    wire = encode_registers(value, DataType.FLOAT32, order)
    got = decode_point(point(byte_order=order.value), wire).value
    assert got == decode_point(point(), f32(value)).value
    assert struct.pack(">f", got) == struct.pack(">f", value)


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (230.1, 230.1),
        (0.1, 0.1),
        (49.98, 49.98),
        (-0.95, -0.95),
        (12345.67, 12345.67),
        (1234.5, 1234.5),  # exact in float32 already
        (16777217.0, 16777216.0),  # the register holds 2^24: that is the value
        (FLT_MAX, 3.4028235e38),
        (FLT_TRUE_MIN, 1.4013e-45),
    ],
)
def test_typical_meter_values_read_as_written(written: float, read: float) -> None:
    assert decode_point(point(), f32(written)).value == read


def test_negative_zero_keeps_its_sign() -> None:
    value = decode_point(point(), f32(-0.0)).value
    assert value == 0 and math.copysign(1, value) == -1  # type: ignore[arg-type]


def test_the_short_decimal_is_scaled_and_range_checked() -> None:
    assert decode_point(point(scale=0.001, unit="KVT"), f32(230.1)).value == 0.2301
    assert decode_point(point(offset=-40), f32(65.3)).value == 25.3
    # the register holds 0.1 (float32 0.100000001490116…), which is inside [0, 0.1]
    at_edge = decode_point(point(valid_range=[0, 0.1]), f32(0.1))
    assert (at_edge.value, at_edge.quality) == (0.1, QualityCode.GOOD)


def test_a_decimal_sentinel_on_a_float32_point_is_recognised() -> None:
    pv = decode_point(point(no_data=[-999.9]), f32(-999.9))
    assert (pv.raw, pv.value, pv.quality, pv.detail) == (-999.9, None, QualityCode.NO_DATA, "sentinel -999.9")


@pytest.mark.parametrize(
    ("sentinel", "written"),
    [
        (FLT_MAX, FLT_MAX),  # as Python widens float32's largest: 3.4028234663852886e+38
        (-9999.9, struct.unpack(">f", struct.pack(">f", -9999.9))[0]),  # as earlier releases showed it: -9999.900390625
        (-9999.9, -9999.9),
        (FLT_MAX, 3.4028235e38),
    ],
)
def test_a_sentinel_is_the_same_float32_however_it_is_written(sentinel: float, written: float) -> None:
    """Regression of review 3: a sentinel written as the register's value widened to a double no longer matched the
    shortest decimal, and a 'no data' reading (3.4e38 V) went out as good."""
    pv = decode_point(point(no_data=[1e39, written]), f32(sentinel))  # 1e39: beyond float32, matches nothing
    assert (pv.value, pv.quality) == (None, QualityCode.NO_DATA)
    assert decode_point(point(no_data=[written]), f32(230.1)).quality is QualityCode.GOOD


@pytest.mark.parametrize("data", [b"\x7f\xc0\x00\x01", b"\xff\xc0\x00\x00", b"\x7f\x80\x00\x00", b"\xff\x80\x00\x00"])
def test_nan_and_infinity_still_mean_no_data(data: bytes) -> None:
    pv = decode_point(point(), registers(data))
    assert (pv.value, pv.quality, pv.detail) == (None, QualityCode.NO_DATA, "not a number")


def test_float64_keeps_every_digit_it_holds() -> None:
    widened = struct.unpack(">f", struct.pack(">f", 230.1))[0]
    assert decode_point(point(data_type="float64"), registers(struct.pack(">d", widened))).value == widened


SDM120_VALUES = {
    "voltage": 230.1,
    "current": 1.23,
    "active_power": 283.1,
    "apparent_power": 290.4,
    "reactive_power": -63.7,
    "power_factor": 0.95,
    "frequency": 49.98,
    "import_active_energy": 12345.67,
    "export_active_energy": 0.01,
    "total_active_energy": 12345.68,
}


def test_sdm120_voltage_reads_230_1_not_its_float32_noise() -> None:
    assert decode_point(SDM120.point("voltage"), f32(230.1)).value == 230.1


def test_sdm120_reads_every_point_as_the_meter_shows_it() -> None:
    image: dict[int, int] = {}
    for name, value in SDM120_VALUES.items():
        p = SDM120.point(name)
        image[p.address], image[p.address + 1] = f32(value)
    requests = plan_reads(SDM120.points, max_registers=SDM120.interface.max_registers_per_read, max_gap=4)
    answers = [(r, [image.get(a, 0) for a in range(r.address, r.address + r.count)]) for r in requests]
    decoded = decode_reads(SDM120.points, answers)
    assert {name: pv.value for name, pv in decoded.items()} == SDM120_VALUES
    assert all(pv.quality is QualityCode.GOOD for pv in decoded.values())


async def test_sdm120_over_modbus_tcp_sends_the_short_decimals(tmp_path: Path) -> None:
    peer, port = await start_tcp_peer([image_from_values(1, SDM120, SDM120_VALUES)])
    devices = [{"name": "meter", "bus": "gw", "profile": "eastron/sdm120", "unit_id": 1, "poll_interval": 5}]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices), tmp_path)
    entity = "urn:ngsi-ld:ACMeasurement:gw1-meter"
    try:
        async with running(adapter) as readings:
            await until(lambda: any("voltage" in r.attributes for r in of(readings, entity)))
    finally:
        await peer.stop()
    got = next(r for r in of(readings, entity) if "voltage" in r.attributes)
    by_attribute = {str(SDM120.point(name).attribute): value for name, value in SDM120_VALUES.items()}
    assert {a: got.attributes[a].value for a in by_attribute} == by_attribute
    assert got.attributes["voltage"].metadata["quality"]["value"] == []
