"""Delivery latency (observed on the device → acknowledged by the far side) as histogram counts.

One observation per delivered batch, weighted by its size, from the batch's newest reading: the
delivery loop's hot path stays one subtraction and one bisect per batch, not per reading, and a
batch's readings were stored within one group commit of each other anyway. Read by the fleet
service into the status document, and from there by /metrics.
"""

from __future__ import annotations

import bisect
from typing import Any

__all__ = ["BUCKETS_S", "LatencyHistogram"]

BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class LatencyHistogram:
    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_S) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float, n: int = 1) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += n
        self.count += n
        self.sum += seconds * n

    def to_dict(self) -> dict[str, Any]:
        return {"buckets": list(BUCKETS_S), "counts": list(self.counts), "count": self.count, "sum": self.sum}
