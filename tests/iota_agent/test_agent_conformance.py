"""What docs/iot-agent-conformance.md says about the real IoT Agents, checked against them.

Each test publishes what a device (or this gateway) would and looks at what reaches the Orion double
and at the agents' own logs and subscriptions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from gateway.adapter_api import AdapterContext
from tests.iota_agent.conftest import APIKEY, make_uplink, wait_for
from tests.support.iot_agent import JSON, UL, StartAgent
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble
from tests.support.orion_rules import Tolerance
from tests.uplinks_mqtt.conftest import reading

pytestmark = pytest.mark.e2e


async def publish(broker: MosquittoBroker, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.publish(topic, payload, qos=1)


async def test_id_and_type_measures_are_renamed_and_unprovisioned_measures_are_text(
    mosquitto_private: MosquittoBroker, start_iot_agent: StartAgent
) -> None:
    # Text holding a number: Orion stores it; only the gateway promises never to send it
    async with OrionDouble(tolerate={Tolerance.MISTYPED_VALUES}) as orion:
        agent = await start_iot_agent(JSON, broker=mosquitto_private, orion_url=orion.url)
        await agent.provision_group(APIKEY, entity_type="Thing")
        await publish(mosquitto_private, f"/{APIKEY}/d1/attrs", b'{"id":"x","type":"y","n":5}')
        await wait_for(lambda: bool(orion.written), 10, "the agent to write the measure")
    [entity] = orion.written
    assert entity["id"] == "Thing:d1"  # autoprovisioned: <entity_type>:<device id>
    assert {k: v["type"] for k, v in entity.items() if k not in ("id", "type")} == {
        "measure_id": "Text",
        "measure_type": "Text",
        "n": "Text",
        "TimeInstant": "DateTime",
    }
    assert (entity["measure_id"]["value"], entity["n"]["value"]) == ("x", 5)


async def test_a_device_provisioned_alone_needs_a_config_group(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent
) -> None:
    agent = await start_iot_agent(JSON, broker=mosquitto_private, orion_url=orion_double.url)
    await agent.provision_device(
        "d1",
        apikey="nogroup",
        entity_name="urn:ngsi-ld:Thing:d1",
        entity_type="Thing",
        attributes=[{"object_id": "n", "name": "n", "type": "Number"}],
    )
    await publish(mosquitto_private, "/nogroup/d1/attrs", b'{"n":5}')
    await wait_for(
        lambda: "MEASURES-004: Device not found for topic /nogroup/d1/attrs" in agent.log(),
        10,
        "the agent to refuse the measure",
    )
    assert orion_double.requests == []
    await agent.provision_group("nogroup", entity_type="Thing")
    await publish(mosquitto_private, "/nogroup/d1/attrs", b'{"n":6}')
    await wait_for(lambda: bool(orion_double.written), 10, "the measure in Orion once the group exists")
    assert orion_double.written[0]["n"]["value"] == 6


async def test_the_agents_subscribe_at_qos_0_with_shared_subscriptions(
    tmp_path: Path, orion_double: OrionDouble, start_iot_agent: StartAgent
) -> None:
    broker = MosquittoBroker(tmp_path / "broker", extra_conf="log_type subscribe\n")
    broker.start()
    try:
        await start_iot_agent(JSON, broker=broker, orion_url=orion_double.url)
        await start_iot_agent(UL, broker=broker, orion_url=orion_double.url)
        log = (tmp_path / "broker" / "mosquitto.log").read_text()
    finally:
        broker.stop()
    subscriptions = [
        line.split()[1:]
        for line in log.splitlines()
        if line.split()[1:2] and line.split()[1].startswith(("iotajson_", "iotaul_"))
    ]
    assert {(client.split("_")[0], topic) for client, _, topic in subscriptions} >= {
        ("iotajson", "$share/json//+/+/attrs"),
        ("iotajson", "$share/json//json/+/+/attrs"),
        ("iotaul", "$share/ul//+/+/attrs"),
        ("iotaul", "$share/ul//ul/+/+/attrs"),
    }
    assert {qos for _, qos, _ in subscriptions} == {"0"}  # a QoS 1 publish reaches them at QoS 0


async def test_two_agents_on_one_broker_need_the_protocol_topic_style(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent, context: AdapterContext
) -> None:
    json_agent = await start_iot_agent(JSON, broker=mosquitto_private, orion_url=orion_double.url)
    ul_agent = await start_iot_agent(UL, broker=mosquitto_private, orion_url=orion_double.url)
    attributes = [{"object_id": "waterLevel", "name": "waterLevel", "type": "Number"}]
    for agent in (json_agent, ul_agent):  # one platform, one apikey for its gauges in both agents
        await agent.provision_group(APIKEY, entity_type="WaterObserved", entityNameExp="id", attributes=attributes)
    plain = make_uplink(mosquitto_private, context)
    protocol = make_uplink(mosquitto_private, context, topic_style="protocol")
    try:
        await plain.deliver([reading("g1", seq=1)])
        await wait_for(
            lambda: "MEASURES-003: Parse error" in ul_agent.log(), 10, "the UL agent to choke on the JSON measure"
        )
        await protocol.deliver([reading("g2", seq=2)])
        await wait_for(lambda: any(e["id"] == "g2" for e in orion_double.written), 10, "g2 in Orion")
        await asyncio.sleep(0.5)  # time for a wrong agent to act on it too
    finally:
        await plain.close()
        await protocol.close()
    # on /<apikey>/... both agents take the message (the UL agent cannot parse JSON); on
    # /json/<apikey>/... only the JSON agent does
    assert ul_agent.log().count("MEASURES-003: Parse error") == 1
    assert [e["id"] for e in orion_double.written] == ["g1", "g2"]
