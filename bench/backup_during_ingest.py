"""Ingest throughput of the buffer with and without a backup running (gateway.backup.archive on a live outbox).

A 200,000-row backlog (~60 MB) is the buffer; readings are appended in groups of 100 as fast as the
outbox commits them (durability normal) while an uplink acknowledges them. Rounds alternate "idle"
and "backup running" (the backup repeated in a thread for the whole round); medians are printed,
since this machine's 2 cores are shared and noisy.

    .venv/bin/python bench/backup_during_ingest.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.backup import archive
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.records import Attribute, Lane, Reading, Source
from gateway.uplinks.api import DELIVERED

T0 = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
ROUND_S = 4.0
ROUNDS = 3


def reading(n: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:Sensor:{n % 50}",
        entity_type="Sensor",
        attributes={"n": Attribute(value=n, type="Number"), "pad": Attribute(value="x" * 200, type="Text")},
        observed_at=T0,
        source=Source(adapter="sim"),
        lane=Lane.NORMAL,
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"
        data_dir.mkdir()
        config = tmp / "gateway.toml"
        config.write_text('[gateway]\nid = "bench"\n')
        box = await Outbox.open(data_dir / "buffer.db", BufferConfig(durability=Durability.NORMAL), ["orion"])
        n = 0
        while n < 200_000:
            await box.append_many([reading(n + i) for i in range(1000)])
            n += 1000
        sizes: list[int] = []
        backups = 0

        def backup_loop(stop: threading.Event) -> None:
            nonlocal backups
            while not stop.is_set():
                path = archive.create(
                    data_dir=data_dir, config_path=config, gateway_id="bench", out_dir=tmp / "b", now=datetime.now(UTC)
                )
                sizes.append(path.stat().st_size)
                path.unlink()
                backups += 1

        async def round_rate(with_backup: bool) -> float:
            nonlocal n
            stop = threading.Event()
            worker = threading.Thread(target=backup_loop, args=(stop,)) if with_backup else None
            if worker is not None:
                worker.start()
            start, count = time.monotonic(), 0
            while time.monotonic() - start < ROUND_S:
                await box.append_many([reading(n + i) for i in range(100)])
                n += 100
                count += 100
                batch = await box.read("orion", 100)
                await box.ack("orion", batch, [DELIVERED] * len(batch))
            rate = count / (time.monotonic() - start)
            stop.set()
            if worker is not None:
                await asyncio.to_thread(worker.join)
            return rate

        idle: list[float] = []
        busy: list[float] = []
        for _ in range(ROUNDS):
            idle.append(await round_rate(False))
            busy.append(await round_rate(True))
        await box.close()
    print(f"buffer: ~200,000 rows; rounds of {ROUND_S:.0f} s alternated, {ROUNDS} each; medians")
    print(
        f"ingest without a backup:   {statistics.median(idle):8.0f} readings/s  (rounds: {', '.join(f'{r:.0f}' for r in idle)})"
    )
    print(
        f"ingest while backing up:   {statistics.median(busy):8.0f} readings/s  (rounds: {', '.join(f'{r:.0f}' for r in busy)})"
    )
    print(f"backups taken during the busy rounds: {backups}, {statistics.median(sizes) / 1e6:.1f} MB each (median)")


if __name__ == "__main__":
    asyncio.run(main())
