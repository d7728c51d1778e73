"""Split a run of serialized entities into request bodies that respect size and count limits."""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(sizes: Sequence[int], *, max_bytes: int, max_entities: int, overhead: int) -> list[range]:
    """Consecutive index ranges whose body (`overhead` + sizes + one comma between entities) stays
    within `max_bytes` and `max_entities`, in order, greedily filled.

    An entity that alone exceeds `max_bytes` comes out as a batch of its own, so the uplink can
    send it, get the broker's 413 and dead-letter just that record.
    """
    if max_entities < 1:
        raise ValueError(f"max_entities: must be at least 1, got {max_entities}")
    batches: list[range] = []
    start = 0
    total = overhead
    count = 0
    for index, size in enumerate(sizes):
        if count and (count >= max_entities or total + 1 + size > max_bytes):
            batches.append(range(start, index))
            start, total, count = index, overhead, 0
        total += size + (1 if count else 0)
        count += 1
    if count:
        batches.append(range(start, len(sizes)))
    return batches
