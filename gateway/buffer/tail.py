"""The newest committed rows kept as Readings, so an uplink that keeps up reads them without decoding.

An uplink that keeps up reads rows it was sent milliseconds ago. Decoding them back from their JSON
bodies cost ~4-8 µs a row, a third of the spine's per-reading budget at 50,000 readings/s, to get
the very Readings the adapters handed in. So the writer thread keeps what it just committed, per
lane, and `Store.read` serves from here whenever the rows it needs are all here.

The one invariant everything hangs on, per lane: every row of the table in that lane with
seq > base[lane] is here, in seq order, and none of them has a target (re-queued dead letters are
never here). Rows at or below base are read from SQLite as before. Rows may be here before they
are in the table: the outbox hands rows out at append, before their COMMIT (`expose`; see
outbox.py), and a failed COMMIT resets the tail past them. The Store keeps the invariant:
- appends are added when the outbox hands them out (`expose`), with the seqs it assigns; a direct
  Store.insert (tests, tools) adds its rows after the COMMIT, and only when their seqs follow the
  last seq this process assigned (anything else means another process wrote rows: `reset`);
- every DELETE of a lane's oldest rows (acknowledged, cap drops, age drops) calls `discard`;
- anything else that writes rows (re-queued dead letters, another process) calls `reset`.
Only readings whose stored form decodes to an equal Reading are kept (JSON values: scalars, lists,
dicts with text keys, in values and metadata; UTC time): decoding the stored row (records.encode_row) then equals what is
served from here.
A lane whose reading is not plain is reset, so the order of what is served stays the table's order.

Bounded in rows and in bytes: past `max_rows`, or past `max_bytes` of the rows' stored (JSON) size,
the oldest entries go (base moves up past them) and are read from SQLite. A decoded Reading takes
~6 times its stored size (1.4 KB for a 230-byte row of four attributes), so the byte bound is what
keeps a drain of large readings from holding tens of megabytes here.
Changed under the Store's lock, by the event loop (expose) and the writer thread (discards,
resets): the event loop reads it directly, so an uplink that keeps up never waits for a commit.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

from gateway.records import Lane, Reading, with_seq

_LANES = len(Lane)  # per-lane lists are indexed by Lane's values, 0..len(Lane)-1

_PLAIN = frozenset({str, int, float, bool, type(None)})
_UTC = UTC


def is_plain(r: Reading) -> bool:
    """Whether decode(encode(r)) equals r: JSON values (scalars, lists, dicts with text keys), metadata
    a dict of such values, UTC time, a plain dict of attributes."""
    if r.observed_at.tzinfo is not _UTC or type(r.attributes) is not dict:
        return False
    # a loop, not all() over a generator, which resumed a frame per attribute: 0.52 → 0.40 µs a race reading
    for a in r.attributes.values():
        if not (type(a.value) in _PLAIN or _plain_json(a.value)) or (a.metadata and not _plain_json(a.metadata)):
            return False
    return True


def _plain_json(value: object) -> bool:
    """A list or dict that JSON gives back equal: a tuple would come back a list, a non-text key would not encode.

    Lists matter on the hot path: a Smart Data Models entity's `controlledProperty` is one, and every
    reading of an adapter that sets it (the race workload's) was read back from SQLite for that alone.
    """
    if isinstance(value, list):
        return type(value) is list and all(type(v) in _PLAIN or _plain_json(v) for v in value)
    if isinstance(value, dict):
        return type(value) is dict and all(
            type(k) is str and (type(v) in _PLAIN or _plain_json(v)) for k, v in value.items()
        )
    return False


@dataclass(frozen=True, slots=True)
class Prepared:
    """Rows to add to the tail (see Tail.prepare), per lane."""

    cut: list[int | None]  # the lane restarts after this seq (a row that is not plain), or None
    seqs: list[list[int]]
    readings: list[list[Reading]]
    sizes: list[list[int]]  # each row's stored size, for the byte bound
    lane_bytes: list[int]  # their sums


class Tail:
    def __init__(self, max_rows: int, base: int, max_bytes: int | None = None) -> None:
        """`max_bytes` bounds the stored size of the rows held (None: only `max_rows` does)."""
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.base = [base] * _LANES
        self._seqs: list[list[int]] = [[] for _ in range(_LANES)]
        self._readings: list[list[Reading]] = [[] for _ in range(_LANES)]
        self._sizes: list[list[int]] = [[] for _ in range(_LANES)]
        self._lane_bytes = [0] * _LANES
        self.rows = 0
        self.bytes = 0  # stored size of the rows held

    def reset(self, base: int) -> None:
        """Forget everything: rows up to `base` (the table's newest seq) are read from SQLite."""
        self.base = [base] * _LANES
        self._seqs = [[] for _ in range(_LANES)]
        self._readings = [[] for _ in range(_LANES)]
        self._sizes = [[] for _ in range(_LANES)]
        self._lane_bytes = [0] * _LANES
        self.rows = 0
        self.bytes = 0

    def add(
        self,
        first_seq: int,
        lanes: Sequence[int],
        readings: Sequence[Reading | None],
        sizes: Sequence[int] | None = None,
    ) -> None:
        """Rows just committed with seqs first_seq, first_seq+1, …; a None reading is not plain."""
        self.apply(self.prepare(first_seq, lanes, readings, sizes))

    @staticmethod
    def prepare(
        first_seq: int,
        lanes: Sequence[int],
        readings: Sequence[Reading | None],
        sizes: Sequence[int] | None = None,
    ) -> Prepared:
        """What `add` will change, built before the rows' COMMIT: the Store applies it under its lock
        once the COMMIT succeeded, so a reader on another thread waits for a few list operations
        rather than for a copy of every reading. `sizes` are the rows' stored sizes (None: 0 each)."""
        seq = first_seq
        cut: list[int | None] = [None, None, None]  # per lane, the seq of its last row that is not plain
        seqs: list[list[int]] = [[] for _ in range(_LANES)]
        kept: list[list[Reading]] = [[] for _ in range(_LANES)]
        held: list[list[int]] = [[] for _ in range(_LANES)]
        for lane, r, size in zip(lanes, readings, [0] * len(lanes) if sizes is None else sizes, strict=True):
            if r is None or not is_plain(r):
                # this row must be decoded from SQLite, and so must the lane's rows before it
                cut[lane] = seq
                seqs[lane] = []
                kept[lane] = []
                held[lane] = []
            else:
                seqs[lane].append(seq)
                # a copy with the seq, and a dict of its own: an adapter may reuse its dict
                kept[lane].append(with_seq(r, seq, dict(r.attributes)))
                held[lane].append(size)
            seq += 1
        return Prepared(cut, seqs, kept, held, [sum(h) for h in held])

    def expose(self, lane: int, seq: int, reading: Reading | None, size: int = 0) -> None:
        """A row handed out before its commit (see outbox.py), with the next seq and its stored size: kept
        like a committed row, or, if None or not plain, its lane restarts after it (it is read from the
        file once committed)."""
        if seq <= self.base[lane]:
            return  # a reset since the seq was handed out: read from the file, like everything up to base
        if reading is None or not is_plain(reading):
            self.rows -= len(self._seqs[lane])
            self.bytes -= self._lane_bytes[lane]
            self._seqs[lane] = []
            self._readings[lane] = []
            self._sizes[lane] = []
            self._lane_bytes[lane] = 0
            self.base[lane] = seq
            return
        self._seqs[lane].append(seq)
        # a copy with the seq, and a dict of its own: an adapter may reuse its dict
        self._readings[lane].append(with_seq(reading, seq, dict(reading.attributes)))
        self._sizes[lane].append(size)
        self._lane_bytes[lane] += size
        self.rows += 1
        self.bytes += size
        if self._over():
            self._bound()

    def apply(self, prepared: Prepared) -> None:
        for lane in range(_LANES):
            if prepared.cut[lane] is not None:
                self._seqs[lane] = prepared.seqs[lane]
                self._readings[lane] = prepared.readings[lane]
                self._sizes[lane] = prepared.sizes[lane]
                self._lane_bytes[lane] = prepared.lane_bytes[lane]
                self.base[lane] = prepared.cut[lane]  # type: ignore[assignment]
            elif prepared.seqs[lane]:
                self._seqs[lane] += prepared.seqs[lane]
                self._readings[lane] += prepared.readings[lane]
                self._sizes[lane] += prepared.sizes[lane]
                self._lane_bytes[lane] += prepared.lane_bytes[lane]
        self.rows = sum(len(s) for s in self._seqs)
        self.bytes = sum(self._lane_bytes)
        self._bound()

    def _bound(self) -> None:
        while self._over():
            if not self._trim():
                self._trim(everything=True)  # single rows larger than the byte bound
                break

    def _over(self) -> bool:
        return self.rows > self.max_rows or (self.max_bytes is not None and self.bytes > self.max_bytes)

    def _trim(self, *, everything: bool = False) -> bool:
        """Drop the oldest half of each lane's entries (amortized, not a pop per row); whether any went."""
        before = self.rows
        for lane in range(_LANES):
            seqs = self._seqs[lane]
            cut = len(seqs) if everything else len(seqs) // 2
            if cut:
                self.base[lane] = seqs[cut - 1]
                del seqs[:cut]
                del self._readings[lane][:cut]
                sizes = self._sizes[lane]
                self._lane_bytes[lane] -= sum(sizes[:cut])
                del sizes[:cut]
        self.rows = sum(len(s) for s in self._seqs)
        self.bytes = sum(self._lane_bytes)
        return self.rows < before

    def discard(self, lane: int, upto: int) -> None:
        """Rows of `lane` with seq <= upto were deleted from the table."""
        seqs = self._seqs[lane]
        cut = bisect.bisect_right(seqs, upto)
        if cut:
            sizes = self._sizes[lane]
            gone = sum(sizes[:cut])
            self._lane_bytes[lane] -= gone
            self.bytes -= gone
            del sizes[:cut]
            del seqs[:cut]
            del self._readings[lane][:cut]
            self.rows -= cut
        if upto > self.base[lane]:
            self.base[lane] = upto

    def covers(self, lane: int, after: int) -> bool:
        """Whether every row of `lane` past `after` is here."""
        return after >= self.base[lane]

    def take(self, lane: int, after: int, limit: int) -> list[Reading]:
        """Up to `limit` readings of `lane` with seq > after, in seq order (call only if covers())."""
        seqs = self._seqs[lane]
        start = bisect.bisect_right(seqs, after)
        return self._readings[lane][start : start + limit]

    def newest(self, lane: int) -> int:
        """The newest seq known in `lane` (base if nothing is held)."""
        seqs = self._seqs[lane]
        return seqs[-1] if seqs else self.base[lane]
