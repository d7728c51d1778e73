"""The delivery loop reads the next batch while one is in flight, yet moves cursors only over delivered records, in order."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop
from gateway.records import Attribute, Reading, Source
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


async def test_a_retried_batch_drops_the_prefetched_one_and_nothing_is_skipped(orion_double: OrionDouble, tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["orion"])
    await box.append_many([reading(n) for n in range(40)])
    # the second request fails: its batch was read while the first was in flight, and the third
    # batch was already prefetched while the second was being refused
    orion_double.fail(503, count=1, after=1)
    config = OrionConfig.model_validate({"name": "orion", "type": "orion", "url": orion_double.url, "batch_max_rows": 10,
                                         "retry_initial_s": 0.05, "retry_max_s": 0.1})
    loop = DeliveryLoop(OrionUplink(config, AdapterContext(gateway_id="gw", data_dir=str(tmp_path))), config, box)
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
