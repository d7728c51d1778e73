"""A configuration mistake never dead-letters data: refusals about the request (a wrong url, an API
gateway, a proxy's body limit) are retried with an ERROR, while a bad record among good ones is still
dead-lettered — against the strict Orion double, with and without a body-limited proxy in front."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.delivery import DeliveryLoop, UplinkState, UplinkStatus
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import DELIVERED, Fault, Status
from gateway.uplinks.http.batch import SUSPECT_AFTER
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support.body_limit_proxy import BodyLimitProxy
from tests.support.orion_double import OrionDouble

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)
SERVICE_NOT_FOUND = "HTTP 400 BadRequest: Service not found. Check your URL as probably it is wrong."


def reading(entity: str, n: int = 0, *, note: str = "") -> Reading:
    attrs = {
        "waterLevel": Attribute(value=float(n), type="Number", unit="MTR"),
        "sequence": Attribute(value=n, type="Number"),
    }
    if note:
        attrs["note"] = Attribute(value=note, type="Text")
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


def make_uplink(url: str, tmp_path: Path, **keys: Any) -> OrionUplink:
    return OrionUplink(config(url, **keys), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


async def deliver(up: OrionUplink, *batches: list[Reading]) -> list[list[Any]]:
    await up.start()
    try:
        return [await up.deliver(batch) for batch in batches]
    finally:
        await up.close()


def arrived(orion: OrionDouble) -> list[int]:
    return [e["sequence"]["value"] for e in orion.written]


async def instant(_: float) -> None:
    """The delivery loop's sleep in these tests: backoffs pass at once."""
    await asyncio.sleep(0)


async def run_loop(loop: DeliveryLoop, done: Callable[[], bool], timeout: float = 10.0) -> UplinkStatus:
    """Run the loop until `done()`; its status at that moment (it says `stopped` after)."""
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.005)
            return loop.status()
    finally:
        loop.stop_soon()
        await asyncio.wait_for(task, timeout)
        await loop.uplink.close()


async def open_box(tmp_path: Path) -> Outbox:
    return await Outbox.open(
        tmp_path / "b.db", BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1), ["orion-main"]
    )


# ---- a wrong url ---------------------------------------------------------------------------------


async def test_url_ending_in_v2_keeps_every_reading_pending_with_an_error_naming_the_fix(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    box = await open_box(tmp_path)
    await box.append_many([reading(f"g{n % 3}", n) for n in range(30)])
    cfg = config(orion_double.url + "/v2", batch_max_rows=10, start_delay_max_s=0)
    loop = DeliveryLoop(
        OrionUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path))), cfg, box, sleep=instant
    )
    status = await run_loop(loop, lambda: len(orion_double.requests) >= 4)
    reason = (
        f"Orion does not serve {orion_double.url}/v2/v2/op/update, got {SERVICE_NOT_FOUND}; url must not end in /v2 "
        f'(the uplink adds /v2): set url = "{orion_double.url}"'
    )
    # one request per attempt: the answer is recognised, nothing is bisected
    assert {(r.path, len(r.json()["entities"])) for r in orion_double.requests} == {("/v2/v2/op/update", 10)}
    stats = await box.stats()
    assert stats.uplinks["orion-main"].pending["normal"] == 30
    assert stats.dead_letters.get("orion-main", 0) == 0
    assert (status.state, status.last_error, status.rejected, status.delivered) == (UplinkState.REFUSED, reason, 0, 0)
    errors = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [
        ("gateway.uplinks.http.batch", reason),
        (
            "gateway.delivery",
            f"delivery refused (10 of 10 records to retry): {reason}; nothing is dead-lettered "
            "until the configuration is fixed",
        ),
    ]
    await box.close()


