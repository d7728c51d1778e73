"""A broker that speaks only MQTT 3.1.1 answers our v5 CONNECT with the 3.1.1 CONNACK "unacceptable protocol
version" (`20 02 00 01`, MQTT-3.1.2-2): a refusal naming the fix, not "reason code 0x01" and "unreachable"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.adapter_api import AdapterContext
from gateway.mqtt.client import ClientSettings, ConnectRefused, MqttClient
from gateway.mqtt.packets import ConnAck
from gateway.uplinks.api import Fault, Status
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from tests.mqtt.test_packets import read_all
from tests.uplinks_mqtt.conftest import reading

pytestmark = pytest.mark.both_loops

V311_REFUSAL = b"\x20\x02\x00\x01"  # no session present, return code 1: unacceptable protocol version


def test_a_3_1_1_protocol_refusal_read_in_v5_mode_is_unsupported_protocol_version() -> None:
    assert read_all(V311_REFUSAL, v5=True, split=3) == [ConnAck(session_present=False, reason=0x84)]
    # a v5 CONNACK has a property length after the reason code: its codes are read as they are
    assert read_all(b"\x20\x03\x00\x84\x00", v5=True, split=2) == [ConnAck(session_present=False, reason=0x84)]
    assert read_all(b"\x20\x03\x00\x87\x00", v5=True, split=2) == [ConnAck(session_present=False, reason=0x87)]


@pytest.fixture
async def v311_only_broker() -> AsyncIterator[tuple[int, list[int]]]:
    """A port where each CONNECT is answered as a 3.1.1-only broker answers a v5 one; the protocol levels seen."""
    levels: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        length, shift = 0, 0
        while True:  # the remaining length: the uplink's CONNECT, will included, is over 127 bytes
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        body = await reader.readexactly(length)
        levels.append(body[6])  # after the protocol name "MQTT" and its length
        writer.write(V311_REFUSAL)
        await writer.drain()
        writer.close()  # the broker closes the connection after this CONNACK

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], levels
    server.close()


async def test_the_client_says_the_broker_does_not_speak_mqtt_5_and_what_to_set(
    v311_only_broker: tuple[int, list[int]],
) -> None:
    port, levels = v311_only_broker
    with pytest.raises(ConnectRefused) as refused:
        await MqttClient(ClientSettings(host="127.0.0.1", port=port, client_id="t-v311", v5=True)).connect()
    assert levels == [5]
    assert (refused.value.code, refused.value.reason) == (
        0x84,
        'the broker refused the connection, got Unsupported protocol version (0x84); set protocol = "3.1.1" '
        "(the broker does not speak MQTT 5)",
    )


async def test_the_uplink_counts_it_a_refusal_of_its_settings_not_an_unreachable_broker(
    v311_only_broker: tuple[int, list[int]], tmp_path: Path
) -> None:
    port, _ = v311_only_broker
    context = AdapterContext(gateway_id="gw-kumamoto-01", data_dir=str(tmp_path))
    config = MqttUplinkConfig.model_validate(
        {"name": "pref-mqtt", "type": "mqtt", "host": "127.0.0.1", "port": port, "apikey": "K", "connect_timeout_s": 2}
    )
    up = MqttUplink(config, context)
    await up.start()
    try:
        (outcome,) = await up.deliver([reading(seq=1)])
    finally:
        await up.close()
    assert outcome.status is Status.RETRY
    assert outcome.reason == (
        f"broker 127.0.0.1:{port} refused the connection: [code:132] Unsupported protocol version; "
        'set protocol = "3.1.1" (the broker does not speak MQTT 5)'
    )
    assert outcome.fault is Fault.CONFIGURATION
