"""Test peers for the MQTT adapter: a QoS1 publisher, a controllable emit, and a running adapter task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from adapters.mqtt.adapter import MqttAdapter
from adapters.mqtt.config import MqttAdapterConfig
from gateway.adapter_api import AdapterContext
from gateway.records import Emit, Reading
from tests.support.mosquitto import MosquittoBroker


def publish_sync(broker: MosquittoBroker, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and return once the broker has acknowledged every message."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published(), "the broker did not acknowledge a test publish"
    finally:
        client.disconnect()
        client.loop_stop()


async def publish(broker: MosquittoBroker, messages: list[tuple[str, bytes]]) -> None:
    await asyncio.to_thread(publish_sync, broker, messages)


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Sink:
    """An emit whose commits complete at once (`auto`) or only when the test says so."""

    auto: bool = True
    readings: list[Reading] = field(default_factory=list)
    pending: list[asyncio.Future[None]] = field(default_factory=list)

    def emit(self, reading: Reading) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.readings.append(reading)
        if self.auto:
            fut.set_result(None)
        else:
            self.pending.append(fut)
        return fut

    def commit(self, index: int) -> None:
        self.pending[index].set_result(None)

    def values(self, attribute: str = "n") -> list[Any]:
        return [r.attributes[attribute].value for r in self.readings]


def counter_config(broker: MosquittoBroker, client_id: str, **overrides: Any) -> MqttAdapterConfig:
    """Messages on test/<device> carrying {"n": <int>} → one Number attribute `n`."""
    section: dict[str, Any] = {
        "name": "testmqtt",
        "type": "mqtt",
        "host": broker.host,
        "port": broker.port,
        "client_id": client_id,
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
    section.update(overrides)
    return MqttAdapterConfig.model_validate(section)


@asynccontextmanager
async def running(
    config: MqttAdapterConfig,
    sink: Sink,
    data_dir: str = "/nonexistent",
    wait_connected: bool = True,
    emit: Emit | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[MqttAdapter]:
    """The adapter running with `emit` (default: the sink's) until the block ends."""
    adapter = MqttAdapter(config, AdapterContext(gateway_id="gw-test", data_dir=data_dir), clock=clock)
    task = asyncio.create_task(adapter.run(emit or sink.emit))
    try:
        if wait_connected:
            await wait_for(lambda: adapter.connected or task.done(), what="the adapter to connect")
            if task.done():
                task.result()
        yield adapter
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    assert not adapter.connected


def numbered(n: int, start: int = 0, device: str = "dev1") -> list[tuple[str, bytes]]:
    return [(f"test/{device}", f'{{"n": {i}}}'.encode()) for i in range(start, start + n)]
