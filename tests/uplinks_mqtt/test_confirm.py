"""`[uplinks.confirm]`: what Orion shows decides DELIVERED; the uplink never gets ahead of an unconfirmed entity.

The Orion double plays the Orion behind the agent (its strict `POST /v2/op/query`); what an agent
would have written is put there with `POST /v2/op/update`. With the real agents (a restart while
the gateway publishes, a backlog kept in order): tests/iota_agent/test_agent_confirm.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.adapter_api import AdapterContext
from gateway.errors import UplinkTransient
from gateway.logs import component_logger
from gateway.uplinks.api import Status
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from gateway.uplinks.mqtt.confirm import ConfirmConfig, OrionConfirmer
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import V2_QUERY, OrionDouble
from tests.uplinks_mqtt.conftest import reading, subscribe

HEADERS = {"Content-Type": "application/json", "Fiware-Service": "edgegw", "Fiware-ServicePath": "/river"}


async def write(orion: OrionDouble, entities: list[dict[str, Any]]) -> None:
    """What an IoT Agent does: append the entities to the double."""
    async with aiohttp.ClientSession() as http:
        body = orjson.dumps({"actionType": "append", "entities": entities})
        async with http.post(f"{orion.url}/v2/op/update", data=body, headers=HEADERS) as resp:
            assert resp.status == 204, await resp.text()


def at_seq(entity_id: str, seq: int) -> dict[str, Any]:
    return {"id": entity_id, "type": "WaterObserved", "edgegwSeq": {"type": "Number", "value": seq}}


def confirmer(orion: OrionDouble, tmp_path: Any, **overrides: Any) -> OrionConfirmer:
    conf = ConfirmConfig.model_validate(
        {"url": orion.url, "service": "edgegw", "service_path": "/river", "timeout_s": 0.5, **overrides}
    )
    return OrionConfirmer(
        conf,
        attribute="edgegwSeq",
        uplink="pref-mqtt",
        data_dir=str(tmp_path),
        log=component_logger("gateway.uplinks.mqtt", "pref-mqtt"),
    )


async def test_entities_at_their_seq_are_confirmed_in_one_query(orion_double: OrionDouble, tmp_path: Any) -> None:
    await write(orion_double, [at_seq("g1", 41), at_seq("g2", 7)])
    c = confirmer(orion_double, tmp_path)
    await c.start()
    try:
        found = await c.wait({"g1": 41, "g2": 7})
    finally:
        await c.close()
    assert (found.confirmed, found.reason) == (frozenset({"g1", "g2"}), "")
    [query] = orion_double.requests_to(V2_QUERY)
    assert query.query == "options=keyValues&limit=2"
    assert query.json() == {"entities": [{"id": "g1"}, {"id": "g2"}], "attrs": ["edgegwSeq"]}
    assert query.status == 200


async def test_entities_behind_or_missing_are_not_confirmed_with_a_reason(
    orion_double: OrionDouble, tmp_path: Any
) -> None:
    await write(orion_double, [at_seq("g1", 41), at_seq("g2", 5)])
    c = confirmer(orion_double, tmp_path)
    await c.start()
    try:
        behind = await c.wait({"g1": 41, "g2": 7})
        missing = await c.wait({"g9": 3})
    finally:
        await c.close()
    assert behind.confirmed == frozenset({"g1"})
    assert behind.reason == (
        "uplinks.pref-mqtt.confirm: not confirmed by Orion within 0.5 s for 1 entity, e.g. g2 has edgegwSeq 5, "
        "published 7; the agent may be down or restarting, or refused by Orion; republishing from the buffer"
    )
    assert missing.confirmed == frozenset()
    assert missing.reason == (
        "uplinks.pref-mqtt.confirm: not confirmed by Orion within 0.5 s for 1 entity, e.g. g9 is not in Orion "
        "(service 'edgegw', path '/river'); check confirm.entity_id, service and service_path against the agent's "
        "provisioning; republishing from the buffer"
    )
    assert len(orion_double.requests_to(V2_QUERY)) > 2  # asked again until the timeout


async def test_a_seq_written_while_waiting_is_confirmed(orion_double: OrionDouble, tmp_path: Any) -> None:
    await write(orion_double, [at_seq("g1", 40)])
    c = confirmer(orion_double, tmp_path, timeout_s=5)
    await c.start()
    try:
        waiting = asyncio.ensure_future(c.wait({"g1": 41}))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await write(orion_double, [at_seq("g1", 41)])
        found = await waiting
    finally:
        await c.close()
    assert found.confirmed == frozenset({"g1"})


async def test_more_entities_than_orions_page_take_several_queries(orion_double: OrionDouble, tmp_path: Any) -> None:
    ids = [f"g{n}" for n in range(2500)]
    await write(orion_double, [at_seq(i, 1) for i in ids])
    c = confirmer(orion_double, tmp_path, timeout_s=10)  # three pages of 1,000 take longer than 0.5 s on a busy box
    await c.start()
    try:
        found = await c.wait(dict.fromkeys(ids, 1))
    finally:
        await c.close()
    assert found.confirmed == frozenset(ids)
    # Orion answers at most 1,000 a page (and 20 without `limit`)
    assert [q.query for q in orion_double.requests_to(V2_QUERY)] == [
        "options=keyValues&limit=1000",
        "options=keyValues&limit=1000",
        "options=keyValues&limit=500",
    ]


async def test_orion_refusing_the_query_is_a_reason_to_retry_logged_once(
    orion_double: OrionDouble, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.uplinks.mqtt")
    service_not_found = {
        "error": "BadRequest",
        "description": "Service not found. Check your URL as probably it is wrong.",
    }
    orion_double.fail(400, count=2, body=service_not_found)
    c = confirmer(orion_double, tmp_path)
    await c.start()
    try:
        first = await c.wait({"g1": 1})
        second = await c.wait({"g1": 1})
    finally:
        await c.close()
    reason = (
        f"uplinks.pref-mqtt.confirm: Orion at {orion_double.url}/v2/op/query refused the query, got HTTP 400 "
        "BadRequest: Service not found. Check your URL as probably it is wrong.; check confirm.url, service "
        "and the credentials"
    )
    assert first.reason == second.reason == reason
    assert first.confirmed == second.confirmed == frozenset()
    assert c.errors == 2
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"{reason}; readings stay buffered and are published again")
    ]


async def test_orion_unreachable_raises_nothing_and_says_so(tmp_path: Any) -> None:
    conf = ConfirmConfig.model_validate({"url": "http://127.0.0.1:9", "timeout_s": 0.5})
    c = OrionConfirmer(
        conf,
        attribute="edgegwSeq",
        uplink="pref-mqtt",
        data_dir=str(tmp_path),
        log=component_logger("gateway.uplinks.mqtt", "pref-mqtt"),
    )
    await c.start()
    try:
        found = await c.wait({"g1": 1})
        with pytest.raises(UplinkTransient):
            await c.current(["g1"])
    finally:
        await c.close()
    assert found.confirmed == frozenset()
    assert found.reason.startswith("uplinks.pref-mqtt.confirm: cannot reach http://127.0.0.1:9/v2/op/query?options=")


async def test_credentials_go_with_the_query(
    orion_double: OrionDouble, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    orion_double.require_x_auth_token("t0ken")
    monkeypatch.setenv("ORION_TOKEN", "t0ken")
    await write_with_token(orion_double, [at_seq("g1", 3)])
    c = confirmer(orion_double, tmp_path, x_auth_token="env:ORION_TOKEN")
    await c.start()
    try:
        found = await c.wait({"g1": 3})
    finally:
        await c.close()
    assert found.confirmed == frozenset({"g1"})


async def write_with_token(orion: OrionDouble, entities: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as http:
        body = orjson.dumps({"actionType": "append", "entities": entities})
        async with http.post(
            f"{orion.url}/v2/op/update", data=body, headers={**HEADERS, "X-Auth-Token": "t0ken"}
        ) as resp:
            assert resp.status == 204


# ---- the uplink with confirmation ----------------------------------------------------------------


def confirming_uplink(
    broker: MosquittoBroker, context: AdapterContext, orion: OrionDouble, **overrides: Any
) -> MqttUplink:
    conf = {
        "name": "pref-mqtt",
        "type": "mqtt",
        "host": broker.host,
        "port": broker.port,
        "apikey": "K3Y",
        "confirm": {"url": orion.url, "service": "edgegw", "service_path": "/river", "timeout_s": 0.5},
        **overrides,
    }
    return MqttUplink(MqttUplinkConfig.model_validate(conf), context)


async def test_broker_acknowledged_but_not_in_orion_is_retry(
    mosquitto_private: MosquittoBroker, context: AdapterContext, orion_double: OrionDouble
) -> None:
    up = confirming_uplink(mosquitto_private, context, orion_double)
    await write(orion_double, [at_seq("urn:ngsi-ld:WaterObserved:gauge2", 12)])  # as if an agent wrote it
    batch = [reading("urn:ngsi-ld:WaterObserved:gauge1", seq=11), reading("urn:ngsi-ld:WaterObserved:gauge2", seq=12)]
    async with subscribe(mosquitto_private, "/K3Y/#") as sub:
        await up.start()
        try:
            outcomes = await up.deliver(batch)
            await sub.wait(2)
        finally:
            await up.close()
    assert outcomes[1].status is Status.DELIVERED
    assert outcomes[0].status is Status.RETRY
    assert outcomes[0].reason.startswith(
        "uplinks.pref-mqtt.confirm: not confirmed by Orion within 0.5 s for 1 "
        "entity, e.g. urn:ngsi-ld:WaterObserved:gauge1 is not in Orion"
    )
    # every measure carries its seq: the marker Orion shows
    assert [orjson.loads(m.payload)["edgegwSeq"] for m in sub.messages] == [11, 12]
    assert (up.counters.acked, up.counters.confirmed, up.counters.republished) == (2, 1, 1)
    diagnostics = up.diagnostics()  # what status.json and `edgegw status` show
    assert (diagnostics["confirmed"], diagnostics["republished"], diagnostics["confirm_errors"]) == (1, 1, 0)


async def test_an_entitys_next_message_waits_for_the_previous_to_be_confirmed(
    mosquitto_private: MosquittoBroker, context: AdapterContext, orion_double: OrionDouble
) -> None:
    # two messages of one entity (split by size): a lost first one must not be "confirmed" by the second
    up = confirming_uplink(mosquitto_private, context, orion_double, max_message_bytes=512)
    batch = [
        reading("urn:ngsi-ld:WaterObserved:gauge1", at=n, seq=n + 1, waterLevel=1.0, note="x" * 150) for n in range(4)
    ]
    async with subscribe(mosquitto_private, "/K3Y/#") as sub:
        await up.start()
        try:
            assert len(up._plan(batch)[0]) == 2
            outcomes = await up.deliver(batch)
        finally:
            await up.close()
    assert len(sub.messages) == 1  # the second message was never published
    assert [o.status for o in outcomes] == [Status.RETRY] * 4
    assert outcomes[3].reason == (
        "urn:ngsi-ld:WaterObserved:gauge1: not sent, an earlier message of the entity is not confirmed in Orion"
    )
