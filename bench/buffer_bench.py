"""Measures the outbox alone: append throughput, backlog drain throughput, commit latency at 1,000/s.

Usage: python bench/buffer_bench.py [--durability full|normal] [--rows N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

from gateway.app import tune_runtime
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.records import Attribute, Lane, Reading, Source
from gateway.uplinks.api import DELIVERED

UPLINK = "orion"


def make_readings(n: int) -> list[Reading]:
    """Readings shaped like a river-gauge poll: five numeric attributes with units."""
    now = datetime.now(UTC)
    src = Source(adapter="modbus-1", device="gauge")
    return [
        Reading(
            entity_id=f"urn:ngsi-ld:WaterObserved:gauge-{i % 200:03d}",
            entity_type="WaterObserved",
            attributes={
                "height": Attribute(value=1.234 + i % 7, type="Number", unit="MTR"),
                "flow": Attribute(value=12.5 + i % 11, type="Number", unit="MQS"),
                "temperature": Attribute(value=14.2, type="Number", unit="CEL"),
                "batteryLevel": Attribute(value=0.87, type="Number", unit="P1"),
                "status": Attribute(value="ok", type="Text"),
            },
            observed_at=now,
            source=src,
            lane=Lane.BULK if i % 50 else Lane.NORMAL,
        )
        for i in range(n)
    ]


async def bench_append(db: Path, config: BufferConfig, readings: list[Reading], per_call: int) -> float:
    box = await Outbox.open(db, config, [UPLINK])
    started = time.perf_counter()
    inflight: list[Awaitable[None]] = []
    for i in range(0, len(readings), per_call):
        if per_call == 1:
            inflight.append(box.append(readings[i]))
        else:
            inflight.append(box.append_many(readings[i : i + per_call]))
        if len(inflight) * per_call >= 20_000:
            # producers wait for their commit before sending more, as an acknowledging source does
            await asyncio.gather(*inflight)
            inflight.clear()
    await asyncio.gather(*inflight)
    elapsed = time.perf_counter() - started
    await box.close()
    return len(readings) / elapsed


async def bench_drain(db: Path, config: BufferConfig, batch: int) -> tuple[int, float]:
    box = await Outbox.open(db, config, [UPLINK])
    started = time.perf_counter()
    total = 0
    while True:
        rows = await box.read(UPLINK, batch)
        if not rows:
            break
        await box.ack(UPLINK, rows, [DELIVERED] * len(rows))
        total += len(rows)
    elapsed = time.perf_counter() - started
    await box.close()
    return total, total / elapsed


async def bench_latency(db: Path, config: BufferConfig, rate: int, seconds: float) -> tuple[float, float, float]:
    box = await Outbox.open(db, config, [UPLINK])
    readings = make_readings(int(rate * seconds))
    latencies: list[float] = []

    async def one(r: Reading) -> None:
        t0 = time.perf_counter()
        await box.append(r)
        latencies.append((time.perf_counter() - t0) * 1000)

    loop = asyncio.get_running_loop()
    tasks = []
    start = loop.time()
    for i, r in enumerate(readings):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(r)))
    await asyncio.gather(*tasks)
    await box.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return statistics.median(latencies), p99, latencies[-1]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--durability", choices=[d.value for d in Durability], default="full")
    ap.add_argument("--rows", type=int, default=1_000_000, help="backlog size for the drain test")
    ap.add_argument("--dir", type=Path, default=None, help="where to put the database (default: a temp dir)")
    args = ap.parse_args()
    tune_runtime()  # what `edgegw run` does at start: the figures are the gateway process's
    config = BufferConfig(durability=Durability(args.durability), max_rows=max(5_000_000, args.rows * 2))
    tmp = Path(tempfile.mkdtemp(prefix="buffer-bench-", dir=args.dir))
    try:
        print(f"durability={args.durability} rows={args.rows} dir={tmp}")
        readings = make_readings(min(args.rows, 200_000))
        for per_call in (1, 100):
            db = tmp / f"append-{per_call}.db"
            rate = await bench_append(db, config, readings, per_call)
            print(f"append  ({'append()' if per_call == 1 else 'append_many(100)'}): {rate:,.0f} readings/s")
        db = tmp / "drain.db"
        t0 = time.perf_counter()
        backlog = readings
        box = await Outbox.open(db, config, [UPLINK])
        filled = 0
        while filled < args.rows:
            chunk = backlog[: min(len(backlog), args.rows - filled)]
            for i in range(0, len(chunk), 5000):
                await box.append_many(chunk[i : i + 5000])
            filled += len(chunk)
        await box.close()
        # the bench's own 200,000 readings would make every GC pass of the drain slower than a gateway's
        del backlog, readings, chunk
        gc.collect()
        print(
            f"backlog of {filled:,} rows written in {time.perf_counter() - t0:.1f} s ({db.stat().st_size / 1e6:.0f} MB)"
        )
        copy = db.with_name("drain-copy.db")
        shutil.copy(db, copy)  # the same backlog for the second batch size
        for batch, path in ((1000, db), (5000, copy)):
            n, rate = await bench_drain(path, config, batch)
            print(f"drain   (read+ack, batch {batch}): {n:,} rows at {rate:,.0f} rows/s")
        p50, p99, worst = await bench_latency(tmp / "latency.db", config, 1000, 5.0)
        print(f"commit latency at 1,000 readings/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
