"""The outbox against a plain-Python model: random appends, reads, acks, restarts and cap pressure.

The outbox serves recent rows from memory (its tail) and older ones from SQLite; the machine runs
with a tail smaller than the caps and mixes in readings the tail must not keep (a structured value,
a non-UTC time), so reads cross between the two paths. Reads "after" a pending batch are the
delivery loop's prefetch.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.buffer import store
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.errors import BufferFull
from gateway.records import Lane, Reading
from gateway.uplinks.api import DELIVERED, Outcome, Status
from tests.buffer.readings import reading, structured_reading

T = TypeVar("T")
UPLINKS = ("orion", "mqtt")
# an entity lives in one lane, as adapters guarantee
ENTITIES = {
    "alarm": Lane.ALERT,
    "flood": Lane.ALERT,
    "river": Lane.NORMAL,
    "rain": Lane.NORMAL,
    "wifi": Lane.BULK,
    "door": Lane.BULK,
}
MAX_ROWS = 16
TAIL_ROWS = 6  # below MAX_ROWS: the tail trims itself and reads fall back to SQLite
# below the validated minimum on purpose, so a few dozen steps reach the caps
CONFIG = BufferConfig.model_construct(
    durability=Durability.NORMAL, commit_interval_ms=0.0, commit_max_rows=100_000, max_rows=MAX_ROWS
)
OUTCOMES = st.sampled_from(
    [
        DELIVERED,
        Outcome(Status.RETRY),
        Outcome(Status.REJECTED, "400 bad value"),
        Outcome(Status.REJECTED, "422 too long"),
    ]
)


@dataclass
class Row:
    seq: int
    n: int
    entity: str
    target: str | None = None

    @property
    def lane(self) -> int:
        return int(ENTITIES[self.entity])


def _key(r: Reading) -> tuple[int | None, int, str, int]:
    return (r.seq, r.attributes["n"].value, r.entity_id, int(r.lane))


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-model-"))
        self.box = self.run(Outbox.open(self.dir / "b.db", CONFIG, UPLINKS, tail_rows=TAIL_ROWS))
        self.rows: list[Row] = []
        self.next_seq = 1
        self.next_n = 0
        self.cursors = {u: [0, 0, 0] for u in UPLINKS}
        self.dead: dict[str, list[tuple[int, int, str]]] = {u: [] for u in UPLINKS}  # (seq, n, reason)
        self.dropped: Counter[tuple[str, str]] = Counter()
        self.batches: dict[str, list[Reading]] = {}
        self.entity_of: dict[int, str] = {}

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.box.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- rules ------------------------------------------------------------------------------------

    @rule(
        entities=st.lists(st.sampled_from(sorted(ENTITIES)), min_size=1, max_size=12),
        structured=st.lists(st.booleans(), min_size=12, max_size=12),
    )
    def append(self, entities: list[str], structured: list[bool]) -> None:
        readings = [
            (structured_reading if structured[i] else reading)(self.next_n + i, e, ENTITIES[e])
            for i, e in enumerate(entities)
        ]
        excess = len(self.rows) + len(readings) - MAX_ROWS
        droppable = sum(1 for r in self.rows if r.lane != Lane.ALERT)
        if excess > droppable:
            try:
                self.box.append_many(readings)
            except BufferFull:
                event("append refused: buffer full")
                return
            raise AssertionError("expected BufferFull")
        self.run(self.box.append_many(readings))
        for lane in (Lane.BULK, Lane.NORMAL):
            while excess > 0:
                victim = next((r for r in self.rows if r.lane == lane), None)
                if victim is None:
                    break
                self.rows.remove(victim)
                self.dropped[(lane.name.lower(), "max_rows")] += 1
                event(f"dropped {lane.name.lower()}")
                excess -= 1
        for i, e in enumerate(entities):
            self.rows.append(Row(seq=self.next_seq, n=self.next_n + i, entity=e))
            self.entity_of[self.next_n + i] = e
            self.next_seq += 1
        self.next_n += len(entities)

    @rule(uplink=st.sampled_from(UPLINKS), limit=st.integers(1, 25))
    def read(self, uplink: str, limit: int) -> None:
        got = self.run(self.box.read(uplink, limit))
        cur = self.cursors[uplink]
        expected = sorted(
            (r for r in self.rows if r.seq > cur[r.lane] and r.target in (None, uplink)), key=lambda r: (r.lane, r.seq)
        )[:limit]
        assert [_key(r) for r in got] == [(r.seq, r.n, r.entity, r.lane) for r in expected]
        # what the file gives back (UTC, lists): a reading the tail must not keep never comes from it
        assert all(r.observed_at.tzinfo is UTC for r in got)
        assert all(
            r.attributes["shape"].value == {"k": [r.attributes["n"].value]} for r in got if "shape" in r.attributes
        )
        self.batches[uplink] = got

    @precondition(lambda self: any(self.batches.values()))
    @rule(data=st.data(), limit=st.integers(1, 25))
    def read_after_pending_batch(self, data: st.DataObject, limit: int) -> None:
        # the delivery loop's prefetch: the rows after a batch that is read but not yet acknowledged
        uplink = data.draw(st.sampled_from(sorted(u for u, b in self.batches.items() if b)))
        after = [0, 0, 0]
        for r in self.batches[uplink]:
            assert r.seq is not None
            after[int(r.lane)] = max(after[int(r.lane)], r.seq)
        got = self.run(self.box.read(uplink, limit, after=after))
        cur = self.cursors[uplink]
        expected = sorted(
            (r for r in self.rows if r.seq > max(cur[r.lane], after[r.lane]) and r.target in (None, uplink)),
            key=lambda r: (r.lane, r.seq),
        )[:limit]
        assert [_key(r) for r in got] == [(r.seq, r.n, r.entity, r.lane) for r in expected]

    @precondition(lambda self: any(self.batches.values()))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        uplink = data.draw(st.sampled_from(sorted(u for u, b in self.batches.items() if b)))
        batch = self.batches.pop(uplink)
        outcomes = data.draw(st.lists(OUTCOMES, min_size=len(batch), max_size=len(batch)))
        self.run(self.box.ack(uplink, batch, outcomes))
        cur = self.cursors[uplink]
        blocked: set[int] = set()
        for r, o in zip(batch, outcomes, strict=True):
            lane = int(r.lane)
            assert r.seq is not None
            if lane in blocked:
                continue
            if o.status is Status.RETRY:
                blocked.add(lane)
                continue
            if r.seq <= cur[lane]:
                continue
            cur[lane] = r.seq
            if o.status is Status.REJECTED:
                self.dead[uplink].append((r.seq, r.attributes["n"].value, o.reason))
        for lane in range(3):
            upto = min(c[lane] for c in self.cursors.values())
            self.rows = [r for r in self.rows if not (r.lane == lane and r.seq <= upto)]

    @rule(uplink=st.sampled_from(UPLINKS))
    def retry_dead_letters(self, uplink: str) -> None:
        if self.dead[uplink]:
            event("dead letters re-queued")
        assert self.run(self.box.retry_dead_letters(uplink)) == len(self.dead[uplink])
        for _, n, _ in self.dead[uplink]:
            self.rows.append(Row(seq=self.next_seq, n=n, entity=self.entity_of[n], target=uplink))
            self.next_seq += 1
        self.dead[uplink] = []

    @rule()
    def restart(self) -> None:
        self.run(self.box.close())
        self.box = self.run(Outbox.open(self.dir / "b.db", CONFIG, UPLINKS, tail_rows=TAIL_ROWS))

    # --- invariants -------------------------------------------------------------------------------

    @invariant()
    def counts_match(self) -> None:
        stats = self.run(self.box.stats())
        per_lane = Counter(Lane(r.lane).name.lower() for r in self.rows)
        assert dict(stats.rows_per_lane) == {lane: per_lane.get(lane, 0) for lane in ("alert", "normal", "bulk")}
        dropped = {lane: {reason: n} for (lane, reason), n in self.dropped.items()}
        assert {k: dict(v) for k, v in stats.dropped.items()} == dropped
        for u in UPLINKS:
            assert stats.uplinks[u].cursors == dict(zip(("alert", "normal", "bulk"), self.cursors[u], strict=True))

    @invariant()
    def dead_letters_match(self) -> None:
        letters = self.run(self.box.dead_letters(limit=1000))
        got = {
            u: [(d.seq, d.reading.attributes["n"].value, d.reason) for d in letters if d.uplink == u] for u in UPLINKS
        }
        assert got == self.dead


TestOutboxModel = OutboxMachine.TestCase
TestOutboxModel.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class ClearingOutboxMachine(OutboxMachine):
    """The same, with every settle that deletes a row clearing the table and putting back what is
    pending (store._delete_passed), which takes 64 rows deleted and half as many pending otherwise:
    the model's few rows take that path too."""

    def __init__(self) -> None:
        self.clear = (store._CLEAR_MIN, store._CLEAR_KEEP)
        store._CLEAR_MIN, store._CLEAR_KEEP = 1, float(store._CLEAR_MAX)
        super().__init__()

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            store._CLEAR_MIN, store._CLEAR_KEEP = self.clear


TestClearingOutboxModel = ClearingOutboxMachine.TestCase
TestClearingOutboxModel.settings = TestOutboxModel.settings
