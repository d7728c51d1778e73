"""Golden vectors: RFC 2865 section 7 examples and a radclient capture, decoded and re-encoded byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address

import pytest

from adapters.radius import AcctStatusType, Attribute, Code, Packet, decode_request
from adapters.radius.errors import RadiusAuthenticatorError
from adapters.radius.packet import decode_packet, encode_packet, encode_reply
from tests.adapters.radius import vectors as v


def test_rfc2865_7_1_access_request_structure() -> None:
    p = decode_packet(v.RFC2865_7_1_ACCESS_REQUEST)
    assert p.code == Code.ACCESS_REQUEST
    assert p.identifier == 0
    assert p.authenticator == bytes.fromhex("0f403f9473978057bd83d5cb98f4227a")
    assert [a.type for a in p.attributes] == [1, 2, 4, 5]
    assert p.get(1) == b"nemo"
    assert IPv4Address(p.get(4) or b"") == IPv4Address("192.168.1.16")
    assert p.get(5) == (3).to_bytes(4, "big")
    assert encode_packet(p) == v.RFC2865_7_1_ACCESS_REQUEST


def test_rfc2865_7_1_access_accept_response_authenticator() -> None:
    # Same formula as the Accounting-Response authenticator (RFC 2866 3): MD5(head + request auth + attrs + secret).
    request = decode_packet(v.RFC2865_7_1_ACCESS_REQUEST)
    attrs = [Attribute(6, (1).to_bytes(4, "big")), Attribute(15, bytes(4)), Attribute(14, bytes([192, 168, 1, 3]))]
    built = encode_reply(Code.ACCESS_ACCEPT, request.identifier, request.authenticator, attrs, v.RFC2865_SECRET)
    assert built == v.RFC2865_7_1_ACCESS_ACCEPT


def test_rfc2865_7_2_and_7_3_structures_round_trip() -> None:
    chap = decode_packet(v.RFC2865_7_2_ACCESS_REQUEST)
    assert (chap.code, chap.identifier) == (1, 1)
    assert chap.get(1) == b"flopsy"
    assert [a.type for a in chap.attributes] == [1, 3, 4, 5, 6, 7]
    assert encode_packet(chap) == v.RFC2865_7_2_ACCESS_REQUEST
    challenge = decode_packet(v.RFC2865_7_3_ACCESS_CHALLENGE)
    assert (challenge.code, challenge.identifier) == (11, 2)
    assert challenge.get(18) == b"Challenge 32769430.  Enter response at prompt."
    assert challenge.get(24) == b"32769430"
    assert encode_packet(challenge) == v.RFC2865_7_3_ACCESS_CHALLENGE


def test_radclient_capture_decodes_to_typed_record() -> None:
    now = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    req = decode_request(v.RADCLIENT_START, secret=v.RADCLIENT_SECRET, now=now, source=("192.0.2.1", 40000))
    r = req.record
    assert r.status is AcctStatusType.START
    assert r.user_name == "nemo"
    assert r.client_mac is not None and r.client_mac.value == "aa:bb:cc:dd:ee:ff"
    assert r.ap_mac is not None and r.ap_mac.value == "00:11:22:33:44:55"
    assert r.ssid == "FreeWiFi"
    assert r.session_id == "0123ABCD"
    assert r.nas_ip_address == IPv4Address("192.0.2.1")
    assert r.input_octets == (1 << 32) + 5
    assert r.delay_time == 5
    assert r.event_timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert req.event_time == datetime(2025, 12, 31, 23, 59, 55, tzinfo=UTC)
    assert req.packet.identifier == 0xD0


def test_radclient_capture_with_wrong_secret_is_rejected() -> None:
    with pytest.raises(RadiusAuthenticatorError) as err:
        decode_request(v.RADCLIENT_START, secret=b"wrong", now=datetime.now(UTC), source=("192.0.2.1", 1))
    assert str(err.value) == (
        "radius Accounting-Request id 208: request authenticator does not match the shared secret, "
        "got authenticator 6f072531...; check that the NAS and the gateway use the same shared secret for this client"
    )
    assert err.value.code == "radius_bad_authenticator"


def test_packet_is_a_value() -> None:
    p = decode_packet(v.RFC2865_7_1_ACCESS_REQUEST)
    assert p == Packet(code=1, identifier=0, authenticator=p.authenticator, attributes=p.attributes)
