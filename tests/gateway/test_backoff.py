"""Backoff grows exponentially within its cap, always with some delay, and resets."""

import random

from gateway.backoff import Backoff


def test_delays_stay_within_the_exponential_ceiling_and_the_cap() -> None:
    b = Backoff(initial=1.0, cap=8.0, rng=random.Random(1))
    ceilings = [1, 2, 4, 8, 8, 8, 8]
    for ceiling in ceilings:
        d = b.next()
        assert 0.1 <= d <= ceiling
    assert b.attempts == len(ceilings)
    b.reset()
    assert b.attempts == 0 and b.next() <= 1.0


def test_jitter_spreads_a_fleet() -> None:
    delays = {
        round(Backoff(initial=1.0, cap=60.0, attempts=5, rng=random.Random(seed)).next(), 3) for seed in range(50)
    }
    assert len(delays) > 40
