"""MQTT 3.1.1 / 5 packets of a QoS 0/1 client, sans I/O: encodes what a client sends, cuts the broker's
byte stream into packets, and decodes client packets too (for tests and peers).

Theory of operation: bytes in (`PacketReader.feed`), packets out (`next`); `encode_*` give the exact
bytes to write. Nothing here touches a socket or the clock. The subscriber's hot path (PUBLISH in,
PUBACK out) builds one tuple per message and skips v5 properties unless asked to keep them.
The reader takes packets up to its `max_packet_bytes` (a v5 CONNECT tells the broker the same figure)
and judges a larger one by its fixed header, before its body is buffered: see `PacketReader`.
Only what the gateway uses is implemented: QoS 2, AUTH and topic aliases are not."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.errors import DeviceProtocolError

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 8, 9, 12, 13, 14
_MAX_REMAINING = 268_435_455  # MQTT's largest remaining length (4 length bytes)
MAX_PACKET_BYTES = 1 + 4 + _MAX_REMAINING  # MQTT's largest packet: the first byte, 4 length bytes, the rest
PINGREQ_PACKET = b"\xc0\x00"
# v5 allows a DISCONNECT without reason code and properties: "normal disconnection", session kept
DISCONNECT_PACKET = b"\xe0\x00"
# MQTT 3.1.1 CONNACK return codes → the MQTT 5 reason codes that mean the same (paho maps them alike)
_V311_CONNACK = {1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}


class MqttWireError(DeviceProtocolError):
    """The broker sent bytes that are not the MQTT we asked for."""

    code = "mqtt_wire_error"


class PacketTooLarge(MqttWireError):
    """A packet over the reader's maximum packet size, refused by its fixed header (its body was not read)."""

    code = "mqtt_packet_too_large"

    def __init__(self, packet_type: int, size: int, limit: int) -> None:
        super().__init__(too_large_text(packet_type, size, limit), packet_type=packet_type, size=size, limit=limit)
        self.size = size
        self.limit = limit


class Publish(NamedTuple):
    """A PUBLISH from the broker (a tuple: one is built per message on the hot path)."""

    topic: bytes  # raw: a topic that is not UTF-8 is the adapter's to count, not a wire error
    payload: bytes
    qos: int
    packet_id: int  # 0 for QoS 0
    retain: bool = False
    properties: bytes = b""  # v5 properties, raw; only with PacketReader(keep_properties=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnAck:
    session_present: bool
    reason: int  # MQTT 5 reason code (3.1.1 return codes are translated); 0 is success
    # v5: QoS 1 publishes the broker takes unacknowledged at a time (its Receive Maximum); 65,535 when
    # it set none (and for 3.1.1). A client must not send more (MQTT-3.3.4-7): stock mosquitto says 20.
    receive_maximum: int = 65_535
    # v5: the largest packet the broker takes (its Maximum Packet Size, mosquitto's max_packet_size);
    # MQTT's own largest when it set none. A client must not send a larger one (MQTT-3.2.2-15): the broker
    # answers DISCONNECT 0x95 and the message comes back after every reconnect. Left out of ==: ConnAck
    # values were compared whole before it existed, so a test wanting it compares it by name.
    maximum_packet_size: int = field(default=MAX_PACKET_BYTES, compare=False)
    # v5: the keep-alive the broker wants instead of ours (its Server Keep Alive, mosquitto's max_keepalive);
    # None when it set none. A client must use it (MQTT-3.2.2-21): the broker drops a connection silent for
    # 1.5 x this, so pinging at our own longer interval loses the connection whenever it is idle.
    server_keep_alive: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubAck:
    packet_id: int
    reasons: tuple[int, ...]  # granted QoS (0..2) or a failure code >= 0x80, one per filter


@dataclass(frozen=True, slots=True, kw_only=True)
class PubAck:
    packet_id: int
    reason: int  # MQTT 5 reason code; 0 (success) when the broker sent the short form or speaks 3.1.1


