"""The broker's Server Keep Alive (CONNACK property 0x13): the client pings at the broker's interval, not its own.

MQTT-3.2.2-21: a client MUST use it. mosquitto's `max_keepalive` announces it to a v5 client that asked
for more, and drops a connection silent for 1.5 x that value: a gateway pinging every `keepalive_s` = 60 s
was dropped after 15 s idle by a broker with `max_keepalive 10`, over and over, its will published each time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt.client import ClientSettings, MqttClient
from gateway.mqtt.packets import PINGREQ_PACKET
from tests.mqtt.test_packets import connack, connack_properties, read_all
from tests.support.mosquitto import MosquittoBroker

pytestmark = pytest.mark.both_loops

KEEP_USER = "user root\n" if os.geteuid() == 0 else ""
PINGRESP = b"\xd0\x00"


@given(values=connack_properties, split=st.integers(0, 300))
def test_server_keep_alive_is_read_among_any_connack_properties(values: dict[str, Any], split: int) -> None:
    # paho packs the properties: an independent encoder, every property type, in any mix
    props = Properties(PacketTypes.CONNACK)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    (packet,) = read_all(connack(props.pack()), v5=True, split=split)  # type: ignore[no-untyped-call]
    assert packet.server_keep_alive == values.get("ServerKeepAlive")  # type: ignore[attr-defined]


async def _broker_keeping_alive(keep_alive: int, pings: list[float], *, answer: bool, enforce: bool) -> asyncio.Server:
    """Answers CONNECT with a CONNACK setting Server Keep Alive `keep_alive`, notes when each PINGREQ came,
    answers it if `answer`, and if `enforce` drops a client silent for 1.5 x `keep_alive` as mosquitto does."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(2)  # a short CONNECT: its remaining length is one byte
        await reader.readexactly(head[1])
        writer.write(connack(b"\x03\x13" + keep_alive.to_bytes(2, "big")))
        try:
            while True:
                async with asyncio.timeout(1.5 * keep_alive if enforce else None):
                    packet = await reader.readexactly(2)
                assert packet == PINGREQ_PACKET, packet
                pings.append(time.monotonic())
                if answer:
                    writer.write(PINGRESP)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.transport.abort()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_an_idle_client_stays_connected_to_a_broker_with_a_shorter_keep_alive() -> None:
    pings: list[float] = []
    server = await _broker_keeping_alive(1, pings, answer=True, enforce=True)
    client = MqttClient(
        ClientSettings(host="127.0.0.1", port=server.sockets[0].getsockname()[1], client_id="t-ska", keepalive_s=60)
    )
    connack = await client.connect()
    try:
        await asyncio.sleep(2.6)  # the broker drops a client silent for 1.5 s
        assert not client.lost.done(), client.lost.result()
        assert len(pings) >= 2
        assert all(0.5 < later - earlier < 1.4 for earlier, later in itertools.pairwise(pings)), pings
        assert (connack.server_keep_alive, client.keepalive_s) == (1, 1)
    finally:
        await client.disconnect()
        server.close()


async def test_a_broker_silent_for_1_5_times_its_keep_alive_is_given_up() -> None:
    pings: list[float] = []
    server = await _broker_keeping_alive(1, pings, answer=False, enforce=False)
    client = MqttClient(
        ClientSettings(
            host="127.0.0.1", port=server.sockets[0].getsockname()[1], client_id="t-ska-mute", keepalive_s=60
        )
    )
    await client.connect()
    try:
        reason = await asyncio.wait_for(asyncio.shield(client.lost), 3)
        assert reason == "no answer from the broker for 1.5 s (keepalive)"
        assert pings, "no PINGREQ before giving up"
    finally:
        await client.disconnect(timeout=0.1)  # a failing run leaves no connection for the loop's close
        server.close()


@pytest.fixture
def short_keepalive_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    # 10 s: the lowest max_keepalive mosquitto 2.0 takes; its CONNACK then says Server Keep Alive 10
    broker = MosquittoBroker(tmp_path / "b", extra_conf=f"max_keepalive 10\n{KEEP_USER}")
    broker.start()
    yield broker
    broker.stop()


async def test_mosquittos_max_keepalive_becomes_the_interval_and_is_logged_once(
    short_keepalive_broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    broker = short_keepalive_broker
    caplog.set_level(logging.INFO, logger="gateway.mqtt.client")
    # the client logs once per broker and client id in a process: an id of its own, whatever ran before
    client_id = f"t-ska-{os.urandom(4).hex()}"
    for _ in range(2):  # a reconnect to the same broker says nothing new
        async with MqttClient(
            ClientSettings(host=broker.host, port=broker.port, client_id=client_id, keepalive_s=60)
        ) as client:
            assert client.keepalive_s == 10
    # MQTT 3.1.1 has no Server Keep Alive: mosquitto takes the client's own
    async with MqttClient(
        ClientSettings(host=broker.host, port=broker.port, client_id="t-ska-311", v5=False, keepalive_s=60)
    ) as client:
        assert client.keepalive_s == 60
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.mqtt.client"] == [
        f"broker {broker.host}:{broker.port} set the keep-alive of client {client_id} to 10 s instead of the 60 s "
        "asked for (Server Keep Alive in its CONNACK, mosquitto's max_keepalive); pinging at its interval"
    ]
