"""gateway.mqtt.packets: every packet a client sends round-trips through the decoders, byte-exact where the
standard fixes the bytes, and the reader takes what a broker sends at any split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.mqtt.packets import (
    CONNACK,
    DISCONNECT,
    PUBACK,
    SUBACK,
    Connect,
    MqttWireError,
    PacketReader,
    PubAck,
    Publish,
    Will,
    decode_connect,
    decode_subscribe,
    encode_connect,
    encode_disconnect,
    encode_puback,
    encode_pubacks,
    encode_publish,
    encode_subscribe,
    publish_properties,
    reason_text,
    user_properties,
)

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
topics = texts.filter(lambda t: t and not set(t) & {"+", "#"})
users = st.lists(st.tuples(texts, texts), max_size=4).map(tuple)


def read_all(data: bytes, *, v5: bool, split: int) -> list[object]:
    reader = PacketReader(v5=v5, keep_properties=True)
    out: list[object] = []
    for chunk in (data[:split], data[split:]):
        reader.feed(chunk)
        while (packet := reader.next()) is not None:
            out.append(packet)
    return out


@given(
    client_id=texts,
    keepalive=st.integers(0, 65_535),
    v5=st.booleans(),
    clean=st.booleans(),
    expiry=st.integers(0, 2**32 - 1),
    receive_max=st.integers(0, 65_535),
    username=st.none() | texts,
    password=st.none() | texts,
    will=st.none()
    | st.builds(Will, topic=topics, payload=st.binary(max_size=300), qos=st.sampled_from([0, 1]), retain=st.booleans()),
)
def test_connect_round_trips(
    client_id: str,
    keepalive: int,
    v5: bool,
    clean: bool,
    expiry: int,
    receive_max: int,
    username: str | None,
    password: str | None,
    will: Will | None,
) -> None:
    packet = encode_connect(
        client_id=client_id,
        keepalive_s=keepalive,
        v5=v5,
        session_expiry_s=expiry,
        receive_maximum=receive_max,
        username=username,
        password=password,
        clean_start=clean,
        will=will,
    )
    assert decode_connect(packet) == Connect(
        client_id=client_id,
        keepalive_s=keepalive,
        v5=v5,
        clean_start=clean,
        session_expiry_s=expiry if v5 else 0,
        receive_maximum=receive_max if v5 else 0,
        username=username,
        password=password,
        will=will,
    )


def test_connect_bytes_follow_the_standard() -> None:
    # MQTT 5 §3.1: protocol name, level 5, flags (user, password, will retain, will QoS 1, will, clean start),
    # keepalive, properties (session expiry 3600), client id, will properties, topic, payload, user, password
    packet = encode_connect(
        client_id="gw",
        keepalive_s=30,
        v5=True,
        session_expiry_s=3600,
        username="u",
        password="p",
        clean_start=True,
        will=Will(topic="s", payload=b"off"),
    )
    assert packet == (
        b"\x10\x23\x00\x04MQTT\x05\xee\x00\x1e\x05\x11\x00\x00\x0e\x10\x00\x02gw"
        b"\x00\x00\x01s\x00\x03off\x00\x01u\x00\x01p"
    )


@given(
    topic=topics,
    payload=st.binary(max_size=400),
    qos=st.sampled_from([0, 1]),
    pid=st.integers(1, 65_535),
    retain=st.booleans(),
    v5=st.booleans(),
    user=users,
    content_type=st.none() | texts,
    split=st.integers(0, 500),
)
def test_publish_round_trips_with_user_properties(
    topic: str,
    payload: bytes,
    qos: int,
    pid: int,
    retain: bool,
    v5: bool,
    user: tuple[tuple[str, str], ...],
    content_type: str | None,
    split: int,
) -> None:
    props = publish_properties(content_type=content_type, user=user)
    packet = encode_publish(topic, payload, qos=qos, packet_id=pid, retain=retain, v5=v5, properties=props)
    [got] = read_all(packet, v5=v5, split=split)
    assert isinstance(got, Publish)
    assert (got.topic, got.payload, got.qos, got.packet_id, got.retain) == (
        topic.encode(),
        payload,
        qos,
        pid if qos else 0,
        retain,
    )
    assert user_properties(got.properties) == (user if v5 else ())


@given(
    pid=st.integers(1, 65_535), reason=st.sampled_from([0, 0x10, 0x80, 0x87, 0x90, 0x97, 0x99]), split=st.integers(0, 6)
)
def test_puback_reason_codes_both_ways(pid: int, reason: int, split: int) -> None:
    assert read_all(encode_puback(pid, reason), v5=True, split=split) == [PubAck(packet_id=pid, reason=reason)]


@given(pids=st.lists(st.integers(1, 65_535), max_size=50), split=st.integers(0, 200))
def test_pubacks_of_a_group_are_the_single_pubacks_in_order(pids: list[int], split: int) -> None:
    packed = encode_pubacks(pids)
    assert packed == b"".join(encode_puback(pid) for pid in pids)
    assert read_all(packed, v5=True, split=split) == [PubAck(packet_id=pid, reason=0) for pid in pids]


@given(pid=st.integers(1, 65_535), filters=st.lists(texts.filter(bool), min_size=1, max_size=4), v5=st.booleans())
def test_subscribe_round_trips(pid: int, filters: list[str], v5: bool) -> None:
    assert decode_subscribe(encode_subscribe(pid, filters, v5=v5), v5=v5) == (
        pid,
        tuple((f, 0x11 if v5 else 0x01) for f in filters),
    )


def test_disconnect_and_errors() -> None:
    assert encode_disconnect() == b"\xe0\x00"
    assert encode_disconnect(0x04) == b"\xe0\x01\x04"  # "disconnect with will message"
    with pytest.raises(ValueError, match=r"^mqtt publish: qos must be 0 or 1, got 2$"):
        encode_publish("t", b"", qos=2, v5=True)
    with pytest.raises(MqttWireError) as info:
        user_properties(b"\x26\x00\x05ab")
    assert str(info.value) == "mqtt: malformed PUBLISH properties, got b'&\\x00\\x05ab'"


@pytest.mark.parametrize("packet_type", [CONNACK, PUBACK, SUBACK, DISCONNECT])
def test_reason_names_are_pahos(packet_type: int) -> None:
    # paho, an independent implementation, as the oracle for every code in every packet that carries one
    ptype = {
        CONNACK: PacketTypes.CONNACK,
        PUBACK: PacketTypes.PUBACK,
        SUBACK: PacketTypes.SUBACK,
        DISCONNECT: PacketTypes.DISCONNECT,
    }[packet_type]
    for code in range(256):
        try:
            expected = str(ReasonCode(ptype, identifier=code))
        except (KeyError, ValueError):
            expected = f"reason code 0x{code:02X}"
        assert reason_text(packet_type, code) == expected, hex(code)