@dataclass(frozen=True, slots=True, kw_only=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect:
    reason: int  # the broker closes the connection after it; 0 if it gave none


@dataclass(frozen=True, slots=True, kw_only=True)
class TooLarge:
    """A PUBLISH over the reader's `max_packet_bytes` from an MQTT 3.1.1 broker (which cannot be told the
    limit): its topic and packet id, read from its head; the rest of it was skipped, never buffered."""

    topic: bytes
    qos: int
    packet_id: int  # 0 for QoS 0
    size: int  # bytes of the whole packet
    limit: int  # the reader's max_packet_bytes

    def __str__(self) -> str:
        return too_large_text(PUBLISH, self.size, self.limit)


Packet = Publish | ConnAck | PubAck | SubAck | PingResp | Disconnect | TooLarge

_TYPE_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE",
    9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}  # fmt: skip


def too_large_text(packet_type: int, size: int, limit: int) -> str:
    """What a packet over the maximum packet size is called in errors and logs, the same everywhere."""
    name = _TYPE_NAMES.get(packet_type, f"packet of type {packet_type}")
    return (
        f"mqtt: packets from the broker must be at most {limit} bytes (the maximum packet size), "
        f"got a {name} of {size} bytes"
    )


# MQTT 5 reason code names (spec §2.4) and which packet may carry which code, as paho (the test oracle)
# reads the tables, so log lines read as they did when paho produced them.
_NAMES = {
    0x10: "No matching subscribers",
    0x80: "Unspecified error",
    0x81: "Malformed packet",
    0x82: "Protocol error",
    0x83: "Implementation specific error",
    0x84: "Unsupported protocol version",
    0x85: "Client identifier not valid",
    0x86: "Bad user name or password",
    0x87: "Not authorized",
    0x88: "Server unavailable",
    0x89: "Server busy",
    0x8A: "Banned",
    0x8B: "Server shutting down",
    0x8C: "Bad authentication method",
    0x8D: "Keep alive timeout",
    0x8E: "Session taken over",
    0x8F: "Topic filter invalid",
    0x90: "Topic name invalid",
    0x91: "Packet identifier in use",
    0x92: "Packet identifier not found",
    0x93: "Receive maximum exceeded",
    0x94: "Topic alias invalid",
    0x95: "Packet too large",
    0x96: "Message rate too high",
    0x97: "Quota exceeded",
    0x98: "Administrative action",
    0x99: "Payload format invalid",
    0x9A: "Retain not supported",
    0x9B: "QoS not supported",
    0x9C: "Use another server",
    0x9D: "Server moved",
    0x9E: "Shared subscription not supported",
    0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time",
    0xA1: "Subscription identifiers not supported",
    0xA2: "Wildcard subscription not supported",
}
_VALID = {
    CONNACK: {
        0x00,
        0x80,
        0x81,
        0x82,
        0x83,
        0x84,
        0x85,
        0x86,
        0x87,
        0x88,
        0x89,
        0x8A,
        0x8C,
        0x90,
        0x95,
        0x97,
        0x9A,
        0x9B,
        0x9C,
        0x9D,
        0x9F,
    },
    PUBACK: {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99},
    SUBACK: {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2},
    DISCONNECT: {
        0x00,
        0x04,
        0x80,
        0x81,
        0x82,
        0x83,
        0x87,
        0x89,
        0x8B,
        0x8C,
        0x8D,
        0x8E,
        0x8F,
        0x90,
        0x93,
        0x94,
        0x95,
        0x96,
        0x97,
        0x98,
        0x99,
        0x9A,
        0x9B,
        0x9C,
        0x9D,
        0x9E,
        0x9F,
        0xA0,
        0xA1,
        0xA2,
    },
}
_SUCCESS = {CONNACK: "Success", PUBACK: "Success", SUBACK: "Granted QoS 0", DISCONNECT: "Normal disconnection"}


