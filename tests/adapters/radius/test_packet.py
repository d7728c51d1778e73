"""Packet structure: every malformed length or attribute is a typed error with the exact message."""

from __future__ import annotations

import pytest

from adapters.radius import Attribute, Code, Packet
from adapters.radius.errors import (
    RadiusAttributeError,
    RadiusAuthenticatorError,
    RadiusCodeError,
    RadiusError,
    RadiusLengthError,
)
from adapters.radius.packet import (
    decode_accounting_request,
    decode_accounting_response,
    decode_packet,
    encode_accounting_request,
    encode_accounting_response,
    encode_attributes,
    encode_packet,
    encode_reply,
)

SECRET = b"testing123"


def _request(*attrs: Attribute, identifier: int = 7) -> bytes:
    return encode_accounting_request(identifier, list(attrs) or [Attribute(40, b"\x00\x00\x00\x01")], SECRET)


def _with_length(data: bytes, length: int) -> bytes:
    return data[:2] + length.to_bytes(2, "big") + data[4:]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x04\x01\x00", "radius packet: datagram shorter than the 20-octet header, got 3 octets"),
        (_with_length(bytes(20), 19), "radius packet: header length must be 20..4096, got 19"),
        (_with_length(bytes(20), 4097), "radius packet: header length must be 20..4096, got 4097"),
        (
            _with_length(bytes(20), 30),
            "radius packet: header length exceeds the datagram (truncated packet), got length 30 for a 20-octet datagram",
        ),
    ],
)
def test_bad_lengths(data: bytes, message: str) -> None:
    with pytest.raises(RadiusLengthError) as err:
        decode_packet(data)
    assert str(err.value) == message
    assert err.value.code == "radius_bad_length"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"\x01",
            "radius packet attribute at offset 20: truncated attribute header (1 octet left), got type 1; the sender built a malformed packet",
        ),
        (b"\x01\x00", "radius packet attribute 1 at offset 20: attribute length must be at least 2, got 0"),
        (b"\x01\x01", "radius packet attribute 1 at offset 20: attribute length must be at least 2, got 1"),
        (
            b"\x01\x05ab",
            "radius packet attribute 1 at offset 20: attribute overflows the packet length 24, got length 5",
        ),
        (
            b"\x1a\x06\x00\x00\x00\x09",
            "radius packet attribute 26 (Vendor-Specific) at offset 20: Vendor-Specific needs a 4-octet vendor id and data (length >= 7), got length 6",
        ),
    ],
)
def test_bad_attributes(body: bytes, message: str) -> None:
    data = bytes([4, 1]) + (20 + len(body)).to_bytes(2, "big") + bytes(16) + body
    with pytest.raises(RadiusAttributeError) as err:
        decode_packet(data)
    assert str(err.value) == message
    assert err.value.code == "radius_bad_attribute"


def test_octets_past_the_header_length_are_padding() -> None:
    data = _request()
    assert decode_accounting_request(data + b"\x00junk", SECRET) == decode_accounting_request(data, SECRET)


def test_request_authenticator_is_verified() -> None:
    data = bytearray(_request())
    data[-1] ^= 1  # a flipped attribute bit
    with pytest.raises(RadiusAuthenticatorError) as err:
        decode_accounting_request(bytes(data), SECRET)
    assert str(err.value).startswith(
        "radius Accounting-Request id 7: request authenticator does not match the shared secret"
    )


def test_wrong_code_for_an_accounting_port() -> None:
    data = bytes([1, 3, 0, 20]) + bytes(16)
    with pytest.raises(RadiusCodeError) as err:
        decode_accounting_request(data, SECRET)
    assert str(err.value) == (
        "radius Accounting-Request: not an Accounting-Request (code 4), got code 1; "
        "send accounting to this port and authentication (1812) elsewhere"
    )
    with pytest.raises(RadiusCodeError, match=r"not an Accounting-Response \(code 5\), got code 1$"):
        decode_accounting_response(data, SECRET, bytes(16))


def test_accounting_request_length_errors_come_from_the_header_check() -> None:
    with pytest.raises(RadiusLengthError, match=r"^radius Accounting-Request: datagram shorter"):
        decode_accounting_request(b"\x04", SECRET)
    with pytest.raises(RadiusAttributeError, match=r"^radius Accounting-Request attribute 40 at offset 20"):
        decode_accounting_request(bytes([4, 0, 0, 22]) + bytes(16) + b"\x28\x01", SECRET)


