"""The `orion` uplink against the strict Orion double: batching, splitting, bisecting, retrying."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway
from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.secrets import SecretStore
from gateway.uplinks.api import DELIVERED, Fault, Status
from gateway.uplinks.orion import OrionConfig, OrionUplink
from tests.support import orion_rules
from tests.support.orion_double import V2_UPDATE, OrionDouble
from tests.support.ports import free_port

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)


def reading(entity: str, level: float, minute: int = 0, *, name: str = "") -> Reading:
    attrs = {"waterLevel": Attribute(value=level, type="Number", unit="MTR")}
    if name:
        attrs["name"] = Attribute(value=name, type="Text")
    return Reading(
        entity_id=f"urn:ngsi-ld:WaterObserved:{entity}",
        entity_type="WaterObserved",
        attributes=attrs,
        observed_at=T0 + timedelta(minutes=minute),
        source=Source(adapter="gauge"),
    )


def make_uplink(url: str, tmp_path: Path, **keys: Any) -> OrionUplink:
    doc = {"name": "orion-main", "type": "orion", "url": url, "service": "hitoyoshi", "service_path": "/river"}
    doc.update(keys)
    return OrionUplink(OrionConfig.model_validate(doc), AdapterContext(gateway_id="gw-001", data_dir=str(tmp_path)))


def levels(orion: OrionDouble, entity: str) -> float:
    return float(orion.entities[("hitoyoshi", "/river", f"urn:ngsi-ld:WaterObserved:{entity}")]["waterLevel"]["value"])


async def test_happy_path_one_request_with_fiware_headers(orion_double: OrionDouble, tmp_path: Path) -> None:
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        batch = [reading("g1", 1.0, 0), reading("g2", 2.0, 0), reading("g1", 1.5, 10)]
        assert await up.deliver(batch) == [DELIVERED] * 3
    finally:
        await up.close()
    [req] = orion_double.requests
    assert req.path == V2_UPDATE and req.status == 204
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Fiware-Service"] == "hitoyoshi"
    assert req.headers["Fiware-ServicePath"] == "/river"
    uuid.UUID(req.headers["Fiware-Correlator"])
    body = req.json()
    assert body["actionType"] == "append"
    # same entity twice in one batch is fine for v2 and keeps the order of observation
    assert [(e["id"][-2:], e["waterLevel"]["value"]) for e in body["entities"]] == [
        ("g1", 1.0),
        ("g2", 2.0),
        ("g1", 1.5),
    ]
    assert levels(orion_double, "g1") == 1.5
    assert (up.counters.delivered, up.counters.requests, up.counters.bytes) == (3, 1, len(req.body))


async def test_413_splits_the_request_in_halves(tmp_path: Path) -> None:
    async with OrionDouble(max_body=1500) as orion:
        up = make_uplink(orion.url, tmp_path)
        await up.start()
        try:
            batch = [reading(f"g{i}", float(i)) for i in range(8)]
            assert await up.deliver(batch) == [DELIVERED] * 8
        finally:
            await up.close()
        statuses = [r.status for r in orion.requests]
        assert statuses[0] == 413 and statuses.count(204) >= 2
        assert all(len(r.body) <= 1500 for r in orion.requests if r.status == 204)
        assert orion.arrivals == [f"urn:ngsi-ld:WaterObserved:g{i}" for i in range(8)]


async def test_max_batch_entities_plans_several_requests(orion_double: OrionDouble, tmp_path: Path) -> None:
    up = make_uplink(orion_double.url, tmp_path, max_batch_entities=3)
    await up.start()
    try:
        assert await up.deliver([reading(f"g{i}", 1.0) for i in range(7)]) == [DELIVERED] * 7
    finally:
        await up.close()
    assert [len(r.json()["entities"]) for r in orion_double.requests] == [3, 3, 1]
    # one batch, one correlator: Orion's log lines of all three requests can be found together
    assert len({r.headers["Fiware-Correlator"] for r in orion_double.requests}) == 1


async def test_poison_record_is_bisected_out_and_dead_lettered_with_orions_reason(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    orion_double.refuse_entity("urn:ngsi-ld:WaterObserved:g5")
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        outcomes = await up.deliver([reading(f"g{i}", float(i)) for i in range(8)])
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 5 + [Status.REJECTED] + [Status.DELIVERED] * 2
    assert outcomes[5].reason == (
        "orion-main: Orion refused entity urn:ngsi-ld:WaterObserved:g5, "
        "got HTTP 400 BadRequest: Invalid characters in attribute value"
    )
    assert orion_double.arrivals == [f"urn:ngsi-ld:WaterObserved:g{i}" for i in (0, 1, 2, 3, 4, 6, 7)]
    assert up.counters.rejected == 1 and up.counters.delivered == 7


async def test_entity_orion_refuses_by_its_own_rules_is_dead_lettered(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    # two geo:json locations without ignoreType: Orion answers 413 NoResourcesAvailable for the whole request
    point = {"type": "Point", "coordinates": [130.76, 32.21]}
    twice = Reading(
        entity_id="urn:ngsi-ld:WaterObserved:g9",
        entity_type="WaterObserved",
        attributes={
            "location": Attribute(value=point, type="geo:json"),
            "site": Attribute(value=point, type="geo:json"),
        },
        observed_at=T0,
        source=Source(adapter="gauge"),
    )
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        outcomes = await up.deliver([reading("g1", 1.0), twice, reading("g2", 2.0), reading("g3", 3.0)])
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.REJECTED, Status.DELIVERED, Status.DELIVERED]
    assert outcomes[1].reason.startswith(
        "orion-main: Orion refused entity urn:ngsi-ld:WaterObserved:g9, got HTTP 413 NoResourcesAvailable: "
        "You cannot use more than one geo location attribute"
    )
    assert orion_double.arrivals == [f"urn:ngsi-ld:WaterObserved:g{i}" for i in (1, 2, 3)]


async def test_reading_that_cannot_be_converted_is_rejected_without_a_request(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    bad = Reading(
        entity_id="urn:ngsi-ld:WaterObserved:g1",
        entity_type="WaterObserved",
        attributes={"lastCalibration": Attribute(value="yesterday", type="DateTime")},
        observed_at=T0,
        source=Source(adapter="gauge"),
    )
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        outcomes = await up.deliver([bad, reading("g2", 2.0)])
    finally:
        await up.close()
    assert outcomes[0].status is Status.REJECTED
    assert outcomes[0].reason.startswith("orion-main: cannot convert urn:ngsi-ld:WaterObserved:g1, got ")
    assert outcomes[1] == DELIVERED and orion_double.arrivals == ["urn:ngsi-ld:WaterObserved:g2"]


async def test_header_level_400_is_retried_not_bisected(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.fail(400, body={"error": "BadRequest", "description": "bad character in tenant name"}, count=1)
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        outcomes = await up.deliver([reading("g1", 1.0), reading("g2", 2.0)])
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.RETRY, Status.RETRY]
    assert outcomes[0].reason == (
        "Orion refused the request itself, got HTTP 400 BadRequest: bad character in tenant name; "
        "check service/tenant settings"
    )
    assert len(orion_double.requests) == 1


async def test_503_retries_then_recovers_logging_each_change_once(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.uplinks.http.batch")
    orion_double.fail(503, count=2)
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        batch = [reading("g1", 1.0), reading("g2", 2.0)]
        first = await up.deliver(batch)
        second = await up.deliver(batch)
        third = await up.deliver(batch)
    finally:
        await up.close()
    reason = f"Orion at {orion_double.url}/v2/op/update failed, got HTTP 503 ServiceUnavailable: scripted fault"
    assert first == second == [first[0]] * 2 and first[0].status is Status.RETRY and first[0].reason == reason
    assert third == [DELIVERED] * 2
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", f"{reason}; readings stay buffered and are retried"),
        ("INFO", f"delivering to {orion_double.url}/v2/op/update again"),
    ]
    assert up.counters.retries == 4 and up.counters.delivered == 2 and up.counters.last_error == reason


async def test_failure_mid_batch_keeps_earlier_requests_delivered(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.fail(502, after=1, count=1)
    up = make_uplink(orion_double.url, tmp_path, max_batch_entities=2)
    await up.start()
    try:
        outcomes = await up.deliver([reading(f"g{i}", 1.0) for i in range(6)])
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 2 + [Status.RETRY] * 4
    # nothing after the failed request was sent: per-entity order survives the retry
    assert [r.status for r in orion_double.requests] == [204, 502]


async def test_timeout_is_retry(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.hang()
    up = make_uplink(orion_double.url, tmp_path, timeout_s=0.3)
    await up.start()
    try:
        outcomes = await up.deliver([reading("g1", 1.0)])
    finally:
        await up.close()
    # the request went out: a loaded Orion may have applied it, so it is no "cannot reach" (probed at once)
    assert (outcomes[0].status, outcomes[0].fault) == (Status.RETRY, Fault.TRANSIENT)
    assert outcomes[0].reason == (
        f"orion-main: no answer from {orion_double.url}/v2/op/update within timeout_s = 0.3 s after sending the request "
        f"(one entity, {up.counters.bytes} bytes); Orion may have applied it: if this keeps happening, raise timeout_s"
    )


async def test_connection_refused_is_retry(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    up = make_uplink(url, tmp_path)
    await up.start()
    try:
        outcomes = await up.deliver([reading("g1", 1.0), reading("g2", 1.0)])
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.RETRY] * 2
    assert outcomes[0].reason.startswith(f"orion-main: cannot reach {url}/v2/op/update, got Cannot connect to host")


async def test_wrong_url_path_is_retry_not_rejected(orion_double: OrionDouble, tmp_path: Path) -> None:
    # Orion answers a path it does not serve with 400 "Service not found", not 404: never bisected
    up = make_uplink(orion_double.url + "/orion", tmp_path)
    await up.start()
    try:
        outcomes = await up.deliver([reading("g1", 1.0), reading("g2", 1.0)])
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.RETRY] * 2
    assert outcomes[0].fault is Fault.CONFIGURATION
    assert outcomes[0].reason == (
        f"Orion does not serve {orion_double.url}/orion/v2/op/update, got HTTP 400 BadRequest: Service not found. "
        "Check your URL as probably it is wrong.; check url: the broker's address, with an API gateway's path "
        "prefix if there is one"
    )
    assert up.counters.requests == 1


async def test_x_auth_token_comes_from_the_secret_store(orion_double: OrionDouble, tmp_path: Path) -> None:
    SecretStore(tmp_path).set("orion_token", "tok-3f9a")
    orion_double.require_x_auth_token("tok-3f9a")
    up = make_uplink(
        orion_double.url,
        tmp_path,
        x_auth_token="secret:orion_token",
        headers={"apikey": "secret:orion_token", "X-Box": "gw-001"},
    )
    await up.start()
    try:
        assert await up.deliver([reading("g1", 1.0)]) == [DELIVERED]
    finally:
        await up.close()
    [req] = orion_double.requests
    assert (req.headers["X-Auth-Token"], req.headers["apikey"], req.headers["X-Box"]) == (
        "tok-3f9a",
        "tok-3f9a",
        "gw-001",
    )


async def test_refused_token_is_retry_with_an_error_log(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SecretStore(tmp_path).set("orion_token", "old-token")
    orion_double.require_x_auth_token("new-token")
    up = make_uplink(orion_double.url, tmp_path, x_auth_token="secret:orion_token")
    await up.start()
    try:
        outcomes = await up.deliver([reading("g1", 1.0)])
        await up.deliver([reading("g1", 1.0)])
    finally:
        await up.close()
    reason = "Orion refused our credentials, got HTTP 401: Invalid token; check x_auth_token / oauth2 (readings stay buffered)"
    assert outcomes[0].status is Status.RETRY and outcomes[0].reason == reason
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [reason]


async def test_latest_state_sends_only_the_newest_reading_per_entity(orion_double: OrionDouble, tmp_path: Path) -> None:
    up = make_uplink(orion_double.url, tmp_path, catch_up="latest-state")
    await up.start()
    try:
        batch = [reading("g1", 1.0, 0), reading("g2", 5.0, 0), reading("g1", 3.0, 20), reading("g1", 2.0, 10)]
        assert await up.deliver(batch) == [DELIVERED] * 4
    finally:
        await up.close()
    [req] = orion_double.requests
    assert [(e["id"][-2:], e["waterLevel"]["value"]) for e in req.json()["entities"]] == [("g2", 5.0), ("g1", 3.0)]
    assert up.counters.superseded == 2 and up.counters.delivered == 4


async def test_latest_state_older_readings_follow_a_retry(orion_double: OrionDouble, tmp_path: Path) -> None:
    orion_double.fail(503)
    up = make_uplink(orion_double.url, tmp_path, catch_up="latest-state")
    await up.start()
    try:
        outcomes = await up.deliver([reading("g1", 1.0, 0), reading("g1", 2.0, 10)])
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.RETRY, Status.RETRY]
    assert up.counters.superseded == 0


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=24),
    poison=st.sets(st.integers(min_value=0, max_value=23), max_size=4),
    per_request=st.integers(min_value=1, max_value=10),
)
async def test_bisection_rejects_exactly_the_poison_and_keeps_order(
    size: int, poison: set[int], per_request: int
) -> None:
    poison = {p for p in poison if p < size}
    async with OrionDouble() as orion:
        for p in poison:
            orion.refuse_entity(f"urn:ngsi-ld:WaterObserved:g{p}")
        with tempfile.TemporaryDirectory() as data_dir:
            up = make_uplink(orion.url, Path(data_dir), max_batch_entities=per_request)
            await up.start()
            try:
                outcomes = await up.deliver([reading(f"g{i}", float(i)) for i in range(size)])
            finally:
                await up.close()
        if len(poison) == size:
            # nothing accepted vouches for the request: no refusal is trusted, everything waits
            assert [o.status for o in outcomes] == [Status.RETRY] * size
            assert orion.arrivals == []
            return
        assert [o.status for o in outcomes] == [
            Status.REJECTED if i in poison else Status.DELIVERED for i in range(size)
        ]
        assert orion.arrivals == [f"urn:ngsi-ld:WaterObserved:g{i}" for i in range(size) if i not in poison]


# ---- what tells a receiver which gateway and which readings a request carries ----------------------


async def test_requests_name_the_gateway_and_carry_their_buffer_seqs(orion_double: OrionDouble, tmp_path: Path) -> None:
    seqs = [101, 102, 103, 104, 105, 108, 120]
    batch = [dataclasses.replace(reading(f"g{i}", 1.0), seq=s) for i, s in enumerate(seqs)]
    orion_double.refuse_entity("urn:ngsi-ld:WaterObserved:g6")  # seq 120: bisected out
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        outcomes = await up.deliver(batch)
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 6 + [Status.REJECTED]
    first = orion_double.requests[0]
    assert first.headers["User-Agent"] == f"edgegw/{gateway.__version__} (gw-001)"
    assert first.headers["Edgegw-Gateway"] == "gw-001"
    # each request says exactly which readings it holds, in the compact form of the MQTT `seq` property
    assert [(r.headers["Edgegw-Seq"], r.status) for r in orion_double.requests] == [
        ("101-105,108,120", 400),
        ("101-103", 204),
        ("104-105,108,120", 400),
        ("104-105", 204),
        ("108,120", 400),
        ("108", 204),
        ("120", 400),
    ]
    # Orion ignores headers it does not know: the strict rules accept the request as it was sent
    assert orion_rules.validate_v2_update(orion_double.requests[1].headers, orion_double.requests[1].body) == (
        204,
        None,
    )


async def test_a_request_of_scattered_readings_carries_their_span(orion_double: OrionDouble, tmp_path: Path) -> None:
    batch = [dataclasses.replace(reading(f"g{i}", 1.0), seq=2 * i + 1) for i in range(300)]
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        assert await up.deliver(batch) == [DELIVERED] * 300
    finally:
        await up.close()
    [req] = orion_double.requests
    assert "Edgegw-Seq" not in req.headers and req.headers["Edgegw-Seq-Span"] == "1-599"


async def test_readings_without_seqs_send_no_seq_header(orion_double: OrionDouble, tmp_path: Path) -> None:
    up = make_uplink(orion_double.url, tmp_path)
    await up.start()
    try:
        assert await up.deliver([reading("g1", 1.0)]) == [DELIVERED]
    finally:
        await up.close()
    [req] = orion_double.requests
    assert "Edgegw-Seq" not in req.headers and "Edgegw-Seq-Span" not in req.headers


async def test_an_echoed_token_never_reaches_a_dead_letter_or_a_retry_reason(
    orion_double: OrionDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A far side that quotes our request back: its X-Auth-Token in a JSON error and in a plain
    # body. The reason text is logged, kept in status.json and stored with a dead letter.
    token = "tok-" + uuid.uuid4().hex
    monkeypatch.setenv("ORION_TOKEN", token)
    up = make_uplink(orion_double.url, tmp_path, x_auth_token="env:ORION_TOKEN")
    await up.start()
    try:
        good, bad = reading("g1", 1.0), reading("g2", 2.0, name="bad")
        orion_double.refuse_entity(bad.entity_id, f"attribute refused for request with X-Auth-Token {token}")
        outcomes = await up.deliver([good, bad])
        orion_double.fail(500, body=f"upstream said: token={token} " + "x" * 400)
        [retried] = await up.deliver([reading("g3", 3.0)])
    finally:
        await up.close()
    assert outcomes[0] is DELIVERED and outcomes[1].status is Status.REJECTED
    assert "X-Auth-Token ***" in outcomes[1].reason and token not in outcomes[1].reason
    assert retried.status is Status.RETRY and "token=***" in retried.reason and token not in retried.reason
    assert token not in up.counters.last_error