def reason_text(packet_type: int, reason: int) -> str:
    """The MQTT 5 name of a reason code in a packet, e.g. 0x87 → `Not authorized`; CONNACK, PUBACK and SUBACK
    have their own sets, anything else is read as a DISCONNECT's."""
    kind = packet_type if packet_type in _VALID else DISCONNECT
    if reason not in _VALID[kind]:
        return f"reason code 0x{reason:02X}"
    if reason == 0:
        return _SUCCESS[kind]
    if kind == SUBACK and reason in (1, 2):
        return f"Granted QoS {reason}"
    if kind == DISCONNECT and reason == 0x04:
        return "Disconnect with will message"
    return _NAMES[reason]


_BYTES = tuple(bytes((i,)) for i in range(256))


def _varint(n: int) -> bytes:
    # a packet's or a property block's length: one byte below 128, two below 16,384 (a PUBLISH of a
    # few readings), without the loop and its bytearray (~0.5 µs a message)
    if n < 0x80:
        return _BYTES[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _text(s: str) -> bytes:
    data = s.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    if len(body) > _MAX_REMAINING:
        raise ValueError(f"mqtt packet: at most {_MAX_REMAINING} bytes, got {len(body)}")
    return _BYTES[first] + _varint(len(body)) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class Will:
    """The message the broker publishes for us when the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def encode_connect(
    *,
    client_id: str,
    keepalive_s: int,
    v5: bool,
    session_expiry_s: int = 0,
    receive_maximum: int = 0,
    maximum_packet_size: int = 0,
    username: str | None = None,
    password: str | None = None,
    clean_start: bool = False,
    will: Will | None = None,
) -> bytes:
    """CONNECT; by default asking to keep the session (clean start / clean session off). With v5, a
    session expiry, a receive maximum (0: not sent, the broker's default of 65,535) and a maximum
    packet size (0: not sent, no limit): a v5 broker then discards larger messages for us rather than
    sending them (MQTT 5 §3.1.2.11.4)."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0) | (2 if clean_start else 0)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    body = b"\x00\x04MQTT" + bytes((5 if v5 else 4, flags)) + struct.pack("!H", keepalive_s)
    if v5:
        props = b"\x11" + struct.pack("!I", session_expiry_s) if session_expiry_s else b""
        if receive_maximum:
            props += b"\x21" + struct.pack("!H", receive_maximum)
        if maximum_packet_size:
            props += b"\x27" + struct.pack("!I", maximum_packet_size)
        body += _varint(len(props)) + props
    body += _text(client_id)
    if will is not None:
        if v5:
            body += b"\x00"  # no will properties
        body += _text(will.topic) + struct.pack("!H", len(will.payload)) + will.payload
    if username is not None:
        body += _text(username)
    if password is not None:
        body += _text(password)
    return _packet(0x10, body)


def publish_properties(*, content_type: str | None = None, user: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The v5 property block of a PUBLISH (length included): ContentType, then UserProperty pairs."""
    return property_block(packed_properties(content_type=content_type, user=user))


def packed_properties(*, content_type: str | None = None, user: tuple[tuple[str, str], ...] = ()) -> bytes:
    """`publish_properties` without the block's length, to add more properties to."""
    body = b"" if content_type is None else b"\x03" + _text(content_type)
    for key, value in user:
        body += user_property(key, value)
    return body


def user_property(key: str, value: str) -> bytes:
    """One v5 UserProperty, to put in a property block."""
    return b"\x26" + _text(key) + _text(value)


def property_block(body: bytes) -> bytes:
    """A v5 property block of these packed properties: their length, then them."""
    return _varint(len(body)) + body


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int,
    packet_id: int = 0,
    retain: bool = False,
    v5: bool,
    properties: bytes = b"\x00",
    dup: bool = False,
) -> bytes:
    """PUBLISH at QoS 0 or 1; `properties` is a block from `publish_properties` (v5 only)."""
    if qos not in (0, 1):
        raise ValueError(f"mqtt publish: qos must be 0 or 1, got {qos}")
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = _text(topic) + (struct.pack("!H", packet_id) if qos else b"") + (properties if v5 else b"") + payload
    return _packet(first, body)


def user_properties(properties: bytes) -> tuple[tuple[str, str], ...]:
    """The UserProperty pairs of a PUBLISH's raw v5 properties (as kept by the reader), in order."""
    out: list[tuple[str, str]] = []
    try:
        for ident, at, _ in _property_values(properties, 0, len(properties), _PUBLISH_PROPERTIES):
            if ident == _USER_PROPERTY:
                key, p = _read_text(properties, at)
                value, _ = _read_text(properties, p)
                out.append((key, value))
    except _UnknownProperty as exc:
        raise MqttWireError(f"mqtt: unknown PUBLISH property, got identifier 0x{exc.ident:02X}") from None
    except (IndexError, UnicodeDecodeError):
        raise MqttWireError(f"mqtt: malformed PUBLISH properties, got {properties!r}") from None
    return tuple(out)


# Each v5 property's value by identifier (spec §2.2.2.2): a fixed size in bytes, 0 for a variable byte
# integer, or -n for n fields of a two-byte length and that many bytes (strings, binary data; a user
# property is two strings).
_PROPERTY_SIZES = {
    0x01: 1, 0x02: 4, 0x03: -1, 0x08: -1, 0x09: -1, 0x0B: 0, 0x11: 4, 0x12: -1, 0x13: 2, 0x15: -1,
    0x16: -1, 0x17: 1, 0x18: 4, 0x19: 1, 0x1A: -1, 0x1C: -1, 0x1F: -1, 0x21: 2, 0x22: 2, 0x23: 2,
    0x24: 1, 0x25: 1, 0x26: -2, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1,
}  # fmt: skip
_USER_PROPERTY = 0x26
_RECEIVE_MAXIMUM = 0x21
_MAXIMUM_PACKET_SIZE = 0x27
_SERVER_KEEP_ALIVE = 0x13
_PUBLISH_PROPERTIES = frozenset({0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26})
_CONNACK_PROPERTIES = frozenset(
    {0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A}
)


class _UnknownProperty(Exception):
    def __init__(self, ident: int) -> None:
        super().__init__(ident)
        self.ident = ident


def _property_values(data: bytes, p: int, end: int, allowed: frozenset[int]) -> Iterator[tuple[int, int, int]]:
    """Each property in data[p:end] as (identifier, offset of its value, offset past it); IndexError
    where the data runs out, _UnknownProperty for an identifier the packet may not carry."""
    while p < end:
        ident = data[p]
        if ident not in allowed:
            raise _UnknownProperty(ident)
        at = p = p + 1
        size = _PROPERTY_SIZES[ident]
        if size > 0:
            p += size
        elif size == 0:
            while data[p] & 0x80:
                p += 1
            p += 1
        for _ in range(-size):
            p += 2 + ((data[p] << 8) | data[p + 1])
        yield ident, at, p


def _read_text(data: bytes, p: int) -> tuple[str, int]:
    n = (data[p] << 8) | data[p + 1]
    end = p + 2 + n
    if end > len(data):
        raise IndexError(end)
    return data[p + 2 : end].decode("utf-8"), end


# MQTT 5 Retain Handling, a subscription option: when the broker sends its retained messages
RETAIN_AT_SUBSCRIBE = 0  # at every SUBSCRIBE
RETAIN_IF_NEW = 1  # only for a subscription the session did not have
RETAIN_NEVER = 2  # never: only messages published from now on


def encode_subscribe(
    packet_id: int, filters: list[str], *, v5: bool, retain_handling: Sequence[int] | None = None
) -> bytes:
    """SUBSCRIBE at QoS 1; with v5, each filter's Retain Handling (default RETAIN_IF_NEW for all). An
    MQTT 3.1.1 broker cannot be told: it sends the retained messages at every SUBSCRIBE."""
    if retain_handling is None:
        retain_handling = (RETAIN_IF_NEW,) * len(filters)
    elif len(retain_handling) != len(filters) or any(rh not in (0, 1, 2) for rh in retain_handling):
        raise ValueError(
            f"mqtt subscribe: retain_handling needs one of 0, 1, 2 per filter ({len(filters)}), "
            f"got {list(retain_handling)}"
        )
    body = struct.pack("!H", packet_id) + (b"\x00" if v5 else b"")
    for f, rh in zip(filters, retain_handling, strict=True):
        body += _text(f) + bytes((0x01 | (rh << 4) if v5 else 0x01,))  # QoS 1 | retain handling (bits 4-5)
    return _packet(0x82, body)


def encode_puback(packet_id: int, reason: int = 0) -> bytes:
    if not reason:  # the short form (no reason code: success) is valid in 3.1.1 and 5 alike
        return bytes((0x40, 2, packet_id >> 8, packet_id & 0xFF))
    return bytes((0x40, 3, packet_id >> 8, packet_id & 0xFF, reason))


def encode_pubacks(packet_ids: Sequence[int]) -> bytes:
    """Success PUBACKs for these packet ids, in this order, as one buffer (the same bytes as joining
    `encode_puback` of each): a subscriber acknowledging a committed group writes them at once."""
    # a short-form PUBACK is 0x40 0x02 and the id, big-endian: one 32-bit word per ack, packed in one call
    return struct.pack(f"!{len(packet_ids)}I", *[0x4002_0000 | pid for pid in packet_ids])


def encode_disconnect(reason: int = 0) -> bytes:
    """DISCONNECT; reason 0x04 asks a v5 broker to publish the will anyway."""
    return DISCONNECT_PACKET if not reason else bytes((0xE0, 1, reason))


# --- client packets decoded (what a broker reads): for tests and test peers ------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    client_id: str
    keepalive_s: int
    v5: bool
    clean_start: bool
    session_expiry_s: int
    receive_maximum: int
    username: str | None
    password: str | None
    will: Will | None
    maximum_packet_size: int = 0  # v5; 0 when not sent


def _props_end(body: bytes, p: int) -> tuple[int, int]:
    """(start, end) of a v5 property block whose length starts at p."""
    n, shift = 0, 0
    while True:
        byte = body[p]
        p += 1
        n |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return p, p + n
        shift += 7


def _connack_properties(body: bytes) -> tuple[int, int, int | None]:
    """(Receive Maximum, Maximum Packet Size, Server Keep Alive) in a v5 CONNACK's body, 65,535,
    MAX_PACKET_BYTES and None where absent; MqttWireError if its properties are malformed."""
    receive_maximum, packet_size, keep_alive = 65_535, MAX_PACKET_BYTES, None
    try:
        start, end = _props_end(body, 2) if len(body) > 2 else (2, 2)
        after = start  # past the last property read: the block must end exactly there
        for ident, at, past in _property_values(body, start, end, _CONNACK_PROPERTIES):
            after = past
            if ident == _RECEIVE_MAXIMUM:
                receive_maximum = (body[at] << 8) | body[at + 1]
                if not receive_maximum:
                    raise MqttWireError("mqtt: malformed CONNACK, got Receive Maximum 0")
            elif ident == _MAXIMUM_PACKET_SIZE:
                packet_size = struct.unpack_from("!I", body, at)[0]
                if not packet_size:  # MQTT 5 §3.2.2.3.6: a protocol error
                    raise MqttWireError("mqtt: malformed CONNACK, got Maximum Packet Size 0")
            elif ident == _SERVER_KEEP_ALIVE:
                keep_alive = (body[at] << 8) | body[at + 1]
        if after != end or end > len(body):
            raise IndexError
    except _UnknownProperty as exc:
        raise MqttWireError(f"mqtt: malformed CONNACK, got an unknown property 0x{exc.ident:02X}") from None
    except (IndexError, struct.error):
        raise MqttWireError(f"mqtt: malformed CONNACK properties, got {bytes(body)!r}") from None
    return receive_maximum, packet_size, keep_alive


def _whole(packet: bytes, kind: int) -> bytes:
    if not packet or packet[0] >> 4 != kind:
        raise MqttWireError(f"mqtt: expected packet type {kind}, got {packet[:1]!r}")
    length, shift, i = 0, 0, 1
    while True:
        byte = packet[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            break
        shift += 7
    if i + length != len(packet):
        raise MqttWireError(f"mqtt: packet length {length} does not match its {len(packet) - i} bytes")
    return packet[i:]


def decode_connect(packet: bytes) -> Connect:
    """A whole CONNECT packet as the broker reads it."""
    try:
        body = _whole(packet, CONNECT)
        if body[:6] != b"\x00\x04MQTT" or body[6] not in (4, 5):
            raise MqttWireError(f"mqtt: CONNECT for MQTT 3.1.1 or 5 only, got {body[:7]!r}")
        v5, flags = body[6] == 5, body[7]
        keepalive = (body[8] << 8) | body[9]
        p = 10
        expiry = receive_max = max_packet = 0
        if v5:
            start, p = _props_end(body, p)
            q = start
            while q < p:
                if body[q] == 0x11:
                    expiry = struct.unpack_from("!I", body, q + 1)[0]
                    q += 5
                elif body[q] == 0x21:
                    receive_max = struct.unpack_from("!H", body, q + 1)[0]
                    q += 3
                elif body[q] == 0x27:
                    max_packet = struct.unpack_from("!I", body, q + 1)[0]
                    q += 5
                else:
                    raise MqttWireError(f"mqtt: CONNECT property not decoded here, got 0x{body[q]:02X}")
        client_id, p = _read_text(body, p)
        will = None
        if flags & 0x04:
            if v5:
                _, p = _props_end(body, p)
            topic, p = _read_text(body, p)
            n = (body[p] << 8) | body[p + 1]
            will = Will(
                topic=topic, payload=bytes(body[p + 2 : p + 2 + n]), qos=(flags >> 3) & 3, retain=bool(flags & 0x20)
            )
            p += 2 + n
        username = password = None
        if flags & 0x80:
            username, p = _read_text(body, p)
        if flags & 0x40:
            password, p = _read_text(body, p)
    except (IndexError, UnicodeDecodeError, struct.error):
        raise MqttWireError(f"mqtt: malformed CONNECT, got {packet!r}") from None
    return Connect(
        client_id=client_id,
        keepalive_s=keepalive,
        v5=v5,
        clean_start=bool(flags & 2),
        session_expiry_s=expiry,
        receive_maximum=receive_max,
        username=username,
        password=password,
        will=will,
        maximum_packet_size=max_packet,
    )


def decode_subscribe(packet: bytes, *, v5: bool) -> tuple[int, tuple[tuple[str, int], ...]]:
    """(packet id, (filter, options byte) pairs) of a whole SUBSCRIBE."""
    try:
        body = _whole(packet, SUBSCRIBE)
        packet_id = (body[0] << 8) | body[1]
        p = _props_end(body, 2)[1] if v5 else 2
        filters: list[tuple[str, int]] = []
        while p < len(body):
            topic, p = _read_text(body, p)
            filters.append((topic, body[p]))
            p += 1
    except (IndexError, UnicodeDecodeError):
        raise MqttWireError(f"mqtt: malformed SUBSCRIBE, got {packet!r}") from None
    return packet_id, tuple(filters)


class PacketReader:
    """Cuts the broker's byte stream into packets; `feed` bytes as they come, take packets with `next`.

    A packet over `max_packet_bytes` (the whole packet, fixed header included, as MQTT 5 counts it) is
    judged by its fixed header, before its body is buffered. From a v5 broker, which was told the limit,
    it is a protocol error: MqttWireError, and the connection is to be dropped. A 3.1.1 broker cannot be
    told, and drops nothing for us: it would redeliver a QoS 1 message that cost us the connection after
    every reconnect, and block the session's queue for good. So a 3.1.1 PUBLISH over the limit becomes a
    `TooLarge` (its topic and packet id, read from its head, at most 65,539 bytes) and the rest of it is
    skipped as it comes; the client's user acknowledges it like any message. Any other packet over the
    limit is an MqttWireError.
    """

    def __init__(self, *, v5: bool, keep_properties: bool = False, max_packet_bytes: int = MAX_PACKET_BYTES) -> None:
        if not 2 <= max_packet_bytes <= MAX_PACKET_BYTES:
            raise ValueError(f"mqtt reader: max_packet_bytes must be 2..{MAX_PACKET_BYTES}, got {max_packet_bytes}")
        self.v5 = v5
        self.keep_properties = keep_properties
        self.max_packet_bytes = max_packet_bytes
        self._buf = bytearray()
        self._pos = 0
        self._skip = 0  # bytes of a TooLarge packet still to come, dropped as they arrive

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as packets."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos:
            # drop what was consumed before growing, so the buffer stays about one read long
            del self._buf[: self._pos]
            self._pos = 0
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        self._buf += data

    def next(self) -> Packet | None:
        """The next whole packet, or None until more bytes are fed."""
        buf, pos = self._buf, self._pos
        end_of_data = len(buf)
        if end_of_data - pos < 2:
            return None
        first = buf[pos]
        length = 0
        shift = 0
        i = pos + 1
        while True:
            if i >= end_of_data:
                return None
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MqttWireError(f"mqtt: remaining length longer than 4 bytes, got {bytes(buf[pos:i])!r}")
        end = i + length
        if end - pos > self.max_packet_bytes:
            return self._too_large(first, pos, i, end)
        if end > end_of_data:
            return None
        self._pos = end
        kind = first >> 4
        if kind == PUBLISH:
            return self._publish(first, i, end)
        return self._control(kind, first, bytes(buf[i:end]))

    def _too_large(self, first: int, pos: int, start: int, end: int) -> TooLarge | None:
        """A packet at `pos` whose fixed header says it is over the limit (see the class docstring); None
        while the head of a 3.1.1 PUBLISH has not all come."""
        kind = first >> 4
        if self.v5 or kind != PUBLISH:
            raise PacketTooLarge(kind, end - pos, self.max_packet_bytes)
        buf = self._buf
        have = len(buf)
        qos = (first >> 1) & 3
        if qos == 3:
            raise MqttWireError(f"mqtt: malformed PUBLISH header, got flags 0x{first & 0x0F:X}")
        if qos == 2:
            raise MqttWireError("mqtt: the broker sent a QoS 2 PUBLISH to a QoS 1 subscription, got qos 2")
        if have - start < 2:
            return None
        topic_end = start + 2 + ((buf[start] << 8) | buf[start + 1])
        head_end = topic_end + (2 if qos else 0)
        if head_end > end:
            raise MqttWireError(f"mqtt: PUBLISH header longer than its packet, got {end - start} bytes")
        if have < head_end:
            return None
        packet = TooLarge(
            topic=bytes(buf[start + 2 : topic_end]),
            qos=qos,
            packet_id=(buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0,
            size=end - pos,
            limit=self.max_packet_bytes,
        )
        if end <= have:
            self._pos = end
        else:  # what came of its body goes now, the rest as it comes
            self._skip = end - have
            self._pos = have
        return packet

    def _publish(self, first: int, start: int, end: int) -> Publish:
        try:
            return self._publish_fields(first, start, end)
        except IndexError:  # a length field pointing past the bytes received
            raise MqttWireError(f"mqtt: PUBLISH header longer than its packet, got {end - start} bytes") from None

    def _publish_fields(self, first: int, start: int, end: int) -> Publish:
        buf = self._buf
        qos = (first >> 1) & 3
        if qos == 3 or end - start < 2:
            raise MqttWireError(f"mqtt: malformed PUBLISH header, got flags 0x{first & 0x0F:X}")
        tlen = (buf[start] << 8) | buf[start + 1]
        p = start + 2 + tlen
        topic = bytes(buf[start + 2 : p])
        packet_id = 0
        if qos:
            if qos == 2:
                raise MqttWireError("mqtt: the broker sent a QoS 2 PUBLISH to a QoS 1 subscription, got qos 2")
            packet_id = (buf[p] << 8) | buf[p + 1]
            p += 2
        props = b""
        if self.v5:
            # properties (user properties, content type …) are skipped unless the client asked for them
            plen = 0
            shift = 0
            while True:
                byte = buf[p]
                p += 1
                plen |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            if plen and self.keep_properties:
                props = bytes(buf[p : p + plen])
            p += plen
        if p > end:
            raise MqttWireError(f"mqtt: PUBLISH header longer than its packet, got {end - start} bytes")
        if props or first & 1:
            return Publish(topic, bytes(buf[p:end]), qos, packet_id, bool(first & 1), props)
        return Publish(topic, bytes(buf[p:end]), qos, packet_id)

    def _control(self, kind: int, first: int, body: bytes) -> Packet:
        if kind == CONNACK:
            if len(body) < 2:
                raise MqttWireError(f"mqtt: CONNACK too short, got {body!r}")
            if not self.v5:
                return ConnAck(
                    session_present=bool(body[0] & 1), reason=_V311_CONNACK.get(body[1], 0x80 if body[1] else 0)
                )
            if len(body) == 2 and body[1] in _V311_CONNACK:
                # A broker that speaks only 3.1.1 answers our v5 CONNECT in 3.1.1: return code 1, "unacceptable
                # protocol version" (MQTT-3.1.2-2). A v5 CONNACK has a property length, and 1..5 are no v5
                # CONNACK reason codes: read as 3.1.1's, so the refusal says what it is (0x84).
                return ConnAck(session_present=bool(body[0] & 1), reason=_V311_CONNACK[body[1]])
            receive_maximum, packet_size, keep_alive = _connack_properties(body)
            return ConnAck(
                session_present=bool(body[0] & 1),
                reason=body[1],
                receive_maximum=receive_maximum,
                maximum_packet_size=packet_size,
                server_keep_alive=keep_alive,
            )
        if kind == SUBACK:
            if len(body) < 3:
                raise MqttWireError(f"mqtt: SUBACK too short, got {body!r}")
            p = 2
            if self.v5:
                plen, shift = 0, 0
                while p < len(body):
                    byte = body[p]
                    p += 1
                    plen |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                p += plen
            if p >= len(body):
                raise MqttWireError(f"mqtt: SUBACK without reason codes, got {body!r}")
            return SubAck(packet_id=(body[0] << 8) | body[1], reasons=tuple(body[p:]))
        if kind == PUBACK and first == 0x40:  # reserved flags 0: other bytes are not MQTT (an HTTP server's "H")
            if len(body) < 2:
                raise MqttWireError(f"mqtt: PUBACK too short, got {body!r}")
            return PubAck(packet_id=(body[0] << 8) | body[1], reason=body[2] if len(body) > 2 else 0)
        if kind == PINGRESP:
            return PingResp()
        if kind == DISCONNECT:
            return Disconnect(reason=body[0] if body else 0)
        raise MqttWireError(f"mqtt: unexpected packet from the broker, got type {kind} (first byte 0x{first:02X})")
