"""The compact form of sequence numbers the uplinks put on what they send: exact, canonical, reversible."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from gateway.uplinks.seqs import seq_ranges


def parse(text: str) -> set[int]:
    """What a receiver does with the header: `101-105,108` back to the set."""
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def test_runs_collapse() -> None:
    assert seq_ranges([105, 101, 102, 103, 104, 108, 110, 111]) == "101-105,108,110-111"
    assert seq_ranges([7]) == "7"
    assert seq_ranges([]) == ""
    assert seq_ranges([3, 3, 4]) == "3-4"


@given(st.lists(st.integers(min_value=1, max_value=10_000), max_size=300))
def test_the_text_holds_exactly_the_set_in_canonical_form(seqs: list[int]) -> None:
    text = seq_ranges(seqs)
    assert seq_ranges(tuple(seqs)) == text  # a message's seqs come as a tuple, one of them by a short path
    assert parse(text) == set(seqs)
    bounds = [tuple(int(x) for x in part.split("-")) for part in filter(None, text.split(","))]
    flat = [n for b in bounds for n in b]
    assert flat == sorted(flat)  # ascending
    for before, after in itertools.pairwise(bounds):
        assert after[0] > before[-1] + 1  # maximal runs: neighbours would have been merged
    assert all(len(b) == 1 or b[0] < b[1] for b in bounds)  # a run of one is written as one number


@given(st.integers(min_value=1, max_value=10**12), st.integers(min_value=1, max_value=2000))
def test_an_unbroken_run_in_any_order_is_one_range(start: int, length: int) -> None:
    seqs = list(range(start, start + length))
    seqs.reverse()
    assert seq_ranges(seqs) == (str(start) if length == 1 else f"{start}-{start + length - 1}")
