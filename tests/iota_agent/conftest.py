"""Helpers for the tests against the real IoT Agents: an uplink on the test's broker, waiting on the Orion double."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble

APIKEY = "edgegw-test-key"
SEQ = "edgegwSeq"


@pytest.fixture
def context(tmp_path: Path) -> AdapterContext:
    return AdapterContext(gateway_id="gw-kumamoto-01", data_dir=str(tmp_path))


def make_uplink(broker: MosquittoBroker, context: AdapterContext, **overrides: Any) -> MqttUplink:
    conf = {
        "name": "iot-agent",
        "type": "mqtt",
        "host": broker.host,
        "port": broker.port,
        "apikey": APIKEY,
        **overrides,
    }
    return MqttUplink(MqttUplinkConfig.model_validate(conf), context)


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def seqs_written(orion: OrionDouble, entity_id: str | None = None) -> list[int]:
    """The sequence attribute of every entity the agent wrote to the double, in arrival order."""
    return [e[SEQ]["value"] for e in orion.written if SEQ in e and (entity_id is None or e["id"] == entity_id)]


def orion_statuses(orion: OrionDouble) -> list[int]:
    return [r.status for r in orion.requests]
