"""The `ngsi-ld` uplink against the double's batch upsert: Link/inline @context, one entity per request, 207."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import DELIVERED, Fault, Status
from gateway.uplinks.ngsi_ld import NgsiLdConfig, NgsiLdUplink
from tests.support.orion_double import LD_UPSERT, OrionDouble

CONTEXT = "https://smartdata.example.jp/context.jsonld"
T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)


def reading(entity: str, level: float, minute: int = 0) -> Reading:
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:{entity}",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=level, type="Number", unit="MTR")},
        observed_at=T0 + timedelta(minutes=minute),
        source=Source(adapter="gauge"),
    )


def make_uplink(url: str, tmp_path: Path, **keys: Any) -> NgsiLdUplink:
    doc = {"name": "ld-main", "type": "ngsi-ld", "url": url, "context": CONTEXT, "tenant": "kumamoto"}
    doc.update(keys)
    return NgsiLdUplink(NgsiLdConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


async def deliver(up: NgsiLdUplink, batch: list[Reading]) -> list[Any]:
    await up.start()
    try:
        return await up.deliver(batch)
    finally:
        await up.close()


async def test_link_mode_headers_and_body(orion_double: OrionDouble, tmp_path: Path) -> None:
    up = make_uplink(orion_double.url, tmp_path)
    assert await deliver(up, [reading("g1", 1.0), reading("g2", 2.0)]) == [DELIVERED] * 2
    [req] = orion_double.requests
    assert (req.path, req.query, req.status) == (LD_UPSERT, "options=update", 201)
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Link"] == f'<{CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    assert req.headers["NGSILD-Tenant"] == "kumamoto"
    body = req.json()
    assert [e["id"] for e in body] == ["urn:ngsi-ld:WaterObserved:g1", "urn:ngsi-ld:WaterObserved:g2"]
    assert all("@context" not in e for e in body)
    stored = orion_double.ld_entities[("kumamoto", "urn:ngsi-ld:WaterObserved:g2")]
    assert stored["waterLevel"]["value"] == 2.0 and stored["waterLevel"]["observedAt"] == "2024-07-01T03:00:00.000Z"


async def test_inline_mode_puts_the_context_in_each_entity(orion_double: OrionDouble, tmp_path: Path) -> None:
    up = make_uplink(orion_double.url, tmp_path, context_mode="inline")
    assert await deliver(up, [reading("g1", 1.0)]) == [DELIVERED]
    [req] = orion_double.requests
    assert req.headers["Content-Type"] == "application/ld+json" and "Link" not in req.headers
    assert req.json()[0]["@context"] == CONTEXT


async def test_same_entity_twice_goes_in_separate_requests_in_order(orion_double: OrionDouble, tmp_path: Path) -> None:
    up = make_uplink(orion_double.url, tmp_path)
    batch = [reading("g1", 1.0, 0), reading("g2", 2.0, 0), reading("g1", 1.5, 10), reading("g3", 3.0, 0)]
    assert await deliver(up, batch) == [DELIVERED] * 4
    assert [[e["id"][-2:] for e in r.json()] for r in orion_double.requests] == [["g1", "g2"], ["g1", "g3"]]
    assert orion_double.ld_entities[("kumamoto", "urn:ngsi-ld:WaterObserved:g1")]["waterLevel"]["value"] == 1.5


async def test_207_sorts_entities_into_delivered_rejected_and_retry(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.fail_ld_entity("urn:ngsi-ld:WaterObserved:g2", 400, "Invalid attribute value")
    orion_double.fail_ld_entity("urn:ngsi-ld:WaterObserved:g3", 500, "Database error")
    up = make_uplink(orion_double.url, tmp_path, max_batch_entities=4)
    batch = [reading(f"g{i}", float(i)) for i in range(1, 7)]
    outcomes = await deliver(up, batch)
    assert [o.status for o in outcomes] == [
        Status.DELIVERED,
        Status.REJECTED,
        Status.RETRY,
        Status.DELIVERED,
        Status.RETRY,
        Status.RETRY,
    ]
    assert outcomes[1].reason == (
        "ld-main: the NGSI-LD broker refused entity urn:ngsi-ld:WaterObserved:g2, got HTTP 400 BadRequestData: Invalid attribute value"
    )
    assert outcomes[2].reason == (
        "the NGSI-LD broker could not write entity urn:ngsi-ld:WaterObserved:g3, got HTTP 500 InternalError: Database error"
    )
    # the second request (g5, g6) is not sent while g3 waits for its retry
    assert len(orion_double.requests) == 1 and orion_double.requests[0].status == 207


async def test_400_is_bisected_like_v2(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.fail(
        400, body={"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "Invalid payload"}, count=1
    )
    up = make_uplink(orion_double.url, tmp_path)
    outcomes = await deliver(up, [reading("g1", 1.0), reading("g2", 2.0)])
    assert outcomes == [DELIVERED, DELIVERED]
    assert [r.status for r in orion_double.requests] == [400, 201, 201]


async def test_503_is_retry(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.fail(503)
    outcomes = await deliver(make_uplink(orion_double.url, tmp_path), [reading("g1", 1.0)])
    assert outcomes[0].status is Status.RETRY
    assert outcomes[0].reason == (
        f"the NGSI-LD broker at {orion_double.url}/ngsi-ld/v1/entityOperations/upsert?options=update failed, "
        "got HTTP 503 ServiceUnavailable: scripted fault"
    )


async def test_a_url_ending_in_the_api_root_is_retried_naming_the_fix(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    outcomes = await deliver(
        make_uplink(orion_double.url + "/ngsi-ld/v1", tmp_path), [reading("g1", 1.0), reading("g2", 2.0)]
    )
    assert {(o.status, o.fault) for o in outcomes} == {(Status.RETRY, Fault.CONFIGURATION)}
    assert outcomes[0].reason == (
        f"the NGSI-LD broker does not serve {orion_double.url}/ngsi-ld/v1/ngsi-ld/v1/entityOperations/upsert?options=update, "
        "got HTTP 400 BadRequest: Service not found. Check your URL as probably it is wrong.; url must not end in "
        f'/ngsi-ld/v1 (the uplink adds /ngsi-ld/v1): set url = "{orion_double.url}"'
    )
    assert len(orion_double.requests) == 1