def test_response_round_trip_and_proxy_state_echo() -> None:
    request = decode_accounting_request(
        _request(Attribute(40, b"\x00\x00\x00\x02"), Attribute(33, b"hop1"), Attribute(33, b"hop2")), SECRET
    )
    data = encode_accounting_response(request, SECRET, [Attribute(33, b"ignored"), Attribute(18, b"ok")])
    response = decode_accounting_response(data, SECRET, request.authenticator)
    assert response.code == Code.ACCOUNTING_RESPONSE
    assert response.identifier == request.identifier
    assert response.attributes == (Attribute(18, b"ok"), Attribute(33, b"hop1"), Attribute(33, b"hop2"))
    with pytest.raises(RadiusAuthenticatorError) as err:
        decode_accounting_response(data, b"other", request.authenticator)
    assert str(err.value).endswith(
        "response authenticator does not match the request and shared secret, "
        f"got authenticator {data[4:8].hex()}...; check the shared secret"
    )


def test_vendor_specific_is_kept_raw_with_vendor_id() -> None:
    vsa = Attribute(26, (14122).to_bytes(4, "big") + b"\x01\x05abc")
    p = decode_accounting_request(_request(Attribute(40, b"\x00\x00\x00\x03"), vsa), SECRET)
    (kept,) = p.vendor_attributes()
    assert kept == vsa
    assert kept.vendor_id == 14122
    assert kept.vendor_data == b"\x01\x05abc"
    assert Attribute(1, b"x").vendor_id is None
    assert Attribute(1, b"x").vendor_data == b""
    assert p.get_all(26) == (vsa.value,)
    assert p.get(99) is None


def test_reprs_hide_personal_attributes() -> None:
    assert repr(Attribute(1, b"nemo@example.jp")) == "Attribute(type=1, length=15)"
    assert repr(Attribute(31, b"AA-BB-CC-DD-EE-FF")) == "Attribute(type=31, length=17)"
    assert repr(Attribute(26, b"\x00\x00\x37\x2a\x01")) == "Attribute(type=26, vendor_id=14122, length=5)"
    assert repr(Attribute(44, b"S1")) == "Attribute(type=44, value=b'S1')"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: encode_attributes([Attribute(256, b"")]),
            RadiusAttributeError,
            "radius build: attribute type must be 0..255, got 256",
        ),
        (
            lambda: encode_attributes([Attribute(1, bytes(254))]),
            RadiusAttributeError,
            "radius build attribute 1: value longer than 253 octets, got 254 octets",
        ),
        (
            lambda: encode_attributes([Attribute(26, b"\x00\x00\x00\x01")]),
            RadiusAttributeError,
            "radius build attribute 26 (Vendor-Specific): value needs a 4-octet vendor id and at least 1 octet of data, got 4 octets",
        ),
        (
            lambda: encode_packet(Packet(code=4, identifier=1, authenticator=b"short", attributes=())),
            RadiusLengthError,
            "radius build: authenticator must be 16 octets, got 5 octets",
        ),
        (
            lambda: encode_packet(Packet(code=256, identifier=1, authenticator=bytes(16), attributes=())),
            RadiusCodeError,
            "radius build: code must be 0..255, got 256",
        ),
        (
            lambda: encode_packet(Packet(code=4, identifier=-1, authenticator=bytes(16), attributes=())),
            RadiusError,
            "radius build: identifier must be 0..255, got -1",
        ),
        (
            lambda: encode_packet(
                Packet(code=4, identifier=1, authenticator=bytes(16), attributes=(Attribute(1, bytes(253)),) * 17)
            ),
            RadiusLengthError,
            "radius build: packet longer than 4096 octets, got 4355",
        ),
        (
            lambda: encode_reply(5, 1, b"", [], SECRET),
            RadiusLengthError,
            "radius reply build: request authenticator must be 16 octets, got 0 octets",
        ),
    ],
)
def test_build_errors(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as err:
        call()  # type: ignore[operator]
    assert str(err.value) == message
    assert type(err.value) is error
