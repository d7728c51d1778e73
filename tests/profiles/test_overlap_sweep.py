"""The profile overlap check: the same lines as comparing every pair of points, in O(n log n).

Regression case of a review: the check compared every pair (8000 points took 12.6 s), and it runs at every
config load and for every profile on every GET /devices. The oracle below is the pairwise check as it was,
written out here; the property is that the sweep says exactly what it says, line for line.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.profiles.schema import DataType, Point, profile_problems

TABLE = {1: "coils", 2: "discrete inputs", 3: "holding registers", 4: "input registers"}


def bits_of(p: Point) -> set[int]:
    return {p.bit} if p.bit is not None else set((p.bits or {}).values())


def pairwise(points: list[tuple[int, Point]]) -> list[str]:
    """Each point against every point before it in (function code, address, index) order; the first overlap."""
    out: list[str] = []
    ordered = sorted(points, key=lambda ip: (ip[1].function_code, ip[1].address, ip[0]))
    for a, (i, p) in enumerate(ordered):
        for j, q in ordered[:a]:
            if q.function_code != p.function_code or q.address + q.width <= p.address:
                continue
            both_bitfields_here = (
                p.data_type is DataType.BITFIELD and q.data_type is DataType.BITFIELD and p.address == q.address
            )
            if both_bitfields_here and not (bits_of(p) & bits_of(q)):
                continue
            if both_bitfields_here:
                shared = ", ".join(map(str, sorted(bits_of(p) & bits_of(q))))
                out.append(
                    f"points[{i}].bits: bit {shared} of {TABLE[p.function_code][:-1]} {p.address} is also read "
                    f'by points[{j}] ("{q.name}"), got bit {shared}; each bit belongs to one point'
                )
                break
            span = f"{q.address}" if q.width == 1 else f"{q.address}-{q.address + q.width - 1}"
            taken = "" if q.width == 1 else f"; {q.data_type.value} takes {q.width} registers"
            out.append(
                f'points[{i}].address: overlaps points[{j}] ("{q.name}", {TABLE[q.function_code]} '
                f"{span}), got {p.address}{taken}"
            )
            break
    return out


SHAPES: list[dict[str, Any]] = [
    {"data_type": "uint16"},
    {"data_type": "int32"},
    {"data_type": "float64"},
    {"data_type": "bool"},
    {"data_type": "string", "count": 3},
]


@st.composite
def a_point(draw: st.DrawFn, n: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": f"p{n}",
        "function_code": draw(st.sampled_from([3, 3, 3, 4, 1])),  # mostly one table, so they meet
        # few addresses: several points on one register is where bitfields share or do not
        "address": draw(st.integers(0, 6)),
    }
    kind = draw(st.sampled_from([*range(len(SHAPES)), len(SHAPES), len(SHAPES), len(SHAPES) + 1, len(SHAPES) + 1]))
    if kind < len(SHAPES):
        doc.update(SHAPES[kind])
    elif kind == len(SHAPES):
        doc.update(data_type="bitfield", bit=draw(st.integers(0, 3)))
    else:
        bits = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True))
        doc.update(data_type="bitfield", bits={f"b{b}": b for b in bits})
    return doc


@st.composite
def some_points(draw: st.DrawFn) -> list[tuple[int, Point]]:
    count = draw(st.integers(0, 20))
    return [(i, Point.model_validate(draw(a_point(i)))) for i in range(count)]


@settings(max_examples=400, deadline=None)
@given(some_points())
def test_the_sweep_says_what_comparing_every_pair_says(points: list[tuple[int, Point]]) -> None:
    assert profile_problems(points, []) == pairwise(points)


def test_the_pairs_the_oracle_tells_apart() -> None:
    """The cases the sweep handles apart, spelled out: an overlap from a lower address; bitfields sharing a
    register but not a bit, a third sharing a bit with the first; the first of several points that qualify."""
    docs: list[dict[str, Any]] = [
        {"name": "wide", "function_code": 3, "address": 0, "data_type": "float64"},
        {"name": "one", "function_code": 3, "address": 1, "data_type": "uint16"},
        {"name": "a", "function_code": 3, "address": 10, "data_type": "bitfield", "bits": {"x": 0, "y": 1}},
        {"name": "b", "function_code": 3, "address": 10, "data_type": "bitfield", "bit": 2},
        {"name": "c", "function_code": 3, "address": 10, "data_type": "bitfield", "bits": {"z": 2, "w": 1}},
        {"name": "d", "function_code": 3, "address": 10, "data_type": "int16"},
        {"name": "e", "function_code": 4, "address": 0, "data_type": "uint16"},
        {"name": "n1", "function_code": 3, "address": 20, "data_type": "uint16"},
        {"name": "n2", "function_code": 3, "address": 20, "data_type": "int16"},
        {"name": "f", "function_code": 3, "address": 20, "data_type": "bitfield", "bit": 0},
        {"name": "g1", "function_code": 3, "address": 30, "data_type": "bitfield", "bit": 5},
        {"name": "g2", "function_code": 3, "address": 30, "data_type": "bitfield", "bit": 5},
        {"name": "g3", "function_code": 3, "address": 30, "data_type": "bitfield", "bits": {"q": 5}},
    ]
    points = [(i, Point.model_validate(d)) for i, d in enumerate(docs)]
    assert profile_problems(points, []) == [
        'points[1].address: overlaps points[0] ("wide", holding registers 0-3), got 1; float64 takes 4 registers',
        'points[4].bits: bit 1 of holding register 10 is also read by points[2] ("a"), got bit 1; each bit belongs '
        "to one point",
        'points[5].address: overlaps points[2] ("a", holding registers 10), got 10',
        'points[8].address: overlaps points[7] ("n1", holding registers 20), got 20',
        'points[9].address: overlaps points[7] ("n1", holding registers 20), got 20',
        'points[11].bits: bit 5 of holding register 30 is also read by points[10] ("g1"), got bit 5; each bit '
        "belongs to one point",
        'points[12].bits: bit 5 of holding register 30 is also read by points[10] ("g1"), got bit 5; each bit '
        "belongs to one point",
    ]
    assert profile_problems(points, []) == pairwise(points)


def test_eight_thousand_points_are_checked_in_well_under_a_second() -> None:
    points = [
        (i, Point.model_validate({"name": f"p{i}", "function_code": 3, "address": i, "data_type": "uint16"}))
        for i in range(8000)
    ]
    started = time.perf_counter()
    assert profile_problems(points, []) == []
    assert time.perf_counter() - started < 1.0  # was 12.6 s: every pair was compared
