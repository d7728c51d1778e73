"""The broker's Maximum Packet Size (CONNACK property 0x27): read from the CONNACK, and nothing larger is sent.

mosquitto's `max_packet_size` announces it; a client that sends a larger packet is disconnected with
0x95, and a QoS 1 message would come back after every reconnect (MQTT-3.2.2-15 forbids sending it).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt.client import ClientSettings, MqttClient
from gateway.mqtt.packets import MAX_PACKET_BYTES, MqttWireError, encode_publish
from tests.mqtt.test_packets import connack, connack_properties, read_all
from tests.support.mosquitto import MosquittoBroker

pytestmark = pytest.mark.both_loops

KEEP_USER = "user root\n" if os.geteuid() == 0 else ""
LIMIT = 2000


@given(values=connack_properties, split=st.integers(0, 300))
def test_connack_maximum_packet_size_is_read_among_any_properties(values: dict[str, Any], split: int) -> None:
    # paho packs the properties: an independent encoder, every property type, in any mix
    props = Properties(PacketTypes.CONNACK)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    (packet,) = read_all(connack(props.pack()), v5=True, split=split)  # type: ignore[no-untyped-call]
    assert packet.maximum_packet_size == values.get("MaximumPacketSize", MAX_PACKET_BYTES)  # type: ignore[attr-defined]


def test_connack_maximum_packet_size_zero_is_malformed() -> None:
    # MQTT 5 §3.2.2.3.6: "It is a Protocol Error ... for the value to be set to zero"
    with pytest.raises(MqttWireError) as info:
        read_all(connack(b"\x05\x27\x00\x00\x00\x00"), v5=True, split=0)
    assert str(info.value) == "mqtt: malformed CONNACK, got Maximum Packet Size 0"


@pytest.fixture
def small_packet_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path / "b", extra_conf=f"max_packet_size {LIMIT}\n{KEEP_USER}")
    broker.start()
    yield broker
    broker.stop()


def settings(broker: MosquittoBroker, client_id: str, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {"host": broker.host, "port": broker.port, "client_id": client_id, "clean_start": True}
    return ClientSettings(**(values | overrides))


async def test_nothing_over_the_brokers_maximum_packet_size_is_sent(small_packet_broker: MosquittoBroker) -> None:
    async with (
        MqttClient(settings(small_packet_broker, "t-max5")) as client,
        MqttClient(settings(small_packet_broker, "t-max311", v5=False)) as v311,
    ):
        assert (client.maximum_packet_size, v311.maximum_packet_size) == (LIMIT, MAX_PACKET_BYTES)  # 3.1.1 cannot say
        # a PUBLISH of exactly the limit goes, one byte more is refused before it is written
        # (one byte less than the empty packet leaves: the remaining length takes two bytes past 127)
        fits = b"x" * (LIMIT - len(encode_publish("t/max", b"", qos=1, packet_id=1, v5=True)) - 1)
        assert len(encode_publish("t/max", fits, qos=1, packet_id=1, v5=True)) == LIMIT
        refusal = (
            "mqtt: the broker takes packets of at most 2000 bytes (the Maximum Packet Size in its CONNACK), "
            "got a PUBLISH of 2001 bytes; not sent"
        )
        with pytest.raises(ValueError, match=f"^{re.escape(refusal)}$"):
            await client.publish("t/max", fits + b"x")
        with pytest.raises(ValueError, match=r"got a PUBLISH of 2001 bytes; not sent$"):
            await client.publish("t/max", fits + b"xxx", qos=0)  # no packet id at QoS 0
        with pytest.raises(ValueError, match=r"got a SUBSCRIBE of \d+ bytes; not sent$"):
            await client.subscribe(["t/" + "f" * LIMIT])
        assert client.in_flight == 0  # the refused publish holds no place in the window
        # the connection goes on: the broker was sent nothing it had to refuse
        assert await asyncio.wait_for(await client.publish("t/max", fits), 3) == 0x10
        await asyncio.sleep(0.2)
        assert not client.lost.done()
