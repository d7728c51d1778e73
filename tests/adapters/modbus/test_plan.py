"""The read planner: every point read exactly once, never past the protocol or profile limits."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.modbus.codec import CodecError, ReadRequest, plan_reads
from gateway.profiles.schema import DataType, Point

REGISTER_TYPES = [
    DataType.INT16,
    DataType.UINT16,
    DataType.INT32,
    DataType.FLOAT32,
    DataType.FLOAT64,
    DataType.STRING,
    DataType.BITFIELD,
]


@st.composite
def point_sets(draw: st.DrawFn) -> list[Point]:
    """Non-overlapping points across the four tables, as a validated profile would have them."""
    points: list[Point] = []
    for fc in draw(st.lists(st.sampled_from([1, 2, 3, 4]), min_size=1, max_size=4, unique=True)):
        address = draw(st.integers(0, 300))
        for _ in range(draw(st.integers(1, 25))):
            dt = DataType.BOOL if fc in (1, 2) else draw(st.sampled_from(REGISTER_TYPES))
            extra: dict[str, object] = {}
            if dt is DataType.STRING:
                extra["count"] = draw(st.integers(1, 10))
            if dt is DataType.BITFIELD:
                extra["bit"] = 0
            p = Point.model_validate(
                {"name": f"p{len(points)}", "function_code": fc, "address": address, "data_type": dt.value, **extra}
            )
            if p.address + p.width > 0x10000:
                break
            points.append(p)
            address += p.width + draw(st.integers(0, 6))
    return points


@settings(max_examples=200)
@given(point_sets(), st.integers(1, 125), st.integers(1, 2000), st.integers(0, 10))
def test_plan_covers_every_point_once_within_limits(
    points: list[Point], max_registers: int, max_bits: int, max_gap: int
) -> None:
    widest = max((p.width for p in points if p.function_code in (3, 4)), default=1)
    max_registers = max(max_registers, widest)
    plan = plan_reads(points, max_registers=max_registers, max_bits=max_bits, max_gap=max_gap)
    by_name = {p.name: p for p in points}
    served = [name for r in plan for name in r.points]
    assert sorted(served) == sorted(by_name)
    for r in plan:
        limit = max_bits if r.function_code in (1, 2) else max_registers
        assert 1 <= r.count <= limit
        members = sorted((by_name[n] for n in r.points), key=lambda p: p.address)
        assert all(p.function_code == r.function_code for p in members)
        assert members[0].address == r.address
        assert max(p.address + p.width for p in members) == r.address + r.count
        for a, b in itertools.pairwise(members):
            assert b.address - (a.address + a.width) <= max_gap


@settings(max_examples=100)
@given(point_sets())
def test_without_a_gap_allowance_no_read_spans_unmapped_addresses(points: list[Point]) -> None:
    mapped = {(p.function_code, a) for p in points for a in range(p.address, p.address + p.width)}
    for r in plan_reads(points, max_gap=0):
        assert all((r.function_code, a) in mapped for a in range(r.address, r.address + r.count))


def make(name: str, address: int, dt: str = "float32", fc: int = 4, **kw: object) -> Point:
    return Point.model_validate({"name": name, "function_code": fc, "address": address, "data_type": dt, **kw})


def test_eastron_style_blocks() -> None:
    points = [make("v", 0), make("i", 6), make("p", 12), make("f", 0x46), make("e", 0x48), make("t", 0x156)]
    assert plan_reads(points, max_registers=60, max_gap=4) == (
        ReadRequest(function_code=4, address=0, count=14, points=("v", "i", "p")),
        ReadRequest(function_code=4, address=0x46, count=4, points=("f", "e")),
        ReadRequest(function_code=4, address=0x156, count=2, points=("t",)),
    )
    assert len(plan_reads(points, max_registers=60, max_gap=0)) == 5


def test_bitfields_sharing_a_register_share_the_read() -> None:
    points = [make("a", 2, "bitfield", bit=0), make("b", 2, "bitfield", bit=1), make("c", 3, "int16")]
    assert plan_reads(points) == (ReadRequest(function_code=4, address=2, count=2, points=("a", "b", "c")),)


def test_a_point_wider_than_the_limit_is_refused() -> None:
    with pytest.raises(CodecError, match=r"^modbus plan: point s needs 8, more than one read's 4, got 8$"):
        plan_reads([make("s", 0, "string", count=8)], max_registers=4)
    with pytest.raises(ValueError, match=r"max_registers=126"):
        plan_reads([], max_registers=126)
