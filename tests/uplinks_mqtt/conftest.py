"""Fixtures for the MQTT uplink tests: readings, a gateway context, and a real subscriber on the broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from tests.support.mosquitto import MosquittoBroker

T0 = datetime(2024, 6, 1, 3, 0, 0, tzinfo=UTC)


def reading(
    entity: str = "urn:ngsi-ld:WaterObserved:gauge1",
    *,
    at: float = 0.0,
    seq: int | None = 1,
    entity_type: str = "WaterObserved",
    device: str = "",
    **values: Any,
) -> Reading:
    """A reading observed `at` seconds after T0 with the given attribute values (default waterLevel=1.25)."""
    attrs = {k: Attribute(value=v) for k, v in (values or {"waterLevel": 1.25}).items()}
    return Reading(
        entity_id=entity,
        entity_type=entity_type,
        attributes=attrs,
        observed_at=T0 + timedelta(seconds=at),
        source=Source(adapter="sim", device=device),
        seq=seq,
    )


@pytest.fixture
def context(tmp_path: Path) -> AdapterContext:
    return AdapterContext(gateway_id="gw-kumamoto-01", data_dir=str(tmp_path))


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    user: dict[str, str]


@dataclass
class Subscriber:
    """Collects what a real MQTT 5 client subscribed to `#` receives."""

    client: aiomqtt.Client
    messages: list[Received] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for m in self.client.messages:
            props = m.properties
            user = dict(getattr(props, "UserProperty", []) or []) if props else {}
            self.messages.append(Received(str(m.topic), bytes(m.payload), bool(m.retain), user))

    async def wait(self, count: int, timeout: float = 5.0, topic_prefix: str = "") -> list[Received]:
        async with asyncio.timeout(timeout):
            while True:
                got = [m for m in self.messages if m.topic.startswith(topic_prefix)]
                if len(got) >= count:
                    return got
                await asyncio.sleep(0.01)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]


@asynccontextmanager
async def subscribe(broker: MosquittoBroker, topic: str = "#", **kwargs: Any) -> AsyncIterator[Subscriber]:
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5, **kwargs) as client:
        await client.subscribe(topic, qos=1)
        sub = Subscriber(client)
        sub._task = asyncio.create_task(sub._run())
        try:
            yield sub
        finally:
            sub._task.cancel()
            with suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await sub._task
