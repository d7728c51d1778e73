"""Retained messages seen by a subscriber of gateway.mqtt.client: which arrive flagged `retain`, against a
real mosquitto, and the MQTT 5 Retain Handling subscription option (packets.encode_subscribe)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mqtt import packets
from gateway.mqtt.client import ClientSettings, MqttClient
from gateway.mqtt.packets import Publish, decode_subscribe, encode_subscribe
from tests.support.mosquitto import MosquittoBroker

PROTOCOLS = pytest.mark.parametrize("v5", [True, False], ids=["v5", "v311"])

_filter = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20)


@given(st.lists(st.tuples(_filter, st.integers(0, 2)), min_size=1, max_size=8), st.integers(1, 65535))
def test_retain_handling_is_bits_4_and_5_of_each_v5_option_byte(subs: list[tuple[str, int]], packet_id: int) -> None:
    filters = [f for f, _ in subs]
    packet = encode_subscribe(packet_id, filters, v5=True, retain_handling=[rh for _, rh in subs])
    assert decode_subscribe(packet, v5=True) == (packet_id, tuple((f, 0x01 | rh << 4) for f, rh in subs))
    # 3.1.1 has no subscription options: QoS 1 alone, whatever was asked
    packet = encode_subscribe(packet_id, filters, v5=False, retain_handling=[rh for _, rh in subs])
    assert decode_subscribe(packet, v5=False) == (packet_id, tuple((f, 0x01) for f in filters))


def test_retain_handling_defaults_to_if_new_and_is_checked() -> None:
    assert (packets.RETAIN_AT_SUBSCRIBE, packets.RETAIN_IF_NEW, packets.RETAIN_NEVER) == (0, 1, 2)
    assert encode_subscribe(1, ["a/+"], v5=True) == encode_subscribe(1, ["a/+"], v5=True, retain_handling=[1])
    with pytest.raises(ValueError, match=r"one of 0, 1, 2 per filter \(2\), got \[2\]"):
        encode_subscribe(1, ["a/+", "b"], v5=True, retain_handling=[2])
    with pytest.raises(ValueError, match=r"got \[3\]"):
        encode_subscribe(1, ["a"], v5=True, retain_handling=[3])


def settings(broker: MosquittoBroker, client_id: str, *, v5: bool, clean: bool = True) -> ClientSettings:
    return ClientSettings(
        host=broker.host,
        port=broker.port,
        client_id=client_id,
        v5=v5,
        clean_start=clean,
        session_expiry_s=600,
        connect_timeout_s=3.0,
    )


async def until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def collector(got: list[Publish], client: list[MqttClient]) -> Callable[[Publish], None]:
    def on_publish(msg: Publish) -> None:
        got.append(msg)
        if msg.qos:
            client[0].ack([msg.packet_id])

    return on_publish


async def retain(broker: MosquittoBroker, topic: str, payload: bytes) -> None:
    async with MqttClient(settings(broker, "t-retainer", v5=True)) as pub:
        assert await (await pub.publish(topic, payload, retain=True)) in (0, 0x10)


@PROTOCOLS
async def test_a_retained_publish_to_a_subscriber_arrives_without_the_retain_flag(
    mosquitto: MosquittoBroker, v5: bool
) -> None:
    # What makes skipping retained messages safe for live data: the broker sets `retain` only on what
    # it sends because of a SUBSCRIBE, never on what it forwards to an existing subscription.
    topic = f"t/live-retain/{v5}"
    got: list[Publish] = []
    holder: list[MqttClient] = []
    async with MqttClient(settings(mosquitto, f"t-live-{v5}", v5=v5), on_publish=collector(got, holder)) as sub:
        holder.append(sub)
        assert await sub.subscribe([topic]) == (1,)
        await retain(mosquitto, topic, b"live")
        await until(lambda: len(got) == 1, "the live message")
        # a new subscription now gets the stored copy, flagged
        assert await sub.subscribe([topic + "/#"]) == (1,)
        await until(lambda: len(got) == 2, "the retained copy")
    assert [(m.payload, m.retain) for m in got] == [(b"live", False), (b"live", True)]
    await retain(mosquitto, topic, b"")  # clears it for other tests


@PROTOCOLS
async def test_a_retained_publish_queued_for_a_session_arrives_without_the_flag(
    mosquitto_private: MosquittoBroker, v5: bool
) -> None:
    # Published with retain while the persistent session was away: it is queued like any message and
    # comes unflagged; 3.1.1 renewing its subscription then also gets the stored copy, flagged.
    broker, topic, cid = mosquitto_private, "t/queued-retain", f"t-queued-{v5}"
    async with MqttClient(settings(broker, cid, v5=v5, clean=False), on_publish=lambda _: None) as away:
        assert await away.subscribe([topic]) == (1,)
    await until(lambda: broker.closing_clients() == 0, "the broker to close the old connection")
    await retain(broker, topic, b"while away")
    got: list[Publish] = []
    holder: list[MqttClient] = []
    holder.append(MqttClient(settings(broker, cid, v5=v5, clean=False), on_publish=collector(got, holder)))
    async with holder[0] as back:  # the queued message comes right behind CONNACK: holder is set before
        await until(lambda: len(got) == 1, "the queued message")
        assert await back.subscribe([topic]) == (1,)
        await asyncio.sleep(0.3)
    expected = [(b"while away", False)] + ([] if v5 else [(b"while away", True)])  # v5: retain handling 1
    assert [(m.payload, m.retain) for m in got] == expected


async def test_retain_handling_never_keeps_the_stored_message_back(mosquitto: MosquittoBroker) -> None:
    topic = "t/rh-never"
    await retain(mosquitto, topic, b"old")
    got: list[Publish] = []
    holder: list[MqttClient] = []
    async with MqttClient(settings(mosquitto, "t-rh", v5=True), on_publish=collector(got, holder)) as sub:
        holder.append(sub)
        assert await sub.subscribe([topic], retain_handling=[packets.RETAIN_NEVER]) == (1,)
        await asyncio.sleep(0.3)
        assert got == []
        assert await sub.subscribe([topic + "/#"], retain_handling=[packets.RETAIN_IF_NEW]) == (1,)
        await until(lambda: len(got) == 1, "the retained message of the new subscription")
    assert [(m.payload, m.retain) for m in got] == [(b"old", True)]
    await retain(mosquitto, topic, b"")
