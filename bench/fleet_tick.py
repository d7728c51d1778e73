"""Fleet figures: the cost of one fleet tick (every 10 s on the box), of a /metrics render, of a latency observation.

Run from the repository root: `.venv/bin/python -m bench.fleet_tick`. A real gateway (simulated adapter,
the Orion double on loopback as its uplink) with a few thousand rows buffered. The machine is shared and
noisy: each figure is the median of many runs.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.fleet.latency import LatencyHistogram
from gateway.fleet.metrics import render
from gateway.records import Attribute, Reading, Source
from tests.support.orion_double import OrionDouble

TICKS = 60


def gauge(i: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:g{i % 50}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=float(i), type="Number", unit="MTR")},
        observed_at=datetime.now(UTC),
        source=Source(adapter="gauges"),
    )


async def main() -> None:
    async with OrionDouble(keep_log=False) as orion:
        orion.fail(503, count=10**9)  # rows stay buffered: the status has a backlog to count
        with tempfile.TemporaryDirectory() as d:
            Gateway.fleet_autotick = False
            gw = Gateway(
                parse_config(
                    {
                        "gateway": {"id": "bench", "data_dir": str(Path(d) / "data")},
                        "adapters": [{"name": "gauges", "type": "simulated", "rate": 0.001}],
                        "uplinks": [{"name": "orion", "type": "orion", "url": orion.url}],
                        "fleet": {},
                    }
                )
            )
            await gw.start()
            try:
                await gw._emit_many([gauge(i) for i in range(5000)])
                assert gw.fleet is not None
                ticks, renders, statuses = [], [], []
                now = time.time()
                for i in range(TICKS):
                    t0 = time.perf_counter()
                    await gw.fleet.tick(now + i * 10)
                    ticks.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    doc = await gw.fleet.status()
                    statuses.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    render(doc)
                    renders.append(time.perf_counter() - t0)
            finally:
                await gw.stop()
    h = LatencyHistogram()
    n = 200_000
    t0 = time.perf_counter()
    for i in range(n):
        h.observe(i * 0.001, 100)
    observe_ns = (time.perf_counter() - t0) / n * 1e9
    print(f"fleet tick (status, probes, alarms, Device entity): median {statistics.median(ticks) * 1000:.2f} ms")
    print(f"status document as plain JSON: median {statistics.median(statuses) * 1000:.2f} ms")
    print(f"/metrics render of it: median {statistics.median(renders) * 1000:.2f} ms")
    print(f"latency observation (once per delivered batch): {observe_ns:.0f} ns")


if __name__ == "__main__":
    asyncio.run(main())
