"""The delivery loop overlaps reads and acknowledgements with deliveries, yet moves cursors only over delivered
records, in order, and sends each record once while nothing fails."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.store import TAIL_ROWS
from gateway.delivery import DeliveryLoop
from gateway.records import Attribute, Lane, Reading, Source
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import OrionDouble

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=timezone.utc)


def reading(n: int) -> Reading:
    return Reading(entity_id=f"urn:ngsi-ld:WaterObserved:g{n % 3}", entity_type="WaterObserved",
                   attributes={"sequence": Attribute(value=n, type="Number")}, observed_at=T0 + timedelta(seconds=n),
                   source=Source(adapter="gauge"))


async def run_until(loop: DeliveryLoop, done: object, timeout: float = 20.0) -> None:
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():  # type: ignore[operator]
                await asyncio.sleep(0.01)
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, timeout)


async def open_box(tmp_path: Path, tail_rows: int = TAIL_ROWS) -> Outbox:
    return await Outbox.open(tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1),
                             ["orion"], tail_rows=tail_rows)


def orion_loop(orion_double: OrionDouble, tmp_path: Path, box: Outbox, **keys: object) -> DeliveryLoop:
    config = OrionConfig.model_validate({"name": "orion", "type": "orion", "url": orion_double.url, **keys})
    return DeliveryLoop(OrionUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path))), config, box)


@pytest.mark.parametrize("tail_rows", [0, TAIL_ROWS], ids=["read-from-file", "read-from-memory"])
async def test_a_retried_batch_drops_the_prefetched_one_and_nothing_is_skipped(
    orion_double: OrionDouble, tmp_path: Path, tail_rows: int
) -> None:
    # with no tail every batch is decoded from the file, so the next one is prefetched while one is in flight
    box = await open_box(tmp_path, tail_rows)
    await box.append_many([reading(n) for n in range(40)])
    # the second request fails: its batch was read while the first was in flight (and, read from the
    # file, the third batch was already prefetched while the second was being refused)
    orion_double.fail(503, count=1, after=1)
    loop = orion_loop(orion_double, tmp_path, box, batch_max_rows=10, retry_initial_s=0.05, retry_max_s=0.1)
    try:
        await run_until(loop, lambda: loop.delivered == 40)
    finally:
        await loop.uplink.close()
    sequences = [e["sequence"]["value"] for e in orion_double.written]
    assert sequences == list(range(40))  # the refused batch was applied by nobody, then re-sent in place
    assert loop.retries == 1
    stats = await box.stats()
    assert stats.uplinks["orion"].cursors == {"alert": 0, "normal": 40, "bulk": 0}
    assert stats.rows == 0
    await box.close()


def lane_reading(n: int, entity: str, lane: Lane) -> Reading:
    return Reading(entity_id=f"urn:ngsi-ld:WaterObserved:{entity}", entity_type="WaterObserved",
                   attributes={"sequence": Attribute(value=n, type="Number")}, observed_at=T0 + timedelta(seconds=n),
                   source=Source(adapter="gauge"), lane=lane)


@pytest.mark.parametrize("tail_rows", [0, TAIL_ROWS], ids=["read-from-file", "read-from-memory"])
async def test_while_appends_go_on_every_record_arrives_once_in_order(
    orion_double: OrionDouble, tmp_path: Path, tail_rows: int
) -> None:
    # The loop acknowledges a batch while it delivers the next and reads past what it sent, not past
    # the (lagging) cursors: a lane that was in one batch and not in the next must not be read twice.
    box = await open_box(tmp_path, tail_rows)
    loop = orion_loop(orion_double, tmp_path, box, batch_max_rows=7, batch_linger_ms=0)
    rng = random.Random(7)
    lanes = {"alarm": Lane.ALERT, "g1": Lane.NORMAL, "g2": Lane.NORMAL, "log": Lane.BULK}
    sent: dict[str, list[int]] = {name: [] for name in lanes}
    n = 0

    async def produce() -> None:
        nonlocal n
        for _ in range(60):
            burst = []
            for _ in range(rng.randrange(1, 12)):
                name = rng.choice(list(lanes))
                burst.append(lane_reading(n, name, lanes[name]))
                sent[name].append(n)
                n += 1
            await box.append_many(burst)
            await asyncio.sleep(rng.choice([0, 0.002, 0.01]))

    try:
        producer = asyncio.create_task(produce())
        await run_until(loop, lambda: producer.done() and loop.delivered == n)
        await producer
    finally:
        await loop.uplink.close()
    got: dict[str, list[int]] = {name: [] for name in lanes}
    for e in orion_double.written:
        got[e["id"].rsplit(":", 1)[1]].append(e["sequence"]["value"])
    assert got == sent  # each once, in order per entity
    assert loop.retries == 0
    stats = await box.stats()
    assert stats.rows == 0  # every acknowledgement was written before the loop returned
    await box.close()


async def test_under_load_a_batch_lingers_to_fill_and_at_low_rates_nothing_waits(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    box = await open_box(tmp_path)
    loop = orion_loop(orion_double, tmp_path, box, batch_max_rows=40, batch_linger_ms=300)
    task = asyncio.create_task(loop.run())

    async def delivered(count: int) -> float:
        t0 = time.monotonic()
        async with asyncio.timeout(10):
            while loop.delivered < count:
                await asyncio.sleep(0.005)
        return time.monotonic() - t0

    try:
        # low rate: one reading goes out at once
        await box.append(reading(0))
        assert await delivered(1) < 0.25
        requests_before = len(orion_double.requests_to("/v2/op/update"))
        # load: a full batch, then a part of one. That part waits for more rather than going alone,
        # so what comes meanwhile shares its request
        await box.append_many([reading(n) for n in range(1, 51)])
        await asyncio.sleep(0.1)
        await box.append_many([reading(n) for n in range(51, 61)])
        await delivered(61)
        requests = orion_double.requests_to("/v2/op/update")[requests_before:]
        assert [len(orjson.loads(r.body)["entities"]) for r in requests] == [40, 20]
        # that batch was small, so the next reading is not held back again
        await box.append(reading(61))
        assert await delivered(62) < 0.25
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, 10)
        await loop.uplink.close()
    assert [e["sequence"]["value"] for e in orion_double.written] == list(range(62))
    await box.close()
