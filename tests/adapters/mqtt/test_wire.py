"""The MQTT packet codec: exact bytes of what we send, and the broker's stream cut into packets at any split."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqtt.packets import (
    CONNACK,
    DISCONNECT,
    SUBACK,
    ConnAck,
    Disconnect,
    MqttWireError,
    PacketReader,
    PingResp,
    Publish,
    SubAck,
    encode_connect,
    encode_puback,
    encode_subscribe,
    reason_text,
)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = n >> 7, n & 0x7F
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(msg: Publish, *, v5: bool, properties: bytes = b"") -> bytes:
    """A PUBLISH as a broker writes it (MQTT 5 §3.3, 3.1.1 §3.3), built independently of the reader."""
    body = struct.pack("!H", len(msg.topic)) + msg.topic
    if msg.qos:
        body += struct.pack("!H", msg.packet_id)
    if v5:
        body += varint(len(properties)) + properties
    body += msg.payload
    return bytes((0x30 | msg.qos << 1,)) + varint(len(body)) + body


def read_all(reader: PacketReader) -> list[object]:
    out: list[object] = []
    while (packet := reader.next()) is not None:
        out.append(packet)
    return out


publishes = st.builds(
    lambda topic, payload, qos, pid: Publish(topic, payload, qos, pid if qos else 0),
    st.binary(min_size=1, max_size=40),
    st.binary(max_size=300),  # crosses the 127-byte boundary of the one-byte remaining length
    st.sampled_from([0, 1]),
    st.integers(1, 0xFFFF),
)


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(publishes, min_size=1, max_size=12), v5=st.booleans(), cuts=st.lists(st.integers(0, 5000)))
def test_any_split_of_the_stream_gives_the_same_packets(messages: list[Publish], v5: bool, cuts: list[int]) -> None:
    stream = b"".join(publish_packet(m, v5=v5, properties=b"\x01\x01" if v5 else b"") for m in messages)
    reader = PacketReader(v5=v5)
    got: list[object] = []
    start = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        reader.feed(stream[start:cut])
        got += read_all(reader)
        start = cut
    assert got == messages
    assert reader.buffered == 0


def test_v5_properties_are_skipped() -> None:
    # payload format indicator, message expiry, a user property
    props = b"\x01\x01" + b"\x02\x00\x00\x00\x3c" + b"\x26\x00\x01k\x00\x01v"
    reader = PacketReader(v5=True)
    reader.feed(publish_packet(Publish(b"a/b", b'{"n": 1}', 1, 7), v5=True, properties=props))
    assert read_all(reader) == [Publish(b"a/b", b'{"n": 1}', 1, 7)]


def test_control_packets_v5() -> None:
    reader = PacketReader(v5=True)
    reader.feed(b"\x20\x03\x01\x00\x00")  # CONNACK session present, success, no properties
    reader.feed(b"\x90\x05\x00\x01\x00\x01\x87")  # SUBACK id 1: QoS 1, Not authorized
    reader.feed(b"\xd0\x00")  # PINGRESP
    reader.feed(b"\xe0\x02\x8b\x00")  # DISCONNECT: server shutting down
    assert read_all(reader) == [
        ConnAck(session_present=True, reason=0),
        SubAck(packet_id=1, reasons=(1, 0x87)),
        PingResp(),
        Disconnect(reason=0x8B),
    ]


def test_connack_return_codes_of_3_1_1_read_as_v5_reasons() -> None:
    reader = PacketReader(v5=False)
    reader.feed(b"\x20\x02\x00\x05" + b"\x20\x02\x00\x04" + b"\x20\x02\x00\x00" + b"\x90\x04\x00\x01\x01\x80")
    assert read_all(reader) == [
        ConnAck(session_present=False, reason=0x87),
        ConnAck(session_present=False, reason=0x86),
        ConnAck(session_present=False, reason=0),
        SubAck(packet_id=1, reasons=(1, 0x80)),
    ]
    assert [reason_text(CONNACK, 0x87), reason_text(CONNACK, 0x86)] == ["Not authorized", "Bad user name or password"]
    assert reason_text(SUBACK, 0x80) == "Unspecified error"
    assert reason_text(DISCONNECT, 0x8B) == "Server shutting down"
    assert reason_text(CONNACK, 0x01) == "reason code 0x01"


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "mqtt: remaining length longer than 4 bytes, got b'0\\xff\\xff\\xff\\xff'"),
        (b"\x34\x05\x00\x01a\x00\x01", "mqtt: the broker sent a QoS 2 PUBLISH to a QoS 1 subscription, got qos 2"),
        (b"\x36\x03\x00\x01a", "mqtt: malformed PUBLISH header, got flags 0x6"),
        (b"\x32\x03\x00\x09a", "mqtt: PUBLISH header longer than its packet, got 3 bytes"),
        (b"\x62\x02\x00\x01", "mqtt: unexpected packet from the broker, got type 6 (first byte 0x62)"),
    ],
)
def test_broken_streams_are_wire_errors(stream: bytes, message: str) -> None:
    reader = PacketReader(v5=False)
    reader.feed(stream)
    with pytest.raises(MqttWireError) as info:
        reader.next()
    assert str(info.value) == message


def test_connect_bytes_v5() -> None:
    packet = encode_connect(
        client_id="gw",
        keepalive_s=60,
        v5=True,
        session_expiry_s=3600,
        receive_maximum=1000,
        username="u",
        password="p",
    )
    # flags 0xC0: user name, password, clean start off; properties: session expiry 3600, receive max 1000
    body = b"\x00\x04MQTT\x05\xc0\x00\x3c" + b"\x08\x11\x00\x00\x0e\x10\x21\x03\xe8" + b"\x00\x02gw\x00\x01u\x00\x01p"
    assert packet == b"\x10" + bytes((len(body),)) + body


def test_connect_bytes_3_1_1() -> None:
    packet = encode_connect(client_id="gw", keepalive_s=5, v5=False, session_expiry_s=60, receive_maximum=3)
    assert packet == b"\x10\x0e\x00\x04MQTT\x04\x00\x00\x05\x00\x02gw"


def test_subscribe_and_puback_bytes() -> None:
    assert encode_subscribe(1, ["a/+", "b/#"], v5=True) == b"\x82\x0f\x00\x01\x00\x00\x03a/+\x11\x00\x03b/#\x11"
    assert encode_subscribe(1, ["a/+"], v5=False) == b"\x82\x08\x00\x01\x00\x03a/+\x01"
    assert encode_puback(0x1234) == b"\x40\x02\x12\x34"
