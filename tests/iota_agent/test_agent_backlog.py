"""A backlog after an outage reaches Orion through the real IoT Agents: no message becomes a request Orion refuses.

The agent turns one MQTT message into one Orion request and drops it when Orion answers 413. With
messages sized only by `max_message_bytes` (262,144), a 17-attribute relay board's backlog made
~2 MB requests; the planner now sizes messages by the bound of the agent's request
(gateway/ngsi/agent_request.py), and these tests run the worst cases through the real agents into the
Orion double, whose 1 MiB limit is Orion's, and compare the bound with the requests the agents made.

Several messages of one device in flight at once are not applied in order: the agent sends their
requests in parallel and the smaller or luckier one lands first. So these tests check that every
reading arrived and each request holds its readings in order; with `[uplinks.confirm]` the uplink
publishes an entity's next message only once the previous one is in Orion, which keeps the order
(tests/iota_agent/test_agent_confirm.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import Status
from gateway.uplinks.mqtt import MqttUplink
from tests.iota_agent.conftest import APIKEY, SEQ, make_uplink, seqs_written, wait_for
from tests.support.iot_agent import JSON, UL, AgentKind, IotAgent, StartAgent
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import V2_ENTITIES, V2_UPDATE, OrionDouble
from tests.uplinks_mqtt.conftest import T0
from tests.uplinks_mqtt.test_agent_sizing import RELAY_ID, relay_reading, request_bound

pytestmark = pytest.mark.e2e

KINDS = {"iota-json": JSON, "iota-ul": UL}
STATION_ID = "urn:ngsi-ld:WaterObserved:hitoyoshi"
# a long Japanese text (3 bytes a character in UTF-8), percent-encoded where Orion needs it
NOTE = ("人吉(水の手橋)観測所、球磨川の水位は氾濫注意水位を超えています。" * 40)[:1000]


def station_reading(seq: int) -> Reading:
    attrs = {
        "waterLevel": Attribute(value=round(2.0 + seq / 1000, 3), type="Number", unit="MTR"),
        "note": Attribute(value=NOTE, type="Text"),
    }
    return Reading(
        entity_id=STATION_ID,
        entity_type="WaterObserved",
        attributes=attrs,
        observed_at=T0 + timedelta(seconds=seq),
        source=Source(adapter="gauge"),
        seq=seq,
    )


async def provision(agent: IotAgent, entity_id: str, entity_type: str, types: dict[str, str]) -> None:
    attributes = [{"object_id": name, "name": name, "type": t} for name, t in {**types, SEQ: "Number"}.items()]
    await agent.provision_group(APIKEY, entity_type=entity_type)
    await agent.provision_device(
        entity_id, apikey=APIKEY, entity_name=entity_id, entity_type=entity_type, attributes=attributes
    )


async def deliver_backlog(up: MqttUplink, backlog: list[Reading]) -> None:
    for start in range(0, len(backlog), 1000):  # the delivery loop's default batch_max_rows
        outcomes = await up.deliver(backlog[start : start + 1000])
        assert {o.status for o in outcomes} == {Status.DELIVERED}


def check_arrived(orion: OrionDouble, entity_id: str, count: int) -> None:
    """Every reading once, each request's readings ascending, and no request Orion refused."""
    assert sorted(seqs_written(orion, entity_id)) == list(range(1, count + 1))
    assert {r.status for r in orion.requests} == {204}  # no 413 Request Entity Too Large, nothing refused
    for request in orion.requests_to(V2_UPDATE):
        seqs = [e[SEQ]["value"] for e in request.json()["entities"]]
        assert seqs == sorted(seqs)


def bound_ratios(
    planner: MqttUplink, backlog: list[Reading], orion: OrionDouble, bounder: MqttUplink | None = None
) -> list[float]:
    """Per Orion request the agent made, the bound of its message over its size; messages planned by
    `planner`, bounded by `bounder` (default the same uplink: other allowances, same messages)."""
    bounds: dict[int, int] = {}  # by the seq of the message's first reading
    for start in range(0, len(backlog), 1000):
        batch = backlog[start : start + 1000]
        for m in planner._plan(batch)[0]:
            bounds[batch[m.indices[0]].seq or 0] = request_bound(bounder or planner, batch, m.indices)
    requests = orion.requests_to(V2_UPDATE) + orion.requests_to(V2_ENTITIES)
    assert len(requests) == len(bounds), "one Orion request per MQTT message"
    ratios = []
    for request in requests:
        doc = request.json()
        first = (doc["entities"][0] if "entities" in doc else doc)[SEQ]["value"]
        ratios.append(bounds[first] / len(request.body))
    return ratios


