"""gateway.mqtt.packets: every packet a client sends round-trips through the decoders, byte-exact where the
standard fixes the bytes, and the reader takes what a broker sends at any split."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from paho.mqtt.reasoncodes import ReasonCode

from gateway.mqtt import packets
from gateway.mqtt.packets import (
    CONNACK,
    DISCONNECT,
    PUBACK,
    SUBACK,
    ConnAck,
    Connect,
    MqttWireError,
    PacketReader,
    PacketTooLarge,
    PubAck,
    Publish,
    TooLarge,
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
    max_packet=st.integers(0, 2**32 - 1),
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
    max_packet: int,
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
        maximum_packet_size=max_packet,
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
        maximum_packet_size=max_packet if v5 else 0,
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


def test_connect_asks_a_v5_broker_for_a_maximum_packet_size_as_paho_encodes_it() -> None:
    # MQTT 5 §3.1.2.11.4: property 0x27, a four byte integer; paho packs it independently
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 1000
    props.MaximumPacketSize = 1_048_576
    packet = encode_connect(
        client_id="gw", keepalive_s=60, v5=True, receive_maximum=1000, maximum_packet_size=1_048_576
    )
    packed = props.pack()  # type: ignore[no-untyped-call]
    assert packet == b"\x10\x17\x00\x04MQTT\x05\x00\x00\x3c" + packed + b"\x00\x02gw"
    # MQTT 3.1.1 has no properties: the broker cannot be told
    assert encode_connect(client_id="gw", keepalive_s=60, v5=False, maximum_packet_size=1_048_576) == (
        b"\x10\x0e\x00\x04MQTT\x04\x00\x00\x3c\x00\x02gw"
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


# Every CONNACK property (MQTT 5 §3.2.2.3) by paho's name, with values of its type.
connack_properties = st.fixed_dictionaries(
    {},
    optional={
        "SessionExpiryInterval": st.integers(0, 2**32 - 1),
        "ReceiveMaximum": st.integers(1, 65_535),
        "MaximumQoS": st.integers(0, 1),
        "RetainAvailable": st.integers(0, 1),
        "MaximumPacketSize": st.integers(1, 268_435_455),  # paho refuses more (the largest packet MQTT allows)
        "AssignedClientIdentifier": texts,
        "TopicAliasMaximum": st.integers(0, 65_535),
        "ReasonString": texts,
        "UserProperty": st.lists(st.tuples(texts, texts), min_size=1, max_size=3),
        "WildcardSubscriptionAvailable": st.integers(0, 1),
        "SubscriptionIdentifierAvailable": st.integers(0, 1),
        "SharedSubscriptionAvailable": st.integers(0, 1),
        "ServerKeepAlive": st.integers(0, 65_535),
        "ResponseInformation": texts,
        "ServerReference": texts,
        "AuthenticationMethod": texts,
        "AuthenticationData": st.binary(max_size=40),
    },
)


@given(st.integers(0, 127) | st.integers(128, 16_383) | st.integers(16_384, 268_435_455))
def test_a_variable_byte_integer_is_what_paho_encodes(n: int) -> None:
    # each length class its own strategy: the one- and two-byte forms have their own short paths
    assert packets._varint(n) == VariableByteIntegers.encode(n)  # type: ignore[no-untyped-call]


def connack(properties: bytes, *, flags: int = 0, reason: int = 0) -> bytes:
    body = bytes([flags, reason]) + properties
    length, n = b"", len(body)
    while True:  # the remaining length, a variable byte integer
        n, byte = n >> 7, n & 0x7F
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            return b"\x20" + length + body


@given(values=connack_properties, split=st.integers(0, 300), reason=st.sampled_from([0, 0x87]))
def test_connack_receive_maximum_is_read_among_any_properties(values: dict[str, Any], split: int, reason: int) -> None:
    # paho packs the properties: an independent encoder, every property type, in any mix
    props = Properties(PacketTypes.CONNACK)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    (packet,) = read_all(connack(props.pack(), flags=1, reason=reason), v5=True, split=split)  # type: ignore[no-untyped-call]
    assert packet == ConnAck(session_present=True, reason=reason, receive_maximum=values.get("ReceiveMaximum", 65_535))


def test_connack_without_properties_and_in_311_has_no_receive_maximum() -> None:
    assert read_all(b"\x20\x02\x00\x00", v5=True, split=1) == [ConnAck(session_present=False, reason=0)]
    # 3.1.1: return code 5 is MQTT 5's 0x87; no properties, so the window is the client's own
    assert read_all(b"\x20\x02\x01\x05", v5=False, split=0) == [ConnAck(session_present=True, reason=0x87)]
    assert ConnAck(session_present=False, reason=0).receive_maximum == 65_535


@pytest.mark.parametrize(
    ("properties", "error"),
    [
        (b"\x03\x21\x00\x00", "mqtt: malformed CONNACK, got Receive Maximum 0"),
        (b"\x02\xff\x00", "mqtt: malformed CONNACK, got an unknown property 0xFF"),
        (b"\x02\x21\x00", "mqtt: malformed CONNACK properties, got b'\\x00\\x00\\x02!\\x00'"),  # cut short
        (b"\x04\x1f\x00\x05a", "mqtt: malformed CONNACK properties, got b'\\x00\\x00\\x04\\x1f\\x00\\x05a'"),
    ],
)
def test_malformed_connack_properties_say_what_is_wrong(properties: bytes, error: str) -> None:
    with pytest.raises(MqttWireError) as info:
        read_all(connack(properties), v5=True, split=0)
    assert str(info.value) == error


# --- the maximum packet size ---------------------------------------------------------------------------


def small(i: int) -> bytes:
    return encode_publish(f"t/{i}", b"%d" % i, qos=1, packet_id=i + 1, v5=False)


def test_a_packet_at_the_limit_passes_and_one_byte_more_is_refused_by_its_fixed_header() -> None:
    # the limit counts the whole packet, fixed header included, as MQTT 5 does
    packet = encode_publish("t", b"x" * 100, qos=1, packet_id=7, v5=True)
    assert len(packet) == 108
    reader = PacketReader(v5=True, max_packet_bytes=len(packet))
    reader.feed(packet)
    assert isinstance(reader.next(), Publish)
    reader = PacketReader(v5=True, max_packet_bytes=len(packet) - 1)
    reader.feed(packet[:2])  # the fixed header only (one length byte): the body has not come
    with pytest.raises(PacketTooLarge) as info:
        reader.next()
    assert str(info.value) == (
        "mqtt: packets from the broker must be at most 107 bytes (the maximum packet size), got a PUBLISH of 108 bytes"
    )
    assert (info.value.code, info.value.params) == (
        "mqtt_packet_too_large",
        {"packet_type": 3, "size": 108, "limit": 107},
    )


def test_mqtt_s_largest_remaining_length_is_refused_before_a_byte_of_its_body() -> None:
    # what a hostile broker sent in review: a v5 PUBLISH of 268,435,455 bytes announced, then streamed
    reader = PacketReader(v5=True, max_packet_bytes=1_048_576)
    reader.feed(b"\x30\xff\xff\xff\x7f")
    with pytest.raises(PacketTooLarge) as info:
        reader.next()
    assert str(info.value) == (
        "mqtt: packets from the broker must be at most 1048576 bytes (the maximum packet size), got a PUBLISH of "
        "268435460 bytes"
    )
    assert reader.buffered == 5


@pytest.mark.parametrize("v5", [True, False])
def test_a_control_packet_over_the_limit_is_a_wire_error_in_either_version(v5: bool) -> None:
    reader = PacketReader(v5=v5, max_packet_bytes=64)
    reader.feed(b"\x90\xc8\x01\x00\x01")  # a SUBACK of 200 bytes: no 3.1.1 leniency for those
    with pytest.raises(PacketTooLarge) as info:
        reader.next()
    assert str(info.value) == (
        "mqtt: packets from the broker must be at most 64 bytes (the maximum packet size), got a SUBACK of 203 bytes"
    )


@given(
    qos=st.sampled_from([0, 1]),
    size=st.integers(4_097, 40_000),
    cuts=st.lists(st.integers(1, 3_000), min_size=1, max_size=20),
)
def test_a_3_1_1_publish_over_the_limit_is_skipped_as_it_comes_at_any_split(
    qos: int, size: int, cuts: list[int]
) -> None:
    # a 3.1.1 broker cannot be told the limit: its message is reported by topic and packet id and the rest
    # of it dropped as it arrives, so the packets around it come through and the reader never holds it
    big = encode_publish("big/topic", b"x" * size, qos=qos, packet_id=4242, v5=False)
    stream = small(0) + big + small(1)
    reader = PacketReader(v5=False, max_packet_bytes=4096)
    out: list[object] = []
    most, at, turn = 0, 0, 0
    while at < len(stream):
        cut = cuts[turn % len(cuts)]
        reader.feed(stream[at : at + cut])
        at, turn = at + cut, turn + 1
        most = max(most, reader.buffered)
        while (packet := reader.next()) is not None:
            out.append(packet)
    assert out == [
        Publish(b"t/0", b"0", 1, 1),
        TooLarge(topic=b"big/topic", qos=qos, packet_id=4242 if qos else 0, size=len(big), limit=4096),
        Publish(b"t/1", b"1", 1, 2),
    ]
    head = len(big) - size  # fixed header, topic and packet id
    assert most <= max(cuts) + head  # a feed, and what waited of the big one's head; never its body
    assert str(out[1]) == (
        f"mqtt: packets from the broker must be at most 4096 bytes (the maximum packet size), got a PUBLISH of "
        f"{len(big)} bytes"
    )


def test_a_3_1_1_publish_over_the_limit_with_a_broken_head_is_a_wire_error() -> None:
    reader = PacketReader(v5=False, max_packet_bytes=4096)
    reader.feed(b"\x32\x88\x40\xff\xff")  # topic length 65,535 in a packet of 8,200 bytes
    with pytest.raises(MqttWireError) as info:
        reader.next()
    assert str(info.value) == "mqtt: PUBLISH header longer than its packet, got 8200 bytes"


def test_the_reader_s_limit_is_within_mqtt_s() -> None:
    with pytest.raises(ValueError, match=r"^mqtt reader: max_packet_bytes must be 2\.\.268435460, got 0$"):
        PacketReader(v5=True, max_packet_bytes=0)
