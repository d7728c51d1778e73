"""A broker host that does not resolve, as the southbound adapter tells it: the resolver's words, not
"[Errno -2] Unknown error -2" (the review's finding in the MQTT client the adapter shares)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.mqtt.config import MqttAdapterConfig
from tests.adapters.mqtt.peers import Sink, running
from tests.mqtt.test_resolve_reason import UNRESOLVABLE, resolver_says


async def test_the_adapter_says_the_host_does_not_resolve(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.mqtt.adapter")
    config = MqttAdapterConfig.model_validate(
        {
            "name": "testmqtt",
            "type": "mqtt",
            "host": UNRESOLVABLE,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "subscriptions": [
                {
                    "topic": "test/+",
                    "entity_id": "urn:ngsi-ld:Thing:{topic[1]}",
                    "entity_type": "Thing",
                    "attributes": [{"path": "n", "name": "n"}],
                }
            ],
        }
    )
    async with running(config, Sink(), wait_connected=False):
        async with asyncio.timeout(10):
            while not caplog.records:
                await asyncio.sleep(0.01)
    assert caplog.records[0].getMessage() == (
        f"cannot reach the broker at mqtt://{UNRESOLVABLE}:1883, got cannot resolve host {UNRESOLVABLE}: "
        f"{resolver_says(UNRESOLVABLE)}; trying again every 0.5 s"
    )
