"""RADIUS packets (RFC 2865 3, RFC 2866 3-4): header and raw attributes, authenticators, no I/O."""

from __future__ import annotations

import hashlib
import hmac
from enum import IntEnum
from typing import NamedTuple, NoReturn

from adapters.radius.errors import (
    RadiusAttributeError,
    RadiusAuthenticatorError,
    RadiusCodeError,
    RadiusError,
    RadiusLengthError,
)

__all__ = [
    "HEADER_LENGTH",
    "MAX_LENGTH",
    "PROXY_STATE",
    "VENDOR_SPECIFIC",
    "Attribute",
    "Code",
    "Packet",
    "accounting_request_authenticator",
    "attribute_error",
    "authenticator_error",
    "decode_accounting_request",
    "decode_accounting_response",
    "decode_packet",
    "encode_accounting_request",
    "encode_accounting_response",
    "encode_attributes",
    "encode_packet",
    "encode_reply",
    "header_length",
    "not_an_accounting_request",
    "reply_authenticator",
]

HEADER_LENGTH = 20
MAX_LENGTH = 4096
VENDOR_SPECIFIC = 26
PROXY_STATE = 33
_ZERO_AUTH = bytes(16)
# Attributes whose value is personal data: their reprs show the length only.
_PERSONAL = frozenset({1, 2, 3, 8, 30, 31})


class Code(IntEnum):
    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11


class Attribute(NamedTuple):
    """One raw attribute: its type and value octets (Vendor-Specific values keep the vendor id)."""

    type: int
    value: bytes

    @property
    def vendor_id(self) -> int | None:
        """The SMI vendor id of a Vendor-Specific (26) attribute, else None."""
        if self.type != VENDOR_SPECIFIC:
            return None
        return int.from_bytes(self.value[:4], "big")

    @property
    def vendor_data(self) -> bytes:
        """The vendor's octets after the vendor id (empty for other attributes)."""
        return self.value[4:] if self.type == VENDOR_SPECIFIC else b""

    def __repr__(self) -> str:
        if self.type == VENDOR_SPECIFIC:
            return f"Attribute(type=26, vendor_id={self.vendor_id}, length={len(self.value)})"
        if self.type in _PERSONAL:
            return f"Attribute(type={self.type}, length={len(self.value)})"
        return f"Attribute(type={self.type}, value={self.value!r})"


class Packet(NamedTuple):
    """A decoded RADIUS packet; `attributes` keep wire order, duplicates included.

    Immutable; a NamedTuple rather than a frozen dataclass because one is built per datagram on the
    hot path. Build it with keywords.
    """

    code: int
    identifier: int
    authenticator: bytes
    attributes: tuple[Attribute, ...]

    def get(self, attr_type: int) -> bytes | None:
        for a in self.attributes:
            if a.type == attr_type:
                return a.value
        return None

    def get_all(self, attr_type: int) -> tuple[bytes, ...]:
        return tuple(a.value for a in self.attributes if a.type == attr_type)

    def vendor_attributes(self) -> tuple[Attribute, ...]:
        return tuple(a for a in self.attributes if a.type == VENDOR_SPECIFIC)


def _decode_attributes(data: bytes, length: int, where: str) -> tuple[Attribute, ...]:
    attrs: list[Attribute] = []
    append = attrs.append
    new = tuple.__new__
    pos = HEADER_LENGTH
    while pos < length:
        # One combined test on the hot path; the slow path below says exactly what is wrong.
        alen = data[pos + 1] if pos + 1 < length else 0
        end = pos + alen
        atype = data[pos]
        if alen < 2 or end > length or (atype == 26 and alen < 7):
            attribute_error(data, length, pos, where)
        append(new(Attribute, (atype, data[pos + 2 : end])))
        pos = end
    return tuple(attrs)


