"""Exponential backoff with full jitter, shared by the adapter supervisor and the delivery loops."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """`next()` gives the next delay: random in [0, min(cap, initial * 2**n)]; `reset()` after a success.

    Full jitter keeps a fleet of gateways that lost the same uplink from hammering it in step
    when it comes back.
    """

    initial: float = 1.0
    cap: float = 60.0
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        ceiling = min(self.cap, self.initial * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        # never below a tenth of the initial delay, so a hot loop cannot spin
        return max(self.initial / 10, self.rng.uniform(0, ceiling))

    def reset(self) -> None:
        self.attempts = 0
