"""A burst of refused readings at the head of a lane no longer stops the uplink for good.

Bisection is depth-first, so `SUSPECT_AFTER` bad records at the head were refused alone before any good
one was tried; the refusals were then taken to be about the request, every record retried, and the next
attempt read the same batch: nothing ever delivered or dead-lettered, the status `refused`. Now one
record from further on in the batch is sent as a probe first: accepted, it vouches for the request.
Against the strict Orion double; the first test through the delivery loop and a real SQLite outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop, UplinkState
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import DELIVERED, Fault, Outcome, Status
from gateway.uplinks.http.batch import SUSPECT_AFTER
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.orion_double import Arrival, OrionDouble, Refusal

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)
POINT = {"type": "Point", "coordinates": [130.76, 32.21]}


def reading(entity: str, n: int, *, geo: str = "") -> Reading:
    attrs = {
        "waterLevel": Attribute(value=float(n), type="Number", unit="MTR"),
        "sequence": Attribute(value=n, type="Number"),
    }
    if geo:
        attrs[geo] = Attribute(value=POINT, type="geo:json")
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:{entity}",
        entity_type="WaterObserved",
        attributes=attrs,
        observed_at=T0 + timedelta(seconds=n),
        source=Source(adapter="gauge"),
    )


def config(url: str, **keys: Any) -> OrionConfig:
    doc = {"name": "orion-main", "type": "orion", "url": url, "service": "hitoyoshi", "service_path": "/river"}
    return OrionConfig.model_validate({**doc, **keys})


async def deliver(orion: OrionDouble, tmp_path: Path, *batches: list[Reading]) -> list[list[Outcome]]:
    up = OrionUplink(config(orion.url), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))
    await up.start()
    try:
        return [await up.deliver(batch) for batch in batches]
    finally:
        await up.close()


def arrived(orion: OrionDouble) -> list[tuple[str, int]]:
    return [(e["id"].rsplit(":", 1)[1], e["sequence"]["value"]) for e in orion.written]


def refuse_sequences_below(limit: int) -> Callable[[Arrival], Refusal | None]:
    """Orion refusing a request holding a reading with a sequence below `limit` (a value it does not take)."""

    def answer(arrival: Arrival) -> Refusal | None:
        entities = orjson.loads(arrival.body)["entities"]
        if any(e["sequence"]["value"] < limit for e in entities):
            body = {"error": "BadRequest", "description": "Invalid characters in attribute value"}
            return Refusal(status=400, body=orjson.dumps(body))
        return None

    return answer


async def instant(_: float) -> None:
    await asyncio.sleep(0)


async def test_a_burst_at_the_head_of_the_lane_is_dead_lettered_and_the_rest_delivered(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    bad = SUSPECT_AFTER + 2
    orion_double.refuse_entity("urn:ngsi-ld:WaterObserved:bad")
    box = await Outbox.open(
        tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["orion-main"]
    )
    await box.append_many([reading("bad", n) for n in range(bad)] + [reading(f"g{n}", n) for n in range(bad, 30)])
    cfg = config(orion_double.url, start_delay_max_s=0)
    loop = DeliveryLoop(
        OrionUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path))), cfg, box, sleep=instant
    )
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(10):
            # the old uplink never got here: it asked Orion the same 18 questions again and again
            while (await box.stats()).uplinks["orion-main"].pending["normal"] and len(orion_double.requests) < 200:
                await asyncio.sleep(0.005)
        status = loop.status()
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, 10)
        await loop.uplink.close()
    stats = await box.stats()
    assert (stats.uplinks["orion-main"].pending["normal"], stats.dead_letters.get("orion-main", 0)) == (0, bad)
    assert status.state in (UplinkState.SENDING, UplinkState.IDLE)
    assert (status.delivered, status.rejected, status.last_error) == (30 - bad, bad, "")
    assert sorted(n for _, n in arrived(orion_double)) == list(range(bad, 30))
    await box.close()


async def test_records_orion_refuses_by_its_own_rules_at_the_head_are_dead_lettered(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # the gauge was installed with `location`; later its profile names the same point `position`:
    # Orion answers every one of those readings 413 NoResourcesAvailable (one location per entity)
    await deliver(orion_double, tmp_path, [reading("g1", 0, geo="location")])
    orion_double.requests.clear()
    backlog = [reading("g1", n, geo="position") for n in range(1, 11)] + [reading(f"g{n}", n) for n in range(11, 16)]
    [outcomes] = await deliver(orion_double, tmp_path, backlog)
    assert [o.status for o in outcomes] == [Status.REJECTED] * 10 + [Status.DELIVERED] * 5
    assert outcomes[0].reason.startswith(
        "orion-main: Orion refused entity urn:ngsi-ld:WaterObserved:g1, got HTTP 413 NoResourcesAvailable: "
        "You cannot use more than one geo location attribute"
    )
    # the probe is the last record of the batch; the other good ones follow once it vouched for the request
    # Orion writes what precedes the bad entity of a refused request, so look at the accepted requests:
    # the probe (the last record of the batch) first, then the good ones it vouched for
    accepted = [
        [e["id"].rsplit(":", 1)[1] for e in r.json()["entities"]] for r in orion_double.requests if r.status == 204
    ]
    assert accepted == [["g15"], ["g11"], ["g12", "g13", "g14"]]


async def test_the_probe_never_overtakes_an_earlier_reading_of_its_entity(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.refuse_entity("urn:ngsi-ld:WaterObserved:bad")
    n = SUSPECT_AFTER
    batch = [reading("bad", k) for k in range(n)] + [reading("g1", n), reading("g2", n + 1), reading("g1", n + 2)]
    [outcomes] = await deliver(orion_double, tmp_path, batch)
    assert outcomes == [outcomes[0]] * n + [DELIVERED] * 3 and outcomes[0].status is Status.REJECTED
    # the furthest reading that is its entity's next one: g2, not the later g1
    assert arrived(orion_double) == [("g2", n + 1), ("g1", n), ("g1", n + 2)]


async def test_a_gauge_that_sent_bad_values_for_a_while_is_vouched_for_by_its_own_later_readings(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    bad = SUSPECT_AFTER + 3
    orion_double.refuse_with(refuse_sequences_below(bad))
    [outcomes] = await deliver(orion_double, tmp_path, [reading("g1", k) for k in range(bad + 4)])
    assert [o.status for o in outcomes] == [Status.REJECTED] * bad + [Status.DELIVERED] * 4
    # no other entity to probe with: the furthest reading goes first, and again once the older good
    # ones went through, so Orion ends at the newest reading and is not rolled back
    last = bad + 3
    assert arrived(orion_double) == [("g1", last)] + [("g1", k) for k in range(bad, last)] + [("g1", last)]
    stored = orion_double.entities[("hitoyoshi", "/river", "urn:ngsi-ld:WaterObserved:g1")]
    assert stored["sequence"]["value"] == last


async def test_a_probe_refused_too_leaves_everything_to_retry_and_says_what_it_got(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    for k in range(SUSPECT_AFTER):
        orion_double.refuse_entity(f"urn:ngsi-ld:WaterObserved:b{k}")
    orion_double.refuse_entity("urn:ngsi-ld:WaterObserved:last", "Invalid characters in attribute name")
    batch = [reading(f"b{k}", k) for k in range(SUSPECT_AFTER)] + [reading("last", SUSPECT_AFTER)]
    [outcomes] = await deliver(orion_double, tmp_path, batch)
    assert outcomes == [
        Outcome(
            Status.RETRY,
            f"Orion at {orion_double.url}/v2/op/update refused {SUSPECT_AFTER} records one by one and accepted none, "
            "got HTTP 400 BadRequest: Invalid characters in attribute value; a probe with a record from further on "
            "in the batch (urn:ngsi-ld:WaterObserved:last) was refused too, got HTTP 400 BadRequest: Invalid "
            "characters in attribute name; nothing is dead-lettered until a request goes through: if this lasts, it "
            "is about the request, not the data (url, headers, a proxy or API gateway in front)",
            Fault.CONFIGURATION,
        )
    ] * len(batch)
    assert orion_double.written == []
