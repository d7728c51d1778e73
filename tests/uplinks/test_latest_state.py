"""`catch_up = "latest-state"` when the newest reading of an entity is refused: the next newest is sent.

The older readings used to be acknowledged as delivered (superseded) although nothing of the entity
reached the broker: the platform stayed at a stale value and they were in no dead-letter table. Now
the next newest is promoted and sent, up to `PROMOTIONS` times per delivery, and the older ones follow
the reading that was delivered. Against the strict Orion double, refusing readings by their value.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import DELIVERED, Fault, Outcome, Status
from gateway.uplinks.http import batch as engine
from gateway.uplinks.http.batch import HttpBatchUplink
from gateway.uplinks.ngsi_ld import NgsiLdConfig, NgsiLdUplink
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import Arrival, OrionDouble, Refusal

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)
BAD = -999.0  # a value the platform in front of Orion refuses
REFUSAL = "HTTP 400 BadRequest: Invalid characters in attribute value"


def reading(entity: str, level: float, minute: int) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:{entity}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=level, type="Number", unit="MTR")},
        observed_at=T0 + timedelta(minutes=minute),
        source=Source(adapter="gauge"),
    )


def orion(url: str, tmp_path: Path, **keys: Any) -> OrionUplink:
    doc = {
        "name": "orion-main",
        "type": "orion",
        "url": url,
        "service": "hitoyoshi",
        "service_path": "/river",
        "catch_up": "latest-state",
    }
    doc.update(keys)
    return OrionUplink(OrionConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


async def deliver(up: HttpBatchUplink, batch: list[Reading]) -> list[Outcome]:
    await up.start()
    try:
        return await up.deliver(batch)
    finally:
        await up.close()


def refuse_bad_levels(arrival: Arrival) -> Refusal | None:
    doc = orjson.loads(arrival.body)
    entities = doc["entities"] if isinstance(doc, dict) else doc
    if any(e["waterLevel"]["value"] == BAD for e in entities):
        return Refusal(status=400, body=b'{"error":"BadRequest","description":"Invalid characters in attribute value"}')
    return None


def level(orion: OrionDouble, entity: str) -> float:
    return float(orion.entities[("hitoyoshi", "/river", f"urn:ngsi-ld:WaterObserved:{entity}")]["waterLevel"]["value"])


def rejected(entity: str) -> Outcome:
    return Outcome(
        Status.REJECTED, f"orion-main: Orion refused entity urn:ngsi-ld:WaterObserved:{entity}, got {REFUSAL}"
    )


def sent(orion: OrionDouble) -> Callable[[str], list[float]]:
    def levels(entity: str) -> list[float]:
        eid = f"urn:ngsi-ld:WaterObserved:{entity}"
        return [
            e["waterLevel"]["value"]
            for r in orion.requests
            if r.status == 204
            for e in r.json()["entities"]
            if e["id"] == eid
        ]

    return levels


async def test_a_refused_newest_reading_is_replaced_by_the_next_newest(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.refuse_with(refuse_bad_levels)
    up = orion(orion_double.url, tmp_path)
    batch = [reading("g1", 1.1, 0), reading("g1", 1.2, 5), reading("g2", 3.0, 5), reading("g1", BAD, 10)]
    outcomes = await deliver(up, batch)
    assert outcomes == [DELIVERED, DELIVERED, DELIVERED, rejected("g1")]
    assert level(orion_double, "g1") == 1.2 and sent(orion_double)("g1") == [1.2]  # 1.1 superseded, never sent
    assert (up.counters.superseded, up.counters.delivered, up.counters.rejected) == (1, 3, 1)


async def test_an_entity_alone_in_the_batch_is_vouched_for_by_its_own_older_reading(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # nothing else in the batch to show that Orion takes our requests: the older reading does
    orion_double.refuse_with(refuse_bad_levels)
    outcomes = await deliver(orion(orion_double.url, tmp_path), [reading("g1", 1.1, 0), reading("g1", BAD, 10)])
    assert outcomes == [DELIVERED, rejected("g1")]
    assert level(orion_double, "g1") == 1.1


async def test_a_newest_reading_the_converter_refuses_is_replaced_too(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    unconvertible = Reading(
        entity_id="urn:ngsi-ld:WaterObserved:g1",
        entity_type="WaterObserved",
        attributes={"lastCalibration": Attribute(value="yesterday", type="DateTime")},
        observed_at=T0 + timedelta(minutes=10),
        source=Source(adapter="gauge"),
    )
    outcomes = await deliver(
        orion(orion_double.url, tmp_path), [reading("g1", 1.1, 0), reading("g1", 1.2, 5), unconvertible]
    )
    assert outcomes[:2] == [DELIVERED, DELIVERED] and outcomes[2].status is Status.REJECTED
    assert outcomes[2].reason.startswith("orion-main: cannot convert urn:ngsi-ld:WaterObserved:g1, got ")
    assert level(orion_double, "g1") == 1.2


async def test_several_refused_in_a_row_end_at_the_newest_acceptable_value(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.refuse_with(refuse_bad_levels)
    batch = [reading("g1", 1.0, 0), reading("g1", 1.5, 1)] + [reading("g1", BAD, m) for m in range(2, 5)]
    batch.append(reading("g2", 2.0, 4))
    outcomes = await deliver(orion(orion_double.url, tmp_path), batch)
    assert outcomes == [DELIVERED, DELIVERED] + [rejected("g1")] * 3 + [DELIVERED]
    assert level(orion_double, "g1") == 1.5 and sent(orion_double)("g1") == [1.5]


async def test_past_the_promotions_of_one_delivery_the_older_readings_wait_for_the_next(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.refuse_with(refuse_bad_levels)
    promotions = engine.PROMOTIONS  # read here: the old engine had none, and the other tests must run on it
    batch = [reading("g1", 1.0, 0), reading("g1", 1.5, 1)] + [reading("g1", BAD, m) for m in range(2, promotions + 3)]
    batch.append(reading("g2", 2.0, 0))
    up = orion(orion_double.url, tmp_path)
    await up.start()
    try:
        first = await up.deliver(batch)
        # the loop reads the readings to retry again, without the dead letters
        second = await up.deliver([r for r, o in zip(batch, first, strict=True) if o.status is Status.RETRY])
    finally:
        await up.close()
    wait = Outcome(
        Status.RETRY,
        f"orion-main: Orion refused the {promotions + 1} newest readings of urn:ngsi-ld:WaterObserved:g1 in this "
        "delivery; the 2 older ones wait for the next delivery (catch_up = latest-state)",
        Fault.TRANSIENT,
    )
    assert first == [wait, wait] + [rejected("g1")] * (promotions + 1) + [DELIVERED]
    assert second == [DELIVERED, DELIVERED]
    assert level(orion_double, "g1") == 1.5


async def test_ngsi_ld_promotes_the_next_newest_reading_too(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.refuse_with(refuse_bad_levels)
    doc = {"name": "ld-main", "type": "ngsi-ld", "url": orion_double.url, "catch_up": "latest-state"}
    up = NgsiLdUplink(NgsiLdConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    batch = [reading("g1", 1.1, 0), reading("g1", 1.2, 5), reading("g2", 3.0, 5), reading("g1", BAD, 10)]
    outcomes = await deliver(up, batch)
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 3 + [Status.REJECTED]
    stored = orion_double.ld_entities[("", "urn:ngsi-ld:WaterObserved:g1")]
    assert stored["waterLevel"]["value"] == 1.2
