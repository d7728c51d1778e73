"""MQTT 3.1.1 / 5 packets of a QoS 1 subscriber: encodes what the client sends, parses what the broker sends; no I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.errors import DeviceProtocolError

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP, DISCONNECT = 2, 3, 4, 9, 13, 14
_MAX_REMAINING = 268_435_455  # MQTT's largest remaining length (4 length bytes)
PINGREQ_PACKET = b"\xc0\x00"
# v5 allows a DISCONNECT without reason code and properties: "normal disconnection", session kept
DISCONNECT_PACKET = b"\xe0\x00"
# MQTT 3.1.1 CONNACK return codes → the MQTT 5 reason codes that mean the same (paho maps them alike)
_V311_CONNACK = {1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}


class MqttWireError(DeviceProtocolError):
    """The broker sent bytes that are not the MQTT we asked for."""

    code = "mqtt_wire_error"


class Publish(NamedTuple):
    """A PUBLISH from the broker (a tuple: one is built per message on the hot path)."""

    topic: bytes  # raw: a topic that is not UTF-8 is the adapter's to count, not a wire error
    payload: bytes
    qos: int
    packet_id: int  # 0 for QoS 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnAck:
    session_present: bool
    reason: int  # MQTT 5 reason code (3.1.1 return codes are translated); 0 is success


@dataclass(frozen=True, slots=True, kw_only=True)
class SubAck:
    packet_id: int
    reasons: tuple[int, ...]  # granted QoS (0..2) or a failure code >= 0x80, one per filter


@dataclass(frozen=True, slots=True, kw_only=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect:
    reason: int  # the broker closes the connection after it; 0 if it gave none


Packet = Publish | ConnAck | SubAck | PingResp | Disconnect


def reason_text(packet_type: int, reason: int) -> str:
    """The MQTT 5 name of a reason code, e.g. 0x87 → `Not authorized`."""
    ptype = {CONNACK: PacketTypes.CONNACK, SUBACK: PacketTypes.SUBACK}.get(packet_type, PacketTypes.DISCONNECT)
    try:
        return str(ReasonCode(ptype, identifier=reason))
    except (KeyError, ValueError):  # a code paho does not know for this packet type
        return f"reason code 0x{reason:02X}"


def _varint(n: int) -> bytes:
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
    return bytes((first,)) + _varint(len(body)) + body


def encode_connect(
    *,
    client_id: str,
    keepalive_s: int,
    v5: bool,
    session_expiry_s: int,
    receive_maximum: int,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT asking to keep the session (clean start / clean session off)."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = b"\x00\x04MQTT" + bytes((5 if v5 else 4, flags)) + struct.pack("!H", keepalive_s)
    if v5:
        props = b"\x11" + struct.pack("!I", session_expiry_s) + b"\x21" + struct.pack("!H", receive_maximum)
        body += _varint(len(props)) + props
    body += _text(client_id)
    if username is not None:
        body += _text(username)
    if password is not None:
        body += _text(password)
    return _packet(0x10, body)


def encode_subscribe(packet_id: int, filters: list[str], *, v5: bool) -> bytes:
    """SUBSCRIBE at QoS 1; with v5, retained messages only for a subscription the session did not have."""
    body = struct.pack("!H", packet_id) + (b"\x00" if v5 else b"")
    options = bytes((0x11 if v5 else 0x01,))  # QoS 1 | retain handling 1 (send if new subscription)
    for f in filters:
        body += _text(f) + options
    return _packet(0x82, body)


def encode_puback(packet_id: int) -> bytes:
    # the short form (no reason code: success) is valid in 3.1.1 and 5 alike
    return bytes((0x40, 2, packet_id >> 8, packet_id & 0xFF))


class PacketReader:
    """Cuts the broker's byte stream into packets; `feed` bytes as they come, take packets with `next`."""

    def __init__(self, *, v5: bool) -> None:
        self.v5 = v5
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as packets."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos:
            # drop what was consumed before growing, so the buffer stays about one read long
            del self._buf[: self._pos]
            self._pos = 0
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
        if end > end_of_data:
            return None
        self._pos = end
        kind = first >> 4
        if kind == PUBLISH:
            return self._publish(first, i, end)
        return self._control(kind, first, bytes(buf[i:end]))

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
        if self.v5:
            # properties (topic alias, user properties …) are not used: skip them
            plen = 0
            shift = 0
            while True:
                byte = buf[p]
                p += 1
                plen |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            p += plen
        if p > end:
            raise MqttWireError(f"mqtt: PUBLISH header longer than its packet, got {end - start} bytes")
        return Publish(topic, bytes(buf[p:end]), qos, packet_id)

    def _control(self, kind: int, first: int, body: bytes) -> Packet:
        if kind == CONNACK:
            if len(body) < 2:
                raise MqttWireError(f"mqtt: CONNACK too short, got {body!r}")
            code = body[1] if self.v5 else _V311_CONNACK.get(body[1], 0x80 if body[1] else 0)
            return ConnAck(session_present=bool(body[0] & 1), reason=code)
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
        if kind == PINGRESP:
            return PingResp()
        if kind == DISCONNECT:
            return Disconnect(reason=body[0] if body else 0)
        raise MqttWireError(f"mqtt: unexpected packet from the broker, got type {kind} (first byte 0x{first:02X})")
