"""Batch planning on byte sizes: consecutive, within limits, greedy, oversize alone."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ngsi.batching import plan_batches
from gateway.ngsi.ld import LD_BODY_OVERHEAD, ld_upsert_body
from gateway.ngsi.v2 import V2_BODY_OVERHEAD, v2_update_body


def body_size(sizes: list[int], r: range, overhead: int) -> int:
    return overhead + sum(sizes[i] for i in r) + max(len(r) - 1, 0)


@settings(max_examples=300)
@given(
    st.lists(st.integers(min_value=1, max_value=500), max_size=60),
    st.integers(min_value=50, max_value=2000),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=0, max_value=40),
)
def test_plan(sizes: list[int], max_bytes: int, max_entities: int, overhead: int) -> None:
    batches = plan_batches(sizes, max_bytes=max_bytes, max_entities=max_entities, overhead=overhead)
    assert [i for r in batches for i in r] == list(range(len(sizes)))
    for n, r in enumerate(batches):
        assert 1 <= len(r) <= max_entities
        size = body_size(sizes, r, overhead)
        assert size <= max_bytes or len(r) == 1
        if n + 1 < len(batches):  # greedy: the next entity would not have fitted
            grown = range(r.start, r.stop + 1)
            assert len(grown) > max_entities or body_size(sizes, grown, overhead) > max_bytes


def test_oversize_entity_travels_alone() -> None:
    assert plan_batches([10, 5000, 10, 10], max_bytes=100, max_entities=10, overhead=2) == [
        range(1),
        range(1, 2),
        range(2, 4),
    ]
    assert plan_batches([], max_bytes=100, max_entities=10, overhead=2) == []
    with pytest.raises(ValueError, match="max_entities: must be at least 1, got 0"):
        plan_batches([1], max_bytes=100, max_entities=0, overhead=2)


@given(
    st.lists(st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), max_size=3), min_size=1, max_size=8)
)
def test_bodies_have_the_planned_size(entities: list[dict[str, int]]) -> None:
    parts = [orjson.dumps(e) for e in entities]
    sizes = [len(p) for p in parts]
    v2 = v2_update_body(parts)
    assert len(v2) == body_size(sizes, range(len(parts)), V2_BODY_OVERHEAD)
    assert orjson.loads(v2) == {"actionType": "append", "entities": entities}
    ld = ld_upsert_body(parts)
    assert len(ld) == body_size(sizes, range(len(parts)), LD_BODY_OVERHEAD)
    assert orjson.loads(ld) == entities
