"""A backup taken while readings pour in: the data path keeps going, and the restored box delivers with nothing lost."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from gateway.app import Gateway
from gateway.backup import archive
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.config import GatewayConfig, parse_config
from gateway.records import Attribute, Lane, Reading, Source
from gateway.uplinks.api import DELIVERED
from tests.support.orion_double import OrionDouble

from .conftest import write_config

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=5)
T0 = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)


def _reading(n: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:Sensor:{n % 50}",
        entity_type="Sensor",
        attributes={"n": Attribute(value=n, type="Number"), "pad": Attribute(value="x" * 200, type="Text")},
        observed_at=T0,
        source=Source(adapter="sim"),
        lane=Lane.NORMAL,
    )


async def _deliver_all(box: Outbox) -> list[int]:
    ns: list[int] = []
    while batch := await box.read("orion", 5000):
        ns.extend(r.attributes["n"].value for r in batch)
        await box.ack("orion", batch, [DELIVERED] * len(batch))
    return ns


async def test_a_backup_at_high_rate_restores_to_a_box_that_delivers_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = write_config(tmp_path / "gateway.toml", data_dir)
    box = await Outbox.open(data_dir / "buffer.db", CFG, ["orion"])
    appended = 0
    acked = 0
    stop = asyncio.Event()

    async def produce() -> None:
        nonlocal appended
        while not stop.is_set():
            await box.append_many([_reading(appended + i) for i in range(500)])
            appended += 500

    async def deliver() -> None:
        nonlocal acked
        while not stop.is_set():
            batch = await box.read("orion", 100)
            if batch:
                await box.ack("orion", batch, [DELIVERED] * len(batch))
                acked += len(batch)
            await asyncio.sleep(0.002)  # a slower far side than the devices: a backlog builds up

    tasks = [asyncio.create_task(produce()), asyncio.create_task(deliver())]
    while appended < 40_000:  # a backlog worth copying
        await asyncio.sleep(0.01)
    appended_before, acked_before = appended, acked
    path = await asyncio.to_thread(
        archive.create, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=tmp_path / "b", now=T0
    )
    appended_during, acked_during = appended - appended_before, acked - acked_before
    stop.set()
    await asyncio.gather(*tasks)
    await box.close()
    # the data path kept moving while the buffer was copied (WAL: the snapshot's reader blocks no writer)
    assert appended_during > 0 and acked_during > 0

    restored = tmp_path / "restored"
    restored.mkdir()
    archive.restore(path, data_dir=restored, config_path=tmp_path / "restored.toml", gateway_id="fixture-gw", now=T0)
    box = await Outbox.open(restored / "buffer.db", CFG, ["orion"])
    try:
        ns = await _deliver_all(box)
    finally:
        await box.close()
    # nothing lost: every reading not acknowledged at the snapshot is there, once, in order
    assert len(ns) > 1000
    assert ns == list(range(ns[0], ns[-1] + 1))
    assert ns[0] <= acked_before + acked_during
    assert ns[-1] + 1 >= appended_before
    shutil.rmtree(tmp_path / "b")


async def test_a_gateway_restored_from_a_backup_taken_at_high_rate_delivers_every_pending_reading(
    tmp_path: Path, orion_double: OrionDouble
) -> None:
    data_dir = tmp_path / "data"
    config_path = write_config(tmp_path / "gateway.toml", data_dir)

    def config(where: Path, url: str, rate: float) -> GatewayConfig:
        return parse_config(
            {
                "gateway": {"id": "fixture-gw", "data_dir": str(where)},
                "adapters": [{"name": "gauges", "type": "simulated", "rate": rate, "entities": 20}],
                "uplinks": [{"name": "orion", "type": "orion", "url": url}],
            }
        )

    orion_double.fail(503, count=1_000_000)  # the platform is down: a backlog builds at 5,000 readings/s
    async with Gateway(config(data_dir, orion_double.url, 5000)) as gw:
        assert gw.outbox is not None
        for _ in range(500):
            if (await gw.outbox.stats()).rows >= 3000:
                break
            await asyncio.sleep(0.01)
        path = await asyncio.to_thread(
            archive.create,
            data_dir=data_dir,
            config_path=config_path,
            gateway_id="fixture-gw",
            out_dir=tmp_path / "b",
            now=T0,
        )
        rows_after = (await gw.outbox.stats()).appended_total
    with tarfile.open(path) as tar:
        tar.extract("data/buffer.db", tmp_path / "look", filter="data")
    db = sqlite3.connect(tmp_path / "look" / "data" / "buffer.db")
    pending = int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    db.close()
    assert 3000 <= pending <= rows_after  # the snapshot holds what was committed when it was taken

    restored = tmp_path / "restored"
    restored.mkdir()
    archive.restore(path, data_dir=restored, config_path=tmp_path / "restored.toml", gateway_id="fixture-gw", now=T0)
    async with OrionDouble() as orion, Gateway(config(restored, orion.url, 0.001)) as gw:
        assert gw.outbox is not None
        for _ in range(1000):
            if gw.loops[0].delivered >= pending:
                break
            await asyncio.sleep(0.01)
        stats = await gw.outbox.stats()
    assert gw.loops[0].delivered >= pending
    assert stats.dead_letters.get("orion", 0) == 0
    assert len(orion.written) >= pending
