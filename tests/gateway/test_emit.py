"""What adapters emit reaches the buffer checked: a burst goes in as one append, and a reading no broker
would accept is dropped, counted and logged without holding back the rest."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.records import Attribute, Reading, Source
from tests.support.orion_double import OrionDouble

T0 = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)


def gauge(n: int, level: float) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:g{n % 2}",
        entity_type="WaterObserved",
        attributes={
            "waterLevel": Attribute(value=level, type="Number", unit="MTR"),
            "sequence": Attribute(value=n, type="Number"),
        },
        observed_at=T0,
        source=Source(adapter="gauges"),
    )


async def test_a_burst_with_a_bad_reading_stores_the_rest_and_counts_the_bad_one(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gw = Gateway(
        parse_config(
            {
                "gateway": {"id": "gw-emit", "data_dir": str(tmp_path)},
                "uplinks": [{"name": "orion", "type": "orion", "url": orion_double.url}],
            }
        )
    )
    await gw.start()
    try:
        burst = [gauge(0, 1.25), gauge(1, float("nan")), gauge(2, 1.27), gauge(3, float("inf"))]
        with caplog.at_level(logging.DEBUG):
            await gw._emit_many(burst)
        assert gw.invalid_readings == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        # said once per adapter and entity (both bad readings are of g1), the next time at debug level
        assert warnings == [
            "reading dropped: urn:ngsi-ld:WaterObserved:g1.waterLevel: must be a finite number, got nan"
        ]
        async with asyncio.timeout(10):
            while gw.loops[0].delivered < 2:
                await asyncio.sleep(0.01)
        assert [e["sequence"]["value"] for e in orion_double.written] == [0, 2]
        assert (await gw.outbox.stats()).appended_total == 2  # type: ignore[union-attr]
        # a burst of nothing but bad readings stores nothing and does not wait for a commit
        await asyncio.wait_for(gw._emit_many([gauge(5, float("nan"))]), 1)
        assert gw.invalid_readings == 3
    finally:
        await gw.stop()


async def test_an_adapters_flush_commits_the_open_group_at_once(orion_double: OrionDouble, tmp_path: Path) -> None:
    """The emit's flush (a source whose window is full) seals the buffer's group: no quiet-time wait."""
    gw = Gateway(
        parse_config(
            {
                "gateway": {"id": "gw-flush", "data_dir": str(tmp_path)},
                "buffer": {"commit_interval_ms": 1000},
                "uplinks": [{"name": "orion", "type": "orion", "url": orion_double.url}],
            }
        )
    )
    await gw.start()
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        pending = gw._emit_many([gauge(0, 1.25), gauge(1, 1.26)])
        gw._flush()
        await pending
        assert loop.time() - t0 < 0.2  # unsealed, the group waits 250 ms without new rows
    finally:
        await gw.stop()
