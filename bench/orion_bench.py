"""Throughput of the `orion` uplink: N readings through `OrionUplink.deliver` in buffer-sized batches.

The Orion double runs in a separate process (so its work does not share our event loop); it checks
every request as Orion does (it has no mode that does not since 2026-12-05: the figures in the
README measured before then had it skip those checks).
Prints readings/s and requests/s. Usage: `python bench/orion_bench.py [--readings 50000] [--batch 1000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import Status
from gateway.uplinks.orion import OrionConfig, OrionUplink


def _serve(ready: Any, stop: Any) -> None:
    """Child process: the double, until `stop` is set; then its counts go back through `ready`."""
    from tests.support.orion_double import OrionDouble

    async def main() -> None:
        async with OrionDouble(keep_log=False) as double:
            ready.put(double.url)
            while not stop.is_set():
                await asyncio.sleep(0.05)
            ready.put((double.update_count, len(double.entities)))

    asyncio.run(main())


def readings(n: int, entities: int) -> list[Reading]:
    t0 = datetime(2024, 7, 1, tzinfo=UTC)
    return [
        Reading(
            entity_id=f"urn:ngsi-ld:WaterObserved:gauge{i % entities:04d}",
            entity_type="WaterObserved",
            attributes={
                "waterLevel": Attribute(value=1.0 + (i % 500) / 100, type="Number", unit="MTR"),
                "temperature": Attribute(value=20.5, type="Number", unit="CEL"),
                "name": Attribute(value="人吉(水の手橋)", type="Text"),
            },
            observed_at=t0 + timedelta(seconds=i),
            source=Source(adapter="bench"),
        )
        for i in range(n)
    ]


async def run(args: argparse.Namespace, url: str) -> tuple[float, OrionUplink]:
    config = OrionConfig.model_validate(
        {
            "name": "bench",
            "type": "orion",
            "url": url,
            "service": "bench",
            "service_path": "/river",
            "catch_up": args.catch_up,
        }
    )
    with tempfile.TemporaryDirectory() as data_dir:
        up = OrionUplink(config, AdapterContext(gateway_id="bench", data_dir=data_dir))
        await up.start()
        data = readings(args.readings, args.entities)
        try:
            started = time.perf_counter()
            for k in range(0, len(data), args.batch):
                outcomes = await up.deliver(data[k : k + args.batch])
                bad = [o for o in outcomes if o.status is not Status.DELIVERED]
                if bad:
                    raise SystemExit(f"delivery failed: {bad[0]}")
            elapsed = time.perf_counter() - started
        finally:
            await up.close()
    return elapsed, up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000, help="records per deliver() call (batch_max_rows)")
    parser.add_argument("--entities", type=int, default=200, help="distinct entities the readings cycle through")
    parser.add_argument("--catch-up", default="full-history", choices=["full-history", "latest-state"])
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    ready: Any = ctx.Queue()
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(ready, stop), daemon=True)
    server.start()
    try:
        url = ready.get(timeout=30)
        elapsed, up = asyncio.run(run(args, url))
        stop.set()
        updates, stored = ready.get(timeout=30)
    finally:
        stop.set()
        server.join(timeout=10)
    c = up.counters
    print(f"orion uplink ({args.catch_up}, batch {args.batch}): {args.readings} readings in {elapsed:.2f} s")
    print(
        f"  {args.readings / elapsed:,.0f} readings/s, {c.requests / elapsed:,.1f} requests/s, "
        f"{c.bytes / elapsed / 1e6:.1f} MB/s of request bodies"
    )
    print(
        f"  requests {c.requests}, updates accepted {updates}, entities stored {stored}, avg body {c.bytes // max(c.requests, 1)} B"
    )


if __name__ == "__main__":
    main()