def attribute_error(data: bytes, length: int, pos: int, where: str) -> NoReturn:
    """Raise the exact structural error for the attribute at `pos` (the hot loops' slow path)."""
    atype = data[pos]
    if pos + 1 >= length:
        raise RadiusAttributeError(
            where=f"{where} attribute at offset {pos}",
            what="truncated attribute header (1 octet left)",
            got=f"type {atype}",
            fix="the sender built a malformed packet",
        )
    alen = data[pos + 1]
    if alen < 2:
        raise RadiusAttributeError(
            where=f"{where} attribute {atype} at offset {pos}",
            what="attribute length must be at least 2",
            got=alen,
        )
    if pos + alen > length:
        raise RadiusAttributeError(
            where=f"{where} attribute {atype} at offset {pos}",
            what=f"attribute overflows the packet length {length}",
            got=f"length {alen}",
        )
    raise RadiusAttributeError(
        where=f"{where} attribute 26 (Vendor-Specific) at offset {pos}",
        what="Vendor-Specific needs a 4-octet vendor id and data (length >= 7)",
        got=f"length {alen}",
    )


def header_length(data: bytes, where: str) -> int:
    """The header's length field, or the exact RadiusLengthError."""
    if len(data) < HEADER_LENGTH:
        raise RadiusLengthError(
            where=where,
            what=f"datagram shorter than the {HEADER_LENGTH}-octet header",
            got=f"{len(data)} octets",
        )
    length = (data[2] << 8) | data[3]
    if length < HEADER_LENGTH or length > MAX_LENGTH:
        raise RadiusLengthError(
            where=where,
            what=f"header length must be {HEADER_LENGTH}..{MAX_LENGTH}",
            got=length,
        )
    if length > len(data):
        raise RadiusLengthError(
            where=where,
            what="header length exceeds the datagram (truncated packet)",
            got=f"length {length} for a {len(data)}-octet datagram",
        )
    return length


def decode_packet(data: bytes, *, where: str = "radius packet") -> Packet:
    """Structure only (no authenticator check); octets past the header length are padding (RFC 2865 3)."""
    length = header_length(data, where)
    attrs = _decode_attributes(data, length, where)
    return Packet(code=data[0], identifier=data[1], authenticator=data[4:20], attributes=attrs)


def encode_attributes(attributes: tuple[Attribute, ...] | list[Attribute], *, where: str = "radius build") -> bytes:
    parts: list[bytes] = []
    for a in attributes:
        if not 0 <= a.type <= 255:
            raise RadiusAttributeError(where=where, what="attribute type must be 0..255", got=a.type)
        if len(a.value) > 253:
            raise RadiusAttributeError(
                where=f"{where} attribute {a.type}",
                what="value longer than 253 octets",
                got=f"{len(a.value)} octets",
            )
        if a.type == VENDOR_SPECIFIC and len(a.value) < 5:
            raise RadiusAttributeError(
                where=f"{where} attribute 26 (Vendor-Specific)",
                what="value needs a 4-octet vendor id and at least 1 octet of data",
                got=f"{len(a.value)} octets",
            )
        parts.append(bytes((a.type, len(a.value) + 2)) + a.value)
    return b"".join(parts)


def _header(code: int, identifier: int, body_length: int, where: str) -> bytes:
    if not 0 <= code <= 255:
        raise RadiusCodeError(where=where, what="code must be 0..255", got=code)
    if not 0 <= identifier <= 255:
        raise RadiusError(where=where, what="identifier must be 0..255", got=identifier)
    length = HEADER_LENGTH + body_length
    if length > MAX_LENGTH:
        raise RadiusLengthError(where=where, what=f"packet longer than {MAX_LENGTH} octets", got=length)
    return bytes((code, identifier, length >> 8, length & 0xFF))


def encode_packet(packet: Packet, *, where: str = "radius build") -> bytes:
    """The wire form of `packet` exactly as given (its authenticator is not recomputed)."""
    if len(packet.authenticator) != 16:
        raise RadiusLengthError(
            where=where, what="authenticator must be 16 octets", got=f"{len(packet.authenticator)} octets"
        )
    body = encode_attributes(packet.attributes, where=where)
    return _header(packet.code, packet.identifier, len(body), where) + packet.authenticator + body


def accounting_request_authenticator(head: bytes, body: bytes, secret: bytes) -> bytes:
    """RFC 2866 3: MD5(Code + Identifier + Length + 16 zero octets + attributes + secret)."""
    return hashlib.md5(head + _ZERO_AUTH + body + secret).digest()


def reply_authenticator(head: bytes, request_authenticator: bytes, body: bytes, secret: bytes) -> bytes:
    """RFC 2865 3 / RFC 2866 4.2: MD5(Code + Identifier + Length + request authenticator + attributes + secret)."""
    return hashlib.md5(head + request_authenticator + body + secret).digest()


