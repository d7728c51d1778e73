"""What the gateway keeps for the socket: the log ring (bounded, redacted, filtered) and the bounded latest readings."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import app, redact
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.logs import RingHandler
from gateway.records import Attribute, Reading, Source
from tests.support.orion_double import OrionDouble

T0 = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)


def test_the_ring_keeps_the_newest_lines_redacted_with_their_exception() -> None:
    ring = RingHandler(capacity=3)
    logger = logging.getLogger("gateway.test_ring")
    logger.addHandler(ring)
    logger.propagate = False
    try:
        redact.register("pw-991-secret")
        for i in range(5):
            logger.warning("line %d", i, extra={"component": "orion"})
        try:
            raise ValueError("bad pw-991-secret")
        except ValueError:
            logger.exception("failed", extra={"component": "modbus"})
    finally:
        logger.removeHandler(ring)
        logger.propagate = True
    lines = ring.lines(level="debug", limit=10)
    assert [(x["level"], x["component"], x["message"].splitlines()[0]) for x in lines] == [
        ("warning", "orion", "line 3"),
        ("warning", "orion", "line 4"),
        ("error", "modbus", "failed"),
    ]
    assert lines[-1]["message"].endswith("ValueError: bad ***")
    assert [x["message"] for x in ring.lines(level="warning", component="orion", limit=1)] == ["line 4"]
    assert ring.lines(level="error", component="orion") == []


async def test_latest_is_bounded_keeping_the_newest_observations(
    orion_double: OrionDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "LATEST_MAX", 10)
    monkeypatch.setattr(app, "LATEST_KEEP", 6)
    gw = Gateway(
        parse_config(
            {
                "gateway": {"id": "gw-latest", "data_dir": str(tmp_path)},
                "uplinks": [{"name": "orion", "type": "orion", "url": orion_double.url}],
            }
        )
    )
    async with gw:
        events = [
            Reading(
                entity_id=f"urn:ngsi-ld:Event:{i}",
                entity_type="Event",
                attributes={"n": Attribute(value=i, type="Number")},
                observed_at=T0 + timedelta(seconds=i),
                source=Source(adapter="scans"),
            )
            for i in range(11)
        ]
        await gw._emit_many(events)
        assert set(gw.latest) == {f"urn:ngsi-ld:Event:{i}" for i in range(5, 11)}
        await gw._emit(events[0])
        assert len(gw.latest) == 7 and "urn:ngsi-ld:Event:0" in gw.latest