async def test_an_api_gateway_refusing_everything_dead_letters_nothing_and_stops_bisecting_early(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # an answer the uplink cannot recognise as being about the request: bisection finds every record
    # refused alone and nothing accepted, so none of the refusals is trusted
    orion_double.fail(400, count=10_000, body={"error": "BadRequest", "description": "request blocked by policy"})
    [outcomes] = await deliver(make_uplink(orion_double.url, tmp_path), [reading(f"g{n}", n) for n in range(64)])
    assert {(o.status, o.fault) for o in outcomes} == {(Status.RETRY, Fault.CONFIGURATION)}
    assert outcomes[0].reason == (
        f"Orion at {orion_double.url}/v2/op/update refused {SUSPECT_AFTER} records one by one and accepted none, "
        "got HTTP 400 BadRequest: request blocked by policy; a probe with a record from further on in the batch "
        "(urn:ngsi-ld:WaterObserved:g63) was refused too; nothing is dead-lettered until a request goes through: "
        "if this lasts, it is about the request, not the data (url, headers, a proxy or API gateway in front)"
    )
    # 64 records: 7 requests halving down to the first record, 11 more finding the next 7 refused alone, then
    # the probe; whatever the batch, at most log2(n) + 1 + 2 * SUSPECT_AFTER + 1 requests per attempt
    assert len(orion_double.requests) == 19 <= 7 + 2 * SUSPECT_AFTER + 1


async def test_a_bad_record_alone_waits_for_a_good_one_to_vouch_for_the_request(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.refuse_entity("urn:ngsi-ld:WaterObserved:bad")
    first, second = await deliver(
        make_uplink(orion_double.url, tmp_path), [reading("bad", 0)], [reading("bad", 0), reading("g1", 1)]
    )
    assert [(o.status, o.fault) for o in first] == [(Status.RETRY, Fault.CONFIGURATION)]
    assert [o.status for o in second] == [Status.REJECTED, Status.DELIVERED]
    assert second[0].reason == (
        "orion-main: Orion refused entity urn:ngsi-ld:WaterObserved:bad, "
        "got HTTP 400 BadRequest: Invalid characters in attribute value"
    )
    assert arrived(orion_double) == [1]


async def test_bad_records_at_the_head_of_a_batch_are_dead_lettered_once_a_later_one_is_taken(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    bad = [f"b{n}" for n in range(SUSPECT_AFTER - 1)]
    for entity in bad:
        orion_double.refuse_entity(f"urn:ngsi-ld:WaterObserved:{entity}")
    batch = [reading(e, n) for n, e in enumerate(bad)] + [reading(f"g{n}", n) for n in range(len(bad), 20)]
    [outcomes] = await deliver(make_uplink(orion_double.url, tmp_path), batch)
    assert [o.status for o in outcomes] == [Status.REJECTED] * len(bad) + [Status.DELIVERED] * (20 - len(bad))
    assert arrived(orion_double) == list(range(len(bad), 20))


# ---- 413 from a proxy in front of Orion ------------------------------------------------------------


async def test_a_proxy_with_a_smaller_body_limit_dead_letters_nothing_and_is_remembered(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with BodyLimitProxy(orion_double.url, max_body=2_000) as proxy:
        up = make_uplink(proxy.url, tmp_path)
        batch = [reading(f"g{n}", n) for n in range(40)]
        first, second = await deliver(up, batch, [reading(f"g{n}", n) for n in range(40, 80)])
    assert first == [DELIVERED] * 40 and second == [DELIVERED] * 40
    assert arrived(orion_double) == list(range(80))
    refused = min(proxy.refused)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        f"Orion (or a proxy in front of it) refused a request of {refused} bytes as too large, below "
        f"max_batch_bytes = 1048576; requests stay below {refused} bytes until restart: set max_batch_bytes = "
        f"{refused - 1}, or raise the proxy's limit"
    ]
    # the second batch was planned below the limit: no 413 any more
    refused_before_second = len(proxy.refused)
    assert all(r.status == 204 for r in orion_double.requests[-3:])
    assert len(proxy.refused) == refused_before_second
    assert up.counters.rejected == 0


async def test_one_entity_above_a_proxys_limit_is_retried_with_an_error_never_dead_lettered(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with BodyLimitProxy(orion_double.url, max_body=600) as proxy:
        up = make_uplink(proxy.url, tmp_path)
        big = reading("big", 0, note="x" * 700)
        [outcomes] = await deliver(up, [reading("g1", 1), big, reading("g2", 2)])
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.RETRY, Status.RETRY]
    assert outcomes[1].fault is Fault.CONFIGURATION
    size = proxy.refused[-1]
    assert outcomes[1].reason == (
        "Orion or a proxy in front of it refused one entity (urn:ngsi-ld:WaterObserved:big) in a request of "
        f"{size} bytes, got HTTP 413: 413 Request Entity Too Large (an HTML page: a proxy or web server answered, "
        "not Orion's API); its body limit is below max_batch_bytes = 1048576: raise it (nginx: "
        "client_max_body_size), readings stay buffered"
    )
    assert arrived(orion_double) == [1]


async def test_an_entity_larger_than_max_batch_bytes_is_dead_lettered_when_others_go_through(tmp_path: Path) -> None:
    # the far side's limit is the configured one: a record above it can never be delivered
    async with OrionDouble(max_body=2048) as orion:
        up = make_uplink(orion.url, tmp_path, max_batch_bytes=2048)
        [outcomes] = await deliver(up, [reading("g1", 1), reading("big", 2, note="x" * 3000), reading("g3", 3)])
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.REJECTED, Status.DELIVERED]
    assert outcomes[1].reason.startswith(
        "orion-main: Orion refused entity urn:ngsi-ld:WaterObserved:big, got HTTP 413 RequestEntityTooLarge: payload size: "
    )
    assert arrived(orion) == [1, 3]


async def test_a_proxy_limit_below_one_entity_shows_as_refused_in_the_status(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    box = await open_box(tmp_path)
    await box.append_many([reading(f"g{n}", n) for n in range(5)])
    async with BodyLimitProxy(orion_double.url, max_body=100) as proxy:
        cfg = config(proxy.url, start_delay_max_s=0)
        loop = DeliveryLoop(
            OrionUplink(cfg, AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path))), cfg, box, sleep=instant
        )
        status = await run_loop(loop, lambda: len(proxy.refused) >= 12)
    stats = await box.stats()
    assert stats.uplinks["orion-main"].pending["normal"] == 5 and stats.dead_letters.get("orion-main", 0) == 0
    assert status.state is UplinkState.REFUSED
    assert "its body limit is below max_batch_bytes = 1048576" in status.last_error
    await box.close()