@pytest.mark.parametrize("fmt", ["iota-json", "iota-ul"])
async def test_a_relay_board_backlog_reaches_orion_whole(
    fmt: str,
    mosquitto_private: MosquittoBroker,
    orion_double: OrionDouble,
    start_iot_agent: StartAgent,
    context: AdapterContext,
) -> None:
    kind: AgentKind = KINDS[fmt]
    agent = await start_iot_agent(kind, broker=mosquitto_private, orion_url=orion_double.url)
    types = {f"relay{n}": "Boolean" for n in range(1, 9)} | {f"input{n}": "Boolean" for n in range(1, 9)}
    await provision(agent, RELAY_ID, "Device", types | {"deviceState": "Text"})
    up = make_uplink(mosquitto_private, context, format=fmt, sequence_attribute=SEQ)
    backlog = [relay_reading(s) for s in range(1, 1401)]  # 70 s of a board read every 50 ms
    try:
        await deliver_backlog(up, backlog)
        await wait_for(lambda: len(seqs_written(orion_double)) >= 1400, 60, "the agent to write the backlog")
    finally:
        await up.close()
    check_arrived(orion_double, RELAY_ID, 1400)
    first = next(e for e in orion_double.written if e[SEQ]["value"] == 1)
    assert first["TimeInstant"]["value"] == "2024-06-01T03:00:00.050Z"  # the reading's own time, not the arrival
    assert first["relay1"]["metadata"]["TimeInstant"]["value"] == "2024-06-01T03:00:00.050Z"
    # the agent's requests are 7.5x (JSON) to 9.2x (UL) the messages here: what used to be 262,144-byte
    # messages became ~2 MB requests. The bound keeps room for metadata (48 bytes an attribute) and
    # static attributes (128 an entity) this provisioning does not add; without that room (the
    # allowances set to 0, as an operator would for it) it is within 15 % of the real requests.
    ratios = bound_ratios(up, backlog, orion_double)
    assert min(ratios) >= 1.0 and max(ratios) <= 1.6, ratios
    tight = make_uplink(
        mosquitto_private, context, format=fmt, sequence_attribute=SEQ, agent_attribute_bytes=0, agent_entity_bytes=0
    )
    ratios = bound_ratios(up, backlog, orion_double, bounder=tight)
    assert min(ratios) >= 1.0 and max(ratios) <= 1.15, ratios


@pytest.mark.parametrize("fmt", ["iota-json", "iota-ul"])
async def test_a_backlog_of_long_japanese_text_reaches_orion_whole(
    fmt: str,
    mosquitto_private: MosquittoBroker,
    orion_double: OrionDouble,
    start_iot_agent: StartAgent,
    context: AdapterContext,
) -> None:
    agent = await start_iot_agent(KINDS[fmt], broker=mosquitto_private, orion_url=orion_double.url)
    await provision(agent, STATION_ID, "WaterObserved", {"waterLevel": "Number", "note": "Text"})
    up = make_uplink(
        mosquitto_private, context, format=fmt, sequence_attribute=SEQ, agent_attribute_bytes=0, agent_entity_bytes=0
    )
    backlog = [station_reading(s) for s in range(1, 1201)]
    try:
        await deliver_backlog(up, backlog)
        await wait_for(lambda: len(seqs_written(orion_double)) >= 1200, 60, "the agent to write the backlog")
    finally:
        await up.close()
    check_arrived(orion_double, STATION_ID, 1200)
    assert orion_double.written[0]["note"]["value"].startswith("人吉%28水の手橋%29観測所、球磨川")
    # with the allowances at 0, as this provisioning needs, the bound is within a few per cent
    ratios = bound_ratios(up, backlog, orion_double)
    assert min(ratios) >= 1.0 and max(ratios) <= 1.05, ratios
