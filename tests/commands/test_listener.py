"""Commands end to end against real parts: mosquitto, the listener, the router, the ModbusAdapter and a pymodbus relay board.

The test plays the IoT Agent: it publishes on /<apikey>/<device_id>/cmd what iotagent-json / iotagent-ul
publish and reads /<apikey>/<device_id>/cmdexe as they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.adapter_api import AdapterContext
from gateway.commands import CommandRouter
from gateway.errors import ConfigError
from gateway.profiles import load_profile
from gateway.records import Reading
from gateway.uplinks.mqtt import MqttUplinkConfig
from gateway.uplinks.mqtt.commands import MqttCommandListener
from tests.adapters.modbus.peers import ModbusPeer, image_from_values, start_tcp_peer
from tests.adapters.modbus.running import make_adapter, modbus_config, until
from tests.support.mosquitto import MosquittoBroker

RELAY = load_profile("waveshare/modbus-rtu-relay-d")
RELAY_ID = "urn:ngsi-ld:Device:gw1-relays"
CONTEXT = AdapterContext(gateway_id="gw1", data_dir="/nonexistent")


def uplink_config(broker: MosquittoBroker, **extra: Any) -> MqttUplinkConfig:
    doc: dict[str, Any] = {
        "name": "pref-mqtt",
        "type": "mqtt",
        "host": broker.host,
        "port": broker.port,
        "apikey": "K3Y",
        "retry_initial_s": 0.05,
        "retry_max_s": 0.3,
        "ack_timeout_s": 5,
    }
    doc.update(extra)
    return MqttUplinkConfig.model_validate(doc)


@dataclass
class Rig:
    peer: ModbusPeer
    router: CommandRouter
    readings: list[Reading]

    async def coils(self) -> list[bool]:
        return list(await self.peer.read(4, 1, 0, 8))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def relay_board(tmp_path: Path) -> AsyncIterator[Rig]:
    """A relay board on Modbus TCP, its adapter running, and a router that learns from what it emits."""
    peer, port = await start_tcp_peer(
        [
            image_from_values(
                4, RELAY, {f"relay_{i}": False for i in range(1, 9)} | {f"input_{i}": False for i in range(1, 9)}
            )
        ]
    )
    devices = [
        {
            "name": "relays",
            "bus": "gw",
            "profile": "waveshare/modbus-rtu-relay-d",
            "unit_id": 4,
            "poll_interval": 0.2,
            "timeout": 0.3,
        }
    ]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}], devices), tmp_path)
    router = CommandRouter(timeout_s=3.0)
    router.add_adapter("cabinet", adapter)
    readings: list[Reading] = []

    async def emit(reading: Reading) -> None:  # what Gateway._emit will do: note, then store
        router.note(reading)
        readings.append(reading)

    task = asyncio.create_task(adapter.run(emit))
    try:
        await until(lambda: router.owner(RELAY_ID) == "cabinet")
        yield Rig(peer=peer, router=router, readings=readings)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await peer.stop()


class Agent:
    """The IoT Agent's side of the broker: publishes commands, collects cmdexe results."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.results: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Agent:
        self._client = aiomqtt.Client(self.broker.host, self.broker.port, identifier="iotagent-test")
        await self._client.__aenter__()
        for topic in ("/K3Y/+/cmdexe", "/json/K3Y/+/cmdexe", "/ul/K3Y/+/cmdexe"):
            await self._client.subscribe(topic, qos=1)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._client is not None
        with contextlib.suppress(aiomqtt.MqttError):
            async for m in self._client.messages:
                await self.results.put((m.topic.value, bytes(m.payload)))

    async def __aexit__(self, *exc: object) -> None:
        assert self._client is not None and self._reader is not None
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    async def send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1, retain=retain)

    async def result(self, timeout: float = 5.0) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.results.get(), timeout)


@contextlib.asynccontextmanager
async def listening(
    config: MqttUplinkConfig, router: CommandRouter, *, template_index: bool = False
) -> AsyncIterator[MqttCommandListener]:
    entity_of = router.device_index(config.device_id).entity_of if template_index else None
    listener = MqttCommandListener(config, CONTEXT, router.dispatch, entity_of=entity_of)
    listener.start()
    try:
        await listener.wait_connected(5.0)
        yield listener
    finally:
        await listener.stop()


