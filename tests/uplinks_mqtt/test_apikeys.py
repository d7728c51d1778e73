"""An apikey per entity type or entity-id pattern: first matching rule, else `apikey`; commands on each of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from gateway.uplinks.mqtt.commands import MqttCommandListener, uplink_apikeys
from tests.commands.test_listener import RELAY_ID, Agent, relay_board
from tests.support.mosquitto import MosquittoBroker
from tests.uplinks_mqtt.conftest import reading

RULES = [
    {"apikey": "devices", "entity_type": "Device"},
    {
        "apikey": "kumamoto-gauges",
        "entity_type": "WaterObserved",
        "entity_id_pattern": r"urn:ngsi-ld:WaterObserved:kumamoto-.*",
    },
    {"apikey": "lockers", "entity_id_pattern": r".*:Locker:.*"},
]


def config(**overrides: Any) -> MqttUplinkConfig:
    return MqttUplinkConfig.model_validate(
        {"name": "pref-mqtt", "type": "mqtt", "host": "127.0.0.1", "apikeys": RULES, **overrides}
    )


def test_the_first_matching_rule_names_the_apikey_else_the_fallback(context: AdapterContext) -> None:
    up = MqttUplink(config(apikey="fallback"), context)
    batch = [
        reading("urn:ngsi-ld:Device:relays", entity_type="Device", seq=1),
        reading("urn:ngsi-ld:WaterObserved:kumamoto-1", seq=2),
        reading("urn:ngsi-ld:WaterObserved:yatsushiro-1", seq=3),  # the pattern must match the whole id
        reading("urn:ngsi-ld:Locker:l1", entity_type="Device", seq=4),  # rules in order: Device comes first
        reading("urn:ngsi-ld:Locker:l2", entity_type="Locker", seq=5),
    ]
    messages, rejected = up._plan(batch)
    assert rejected == {}
    assert sorted(m.topic for m in messages) == sorted(
        [
            "/devices/urn:ngsi-ld:Device:relays/attrs",
            "/kumamoto-gauges/urn:ngsi-ld:WaterObserved:kumamoto-1/attrs",
            "/fallback/urn:ngsi-ld:WaterObserved:yatsushiro-1/attrs",
            "/devices/urn:ngsi-ld:Locker:l1/attrs",
            "/lockers/urn:ngsi-ld:Locker:l2/attrs",
        ]
    )


def test_without_a_fallback_an_unmatched_reading_is_refused(context: AdapterContext) -> None:
    up = MqttUplink(config(), context)
    messages, rejected = up._plan([reading("urn:ngsi-ld:WaterObserved:yatsushiro-1", seq=3)])
    assert messages == []
    assert rejected == {
        0: (
            "urn:ngsi-ld:WaterObserved:yatsushiro-1: no apikey for entity type 'WaterObserved', got no [[uplinks.apikeys]] "
            "rule that matches it and no apikey; add a rule or set apikey"
        )
    }


async def test_commands_are_taken_on_every_apikey_and_answered_on_theirs(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    cfg = config(host=mosquitto.host, port=mosquitto.port, apikey="K3Y", commands="on", ack_timeout_s=5)
    assert uplink_apikeys(cfg) == ("devices", "kumamoto-gauges", "lockers", "K3Y")
    async with relay_board(tmp_path) as rig, Agent(mosquitto) as agent:
        listener = MqttCommandListener(
            cfg, AdapterContext(gateway_id="gw1", data_dir=str(tmp_path)), rig.router.dispatch
        )
        assert "/devices/+/cmd" in listener.topics and "/K3Y/+/cmd" in listener.topics
        listener.start()
        try:
            await listener.wait_connected(5.0)
            await agent._client.subscribe("/devices/+/cmdexe", qos=1)  # type: ignore[union-attr]
            await agent.send(f"/devices/{RELAY_ID}/cmd", b'{"relay_2": true}')
            topic, payload = await agent.result()
            assert await rig.coils() == [False, True, False, False, False, False, False, False]
        finally:
            await listener.stop()
    assert topic == f"/devices/{RELAY_ID}/cmdexe"
    assert payload == b'{"relay_2":"OK: relays: command relay_2 written %28modbus unit 4 FC05 @1 x1%29"}'


@pytest.mark.parametrize("fmt", ["iota-json", "iota-ul"])
def test_the_topic_cache_keys_by_type_when_rules_use_it(fmt: str, context: AdapterContext) -> None:
    up = MqttUplink(config(apikey="fallback", format=fmt), context)
    same_id = [
        reading("urn:ngsi-ld:Thing:x", entity_type="Device", seq=1),
        reading("urn:ngsi-ld:Thing:x", entity_type="Other", seq=2),
    ]
    messages, _ = up._plan(same_id)
    assert sorted(m.topic for m in messages) == [
        "/devices/urn:ngsi-ld:Thing:x/attrs",
        "/fallback/urn:ngsi-ld:Thing:x/attrs",
    ]