def encode_accounting_request(
    identifier: int, attributes: tuple[Attribute, ...] | list[Attribute], secret: bytes
) -> bytes:
    where = "radius Accounting-Request build"
    body = encode_attributes(attributes, where=where)
    head = _header(Code.ACCOUNTING_REQUEST, identifier, len(body), where)
    return head + accounting_request_authenticator(head, body, secret) + body


def decode_accounting_request(data: bytes, secret: bytes) -> Packet:
    """A structurally valid Accounting-Request whose authenticator matches `secret`, or a typed error.

    decode_request does not come here: onepass.py walks the datagram once for this and the typed
    record together. This is the structure-only entry point (tests, tools, other RADIUS uses).
    """
    where = "radius Accounting-Request"
    # the common case inline; header_length names the exact problem otherwise
    length = (data[2] << 8) | data[3] if len(data) >= HEADER_LENGTH else 0
    if not HEADER_LENGTH <= length <= len(data) or length > MAX_LENGTH:
        length = header_length(data, where)
    if data[0] != 4:
        not_an_accounting_request(data)
    attrs = _decode_attributes(data, length, where)
    head = data[:4]
    expected = hashlib.md5(head + _ZERO_AUTH + data[HEADER_LENGTH:length] + secret).digest()
    if not hmac.compare_digest(expected, data[4:20]):
        authenticator_error(data)
    return tuple.__new__(Packet, (4, data[1], data[4:20], attrs))


def not_an_accounting_request(data: bytes) -> NoReturn:
    raise RadiusCodeError(
        where="radius Accounting-Request",
        what="not an Accounting-Request (code 4)",
        got=f"code {data[0]}",
        fix="send accounting to this port and authentication (1812) elsewhere",
    )


def authenticator_error(data: bytes) -> NoReturn:
    raise RadiusAuthenticatorError(
        where=f"radius Accounting-Request id {data[1]}",
        what="request authenticator does not match the shared secret",
        got=f"authenticator {data[4:8].hex()}...",
        fix="check that the NAS and the gateway use the same shared secret for this client",
    )


def encode_reply(
    code: int,
    identifier: int,
    request_authenticator: bytes,
    attributes: tuple[Attribute, ...] | list[Attribute],
    secret: bytes,
) -> bytes:
    """Any reply packet (Access-Accept, Accounting-Response, ...) with its Response Authenticator."""
    where = "radius reply build"
    if len(request_authenticator) != 16:
        raise RadiusLengthError(
            where=where,
            what="request authenticator must be 16 octets",
            got=f"{len(request_authenticator)} octets",
        )
    body = encode_attributes(attributes, where=where)
    head = _header(code, identifier, len(body), where)
    return head + reply_authenticator(head, request_authenticator, body, secret) + body


def encode_accounting_response(
    request: Packet, secret: bytes, attributes: tuple[Attribute, ...] | list[Attribute] = ()
) -> bytes:
    """The Accounting-Response to `request`; its Proxy-State attributes are echoed in order (RFC 2865 5.33)."""
    echoed = [a for a in request.attributes if a.type == PROXY_STATE]
    extra = [a for a in attributes if a.type != PROXY_STATE]
    return encode_reply(Code.ACCOUNTING_RESPONSE, request.identifier, request.authenticator, [*extra, *echoed], secret)


def decode_accounting_response(data: bytes, secret: bytes, request_authenticator: bytes) -> Packet:
    """An Accounting-Response whose Response Authenticator matches the request's, or a typed error."""
    where = "radius Accounting-Response"
    length = header_length(data, where)
    if data[0] != Code.ACCOUNTING_RESPONSE:
        raise RadiusCodeError(where=where, what="not an Accounting-Response (code 5)", got=f"code {data[0]}")
    attrs = _decode_attributes(data, length, where)
    expected = reply_authenticator(data[:4], request_authenticator, data[HEADER_LENGTH:length], secret)
    if not hmac.compare_digest(expected, data[4:20]):
        raise RadiusAuthenticatorError(
            where=f"{where} id {data[1]}",
            what="response authenticator does not match the request and shared secret",
            got=f"authenticator {data[4:8].hex()}...",
            fix="check the shared secret",
        )
    return Packet(code=data[0], identifier=data[1], authenticator=data[4:20], attributes=attrs)
