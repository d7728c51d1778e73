"""Retained messages: the stored copy a broker replays because we subscribed (every connect with 3.1.1, a new
subscription with 5) is an old value and makes no reading unless its subscription says `retained = "take"`;
a message published with retain while we listen (or queued for our session) is live data and is taken."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters.mqtt.config import MqttAdapterConfig
from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.adapters.mqtt.peers import Sink, counter_config, running, wait_for
from tests.support.mosquitto import MosquittoBroker

PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])
COUNTER = {
    "topic": "test/+",
    "entity_id": "urn:ngsi-ld:Thing:{topic[1]}",
    "entity_type": "Thing",
    "attributes": [{"path": "n", "name": "n"}],
}
# payloads that carry their own time: a retained copy is dated by it, not by its arrival
DATED = {
    "topic": "dated/+",
    "entity_id": "urn:ngsi-ld:Thing:{topic[1]}",
    "entity_type": "Thing",
    "attributes": [{"path": "n", "name": "n"}],
    "timestamp": {"path": "t", "format": "iso8601"},
    "retained": "take",
}


def publish_retained_sync(broker: MosquittoBroker, messages: list[tuple[str, bytes]]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            info = client.publish(topic, payload, qos=1, retain=True)
            info.wait_for_publish(timeout=10)
            assert info.is_published(), "the broker did not acknowledge a test publish"
    finally:
        client.disconnect()
        client.loop_stop()


async def publish_retained(broker: MosquittoBroker, messages: list[tuple[str, bytes]]) -> None:
    await asyncio.to_thread(publish_retained_sync, broker, messages)


@PROTOCOLS
async def test_a_retained_old_value_makes_no_reading_at_any_connect(
    mosquitto_private: MosquittoBroker, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters.mqtt.adapter")
    await publish_retained(mosquitto_private, [("test/dead", b'{"n": 4242}')])
    cfg = counter_config(mosquitto_private, f"retained-skip-{protocol}", protocol=protocol)
    sink = Sink()
    skipped = []
    for _ in range(3):  # restarts with the session kept: 3.1.1 renews its subscription each time
        async with running(cfg, sink) as adapter:
            await asyncio.sleep(0.5)
            skipped.append(adapter.diagnostics().get("retained_skipped"))
            assert adapter.in_flight == 0  # acknowledged: it does not come back as a queued message
    assert sink.readings == []  # the default is "skip"
    # 3.1.1: replayed at every connect, skipped each time; 5: the broker is told not to replay it
    assert skipped == ([1, 1, 1] if protocol == "3.1.1" else [0, 0, 0])
    records = [r for r in caplog.records if "retained message" in r.getMessage()]
    assert {r.levelno for r in records} <= {logging.DEBUG}
    lines = [r.getMessage() for r in records]
    assert len(lines) == sum(skipped)
    assert all("test/dead" in line and "4242" not in line for line in lines)


@PROTOCOLS
async def test_live_and_queued_retained_publishes_are_readings(
    mosquitto_private: MosquittoBroker, protocol: str
) -> None:
    cfg = counter_config(mosquitto_private, f"retained-live-{protocol}", protocol=protocol)
    sink = Sink()
    async with running(cfg, sink):
        await publish_retained(mosquitto_private, [("test/a", b'{"n": 1}')])  # while we listen
        await wait_for(lambda: sink.values() == [1], what="the live retained publish")
    await asyncio.sleep(0.2)
    await publish_retained(mosquitto_private, [("test/a", b'{"n": 2}')])  # queued for our session
    async with running(cfg, sink) as adapter:
        await wait_for(lambda: sink.values() == [1, 2], what="the queued retained publish")
        await asyncio.sleep(0.3)
        # 3.1.1: the renewed subscription also replays the stored copy (n = 2): skipped, not stored twice
        assert adapter.diagnostics().get("retained_skipped") == (1 if protocol == "3.1.1" else 0)
    assert sink.values() == [1, 2]


@PROTOCOLS
async def test_take_maps_a_retained_message_by_its_own_time_and_skip_does_not(
    mosquitto_private: MosquittoBroker, protocol: str
) -> None:
    await publish_retained(
        mosquitto_private,
        [("dated/x", b'{"n": 7, "t": "2026-07-01T09:10:00Z"}'), ("test/y", b'{"n": 8}')],
    )
    cfg = counter_config(
        mosquitto_private, f"retained-take-{protocol}", protocol=protocol, subscriptions=[COUNTER, DATED]
    )
    sink = Sink()
    async with running(cfg, sink) as adapter:
        await wait_for(lambda: len(sink.readings) == 1, what="the retained dated message")
        await asyncio.sleep(0.3)
        assert adapter.diagnostics()["retained_skipped"] == (1 if protocol == "3.1.1" else 0)
        assert adapter.in_flight == 0
    [reading] = sink.readings
    assert (reading.entity_id, reading.attributes["n"].value) == ("urn:ngsi-ld:Thing:x", 7)
    assert reading.observed_at == datetime(2026, 7, 1, 9, 10, tzinfo=UTC)


def test_retained_is_skip_or_take_per_subscription() -> None:
    base: dict[str, Any] = {"name": "z", "type": "mqtt", "subscriptions": [COUNTER, DATED]}
    cfg = MqttAdapterConfig.model_validate(base)
    assert [s.retained.value for s in cfg.subscriptions] == ["skip", "take"]
    doc = {"gateway": {"id": "gw1"}, "adapters": [{**base, "subscriptions": [{**COUNTER, "retained": "keep"}]}]}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert [line for line in info.value.errors if line.startswith("adapters")] == [
        "adapters[0].subscriptions[0].retained: input should be 'skip' or 'take', got \"keep\""
    ]