async def test_a_json_command_writes_the_coil_and_the_agent_gets_its_result(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    async with (
        relay_board(tmp_path) as rig,
        listening(uplink_config(mosquitto), rig.router) as listener,
        Agent(mosquitto) as agent,
    ):
        assert listener.client_id == "edgegw-gw1-pref-mqtt-cmd"
        await agent.send(f"/K3Y/{RELAY_ID}/cmd", b'{"relay_3": true}')
        assert await agent.result() == (
            f"/K3Y/{RELAY_ID}/cmdexe",
            b'{"relay_3":"OK: relays: command relay_3 written %28modbus unit 4 FC05 @2 x1%29"}',
        )
        assert await rig.coils() == [False, False, True, False, False, False, False, False]
        # the poll after the write shows the new state in the readings too
        await until(
            lambda: any(
                r.attributes.get("relay3") is not None and r.attributes["relay3"].value is True for r in rig.readings
            )
        )

        # the profile refuses the value: an error result, nothing written
        await agent.send(f"/json/K3Y/{RELAY_ID}/cmd", b'{"relay_2": 5}')
        assert await agent.result() == (
            f"/K3Y/{RELAY_ID}/cmdexe",
            b'{"relay_2":"ERROR: relays: command relay_2: needs true or false, got 5"}',
        )
        assert await rig.coils() == [False, False, True, False, False, False, False, False]

        # a device id no adapter owns
        await agent.send("/K3Y/urn:ngsi-ld:Device:gw1-ghost/cmd", b'{"relay_1": true}')
        assert await agent.result() == (
            "/K3Y/urn:ngsi-ld:Device:gw1-ghost/cmdexe",
            b'{"relay_1":"ERROR: command relay_1: no adapter owns entity %22urn:ngsi-ld:Device:gw1-ghost%22, got no '
            b"reading of it since the gateway started%3B check the entity id, or wait for the device%27s first "
            b'reading"}',
        )
        assert (listener.counters.ok, listener.counters.failed, listener.counters.results_published) == (1, 2, 3)


async def test_ultralight_with_a_device_id_template(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    config = uplink_config(
        mosquitto, format="iota-ul", topic_style="protocol", device_id="{adapter}-{device}", protocol="3.1.1"
    )
    async with (
        relay_board(tmp_path) as rig,
        listening(config, rig.router, template_index=True) as listener,
        Agent(mosquitto) as agent,
    ):
        await agent.send("/K3Y/cabinet-relays/cmd", b"cabinet-relays@relay_5|on")
        assert await agent.result() == (
            "/ul/K3Y/cabinet-relays/cmdexe",
            b"cabinet-relays@relay_5|OK: relays: command relay_5 written %28modbus unit 4 FC05 @4 x1%29",
        )
        assert await rig.coils() == [False, False, False, False, True, False, False, False]
        await agent.send("/ul/K3Y/cabinet-nothing/cmd", b"cabinet-nothing@relay_5|off")
        assert await agent.result() == (
            "/ul/K3Y/cabinet-nothing/cmdexe",
            b"cabinet-nothing@relay_5|ERROR: command relay_5: no entity known for device id %22cabinet-nothing%22, "
            b"got no reading of it since the gateway started%3B check the device_id template %27{adapter}-{device}%27",
        )
        assert listener.counters.unknown_device == 1
        assert await rig.coils() == [False, False, False, False, True, False, False, False]


async def test_malformed_payloads_are_counted_and_the_listener_keeps_going(
    mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.uplinks.mqtt.commands")
    async with (
        relay_board(tmp_path) as rig,
        listening(uplink_config(mosquitto), rig.router) as listener,
        Agent(mosquitto) as agent,
    ):
        await agent.send(f"/K3Y/{RELAY_ID}/cmd", b"relay_1=on 1234-5678")
        await until(lambda: listener.counters.malformed == 1)
        # a name can be read: the agent gets an error for it rather than waiting for the expiry
        await agent.send(f"/K3Y/{RELAY_ID}/cmd", b'{"": 1, "relay_4": true}')
        assert await agent.result() == (
            f"/K3Y/{RELAY_ID}/cmdexe",
            b'{"relay_4":"ERROR: command payload: command names cannot be empty, got %22%22"}',
        )
        await agent.send(f"/K3Y/{RELAY_ID}/cmd", b'{"relay_8": "on"}')
        assert (await agent.result())[1] == (
            b'{"relay_8":"OK: relays: command relay_8 written %28modbus unit 4 FC05 @7 x1%29"}'
        )
        assert await rig.coils() == [False, False, False, False, False, False, False, True]
        assert listener.counters.malformed == 2 and agent.results.empty()
    assert (
        f"malformed command on /K3Y/{RELAY_ID}/cmd: command payload: must be a JSON object, got 20 bytes that "
        "are not JSON"
    ) in caplog.messages
    assert not any("1234" in m for m in caplog.messages)  # a payload is never echoed into the log


async def test_broker_restart_the_listener_reconnects_and_ignores_retained_commands(
    mosquitto_private: MosquittoBroker, tmp_path: Path
) -> None:
    broker = mosquitto_private
    async with relay_board(tmp_path) as rig, listening(uplink_config(broker), rig.router) as listener:
        async with Agent(broker) as agent:
            # a retained command runs once, live ...
            await agent.send(f"/K3Y/{RELAY_ID}/cmd", b'{"relay_6": true}', retain=True)
            assert (await agent.result())[1].startswith(b'{"relay_6":"OK: ')
            await agent.send(f"/K3Y/{RELAY_ID}/cmd", b'{"relay_6": false}')
            assert (await agent.result())[1].startswith(b'{"relay_6":"OK: ')
        broker.stop()
        await until(lambda: not listener.connected)
        broker.start()
        await listener.wait_connected(10.0)
        # ... and not again when the broker hands it out on the new subscription
        await until(lambda: listener.counters.stale == 1)
        assert await rig.coils() == [False] * 8
        async with Agent(broker) as agent:
            await agent.send(f"/K3Y/{RELAY_ID}/cmd", b'{"relay_1": true}')
            assert (await agent.result())[1] == (
                b'{"relay_1":"OK: relays: command relay_1 written %28modbus unit 4 FC05 @0 x1%29"}'
            )
        assert await rig.coils() == [True] + [False] * 7
        assert listener.counters.reconnects == 1


def test_configurations_that_cannot_take_commands_are_refused(mosquitto: MosquittoBroker) -> None:
    router = CommandRouter()
    with pytest.raises(ConfigError) as exc:
        MqttCommandListener(uplink_config(mosquitto, format="ngsi-v2"), CONTEXT, router.dispatch)
    assert str(exc.value) == "uplinks.pref-mqtt.format: commands need format iota-json or iota-ul, got ngsi-v2"
    with pytest.raises(ConfigError) as exc:
        MqttCommandListener(uplink_config(mosquitto, device_id="{device}"), CONTEXT, router.dispatch)
    assert str(exc.value) == (
        "uplinks.pref-mqtt.device_id: commands need a map from device id to entity id for template '{device}', got "
        "none; the gateway passes the command router's device index"
    )
