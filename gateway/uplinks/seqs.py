"""The compact text form of buffer sequence numbers (`101-105,108`) that uplinks put on what they send."""

from __future__ import annotations

from collections.abc import Iterable


def seq_ranges(seqs: Iterable[int]) -> str:
    """`101-105,108,110-111`: the set of sequence numbers, runs collapsed, ascending; "" for none."""
    if type(seqs) is tuple and len(seqs) == 1:
        return str(seqs[0])  # an MQTT message of one reading, the usual one at everyday rates
    unique = set(seqs)
    if not unique:
        return ""
    low, high = min(unique), max(unique)
    if high - low + 1 == len(unique):
        # the usual request: one unbroken run of a batch, told apart in C without sorting
        return str(low) if low == high else f"{low}-{high}"
    runs: list[list[int]] = []
    for s in sorted(unique):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
