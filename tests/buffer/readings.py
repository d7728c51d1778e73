"""Builds small Readings for the buffer tests; attribute `n` makes each one recognisable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from gateway.records import Attribute, Lane, Reading, Source

T0 = datetime(2026, 5, 1, 3, 0, 0, tzinfo=UTC)


def reading(n: int, entity: str = "e1", lane: Lane = Lane.NORMAL, pad: int = 0) -> Reading:
    attrs = {"n": Attribute(value=n, type="Number")}
    if pad:
        attrs["pad"] = Attribute(value="x" * pad, type="Text")
    return Reading(
        entity_id=entity,
        entity_type="Sensor",
        attributes=attrs,
        observed_at=T0,
        source=Source(adapter="sim"),
        lane=lane,
    )


def structured_reading(n: int, entity: str = "e1", lane: Lane = Lane.NORMAL) -> Reading:
    """Like `reading`, but with what the outbox's in-memory tail must not keep: a structured value, Japan time."""
    return Reading(
        entity_id=entity,
        entity_type="Sensor",
        attributes={
            "n": Attribute(value=n, type="Number"),
            "shape": Attribute(value={"k": [n]}, type="StructuredValue"),
        },
        observed_at=T0.astimezone(timezone(timedelta(hours=9))),
        source=Source(adapter="sim"),
        lane=lane,
    )


def ns(readings: list[Reading]) -> list[int]:
    return [r.attributes["n"].value for r in readings]
