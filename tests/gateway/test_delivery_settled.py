"""The delivery loop counts, and says dead-lettered, only what the buffer's acknowledgement settles.

The finding (reproduced): `Store.ack` moves a lane's cursor over the records before its first RETRY
only; the rest of the lane is read and sent again. The loop counted every outcome of the batch, so
a DELIVERED or REJECTED record behind a RETRY was counted at every try, and a REJECTED one was
logged "dead-lettered … retry-dead-letters" each time, with nothing in the dead-letter table (an
NGSI-LD 207 answers in that order: tests/uplinks/test_settled_counts.py has it end to end).

Here a scripted uplink (a real class on the Uplink protocol) answers random outcomes in random lanes,
and the loop's counters and dead-letter lines are compared with what a real Outbox recorded: its
cursors and its dead-letter table are the oracle.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.store import lane_name
from gateway.delivery import DeliveryLoop
from gateway.records import Attribute, Lane, Reading, Source
from gateway.uplinks.api import DELIVERED, Outcome, Status, UplinkConfig

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)
ID = "urn:ngsi-ld:WaterObserved:r"
ANSWER = {
    Status.DELIVERED: DELIVERED,
    Status.REJECTED: Outcome(Status.REJECTED, "refused entity, got BadRequestData"),
    Status.RETRY: Outcome(Status.RETRY, "broker busy, got 503"),
}


def reading(k: int, lane: Lane) -> Reading:
    return Reading(
        entity_id=f"{ID}{k}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=k, type="Number")},
        observed_at=T0 + timedelta(seconds=k),
        source=Source(adapter="gauge"),
        lane=lane,
    )


class ScriptedUplink:
    """Answers each record as scripted (by its entity) and asks the loop to stop after this first batch."""

    name = "ld"

    def __init__(self, answers: Sequence[Status]) -> None:
        self.answers = answers
        self.loop: DeliveryLoop | None = None
        self.batches = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        self.batches += 1
        assert self.loop is not None
        self.loop.stop_soon()  # the batch in flight is acknowledged and tallied, then run() returns
        return [ANSWER[self.answers[int(r.entity_id.removeprefix(ID))]] for r in batch]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def instant(_: float) -> None:
    await asyncio.sleep(0)


async def one_batch(tmp: Path, script: list[tuple[Lane, Status]]) -> None:
    box = await Outbox.open(tmp / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["ld"])
    try:
        await box.append_many([reading(k, lane) for k, (lane, _) in enumerate(script)])
        stored = await box.read("ld", len(script))
        up = ScriptedUplink([status for _, status in script])
        config = UplinkConfig.model_validate({"name": "ld", "type": "scripted", "start_delay_max_s": 0})
        loop = DeliveryLoop(up, config, box, sleep=instant)  # type: ignore[arg-type]
        up.loop = loop
        lines = Lines()
        log = logging.getLogger("gateway.delivery")
        log.addHandler(lines)
        try:
            async with asyncio.timeout(20):
                await loop.run()
        finally:
            log.removeHandler(lines)
        assert up.batches == 1
        stats = await box.stats()
        cursors = stats.uplinks["ld"].cursors
        passed = [r for r in stored if r.seq is not None and r.seq <= cursors[lane_name(r.lane)]]
        dead = await box.dead_letters("ld", limit=1000)
        assert len(dead) == stats.dead_letters.get("ld", 0)
        # what the store settled, and only that, is counted: delivered, or dead-lettered (and said so)
        assert (loop.delivered, loop.rejected) == (len(passed) - len(dead), len(dead))
        said = [
            line.removeprefix("dead-lettered ").split(": ", 1)[0]
            for line in lines.lines
            if line.startswith("dead-lettered urn:")
        ]
        assert said == [d.entity_id for d in dead][:10]
        assert sorted(d.entity_id for d in dead) == sorted(
            r.entity_id for r in passed if script[int(r.entity_id.removeprefix(ID))][1] is Status.REJECTED
        )
    finally:
        await box.close()


SCRIPT = st.lists(st.tuples(st.sampled_from(list(Lane)), st.sampled_from(list(Status))), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(script=SCRIPT)
def test_counted_and_said_dead_lettered_is_what_the_store_settled(script: list[tuple[Lane, Status]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(one_batch(Path(tmp), script))


def test_a_rejection_behind_a_retry_in_its_lane_is_neither_counted_nor_said() -> None:
    # the reviewer's order: e0 to retry, e1 delivered, e2 refused, one lane; an alert lane beside it settles
    script = [
        (Lane.NORMAL, Status.RETRY),
        (Lane.NORMAL, Status.DELIVERED),
        (Lane.NORMAL, Status.REJECTED),
        (Lane.ALERT, Status.REJECTED),
        (Lane.ALERT, Status.DELIVERED),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(one_batch(Path(tmp), script))
