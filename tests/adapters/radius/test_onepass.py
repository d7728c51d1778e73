"""decode_request's one-pass walk: the same packets, records and errors as the two-step path it replaces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.radius import AccountingRecord, Attribute, build_accounting_request, decode_request
from adapters.radius.attributes import _MEMO_MAX, _Memo, record_from_attributes
from adapters.radius.errors import (
    RadiusAttributeError,
    RadiusAuthenticatorError,
    RadiusCodeError,
    RadiusError,
    RadiusMissingAttribute,
)
from adapters.radius.packet import (
    accounting_request_authenticator,
    decode_accounting_request,
    encode_accounting_request,
)

SECRET = b"shared"
NOW = datetime(2026, 4, 1, 9, 0, 0, tzinfo=UTC)
SRC = ("192.0.2.10", 50000)
TYPED = (1, 4, 8, 30, 31, 32, 40, 41, 42, 43, 44, 46, 49, 52, 53, 55)


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def signed(head: bytes, body: bytes, secret: bytes = SECRET) -> bytes:
    """A datagram with a valid Request Authenticator over whatever `body` holds, malformed or not."""
    return head + accounting_request_authenticator(head, body, secret) + body


def two_step(data: bytes, secret: bytes) -> tuple[object, ...]:
    """What decode_request did before the merge: structure + authenticator, then the typed record."""
    try:
        packet = decode_accounting_request(data, secret)
        return ("ok", packet, record_from_attributes(packet.attributes))
    except RadiusError as exc:
        return ("error", type(exc), str(exc))


def one_pass(data: bytes, secret: bytes) -> tuple[object, ...]:
    try:
        request = decode_request(data, secret=secret, now=NOW, source=SRC)
        return ("ok", request.packet, request.record)
    except RadiusError as exc:
        return ("error", type(exc), str(exc))


def error_of(data: bytes) -> tuple[type[RadiusError], str]:
    with pytest.raises(RadiusError) as err:
        decode_request(data, secret=SECRET, now=NOW, source=SRC)
    assert (type(err.value), str(err.value)) == two_step(data, SECRET)[1:]
    return type(err.value), str(err.value)


def test_wrong_code_is_refused_before_the_walk() -> None:
    assert error_of(signed(bytes([1, 3, 0, 26]), b"\x28\x06" + u32(1))) == (
        RadiusCodeError,
        "radius Accounting-Request: not an Accounting-Request (code 4), got code 1; "
        "send accounting to this port and authentication (1812) elsewhere",
    )


@pytest.mark.parametrize(
    ("body", "padding", "message"),
    [
        # the length octet lies past the datagram: read without a bounds test, it raises IndexError
        (
            b"\x28\x06" + u32(1) + b"\x2c",
            b"",
            "radius Accounting-Request attribute at offset 26: truncated attribute header (1 octet left), got type 44; the sender built a malformed packet",
        ),
        # ... or it lies in the padding past the header length
        (
            b"\x28\x06" + u32(1) + b"\x2c",
            b"\x09\x00",
            "radius Accounting-Request attribute at offset 26: truncated attribute header (1 octet left), got type 44; the sender built a malformed packet",
        ),
        (
            b"\x28\x01" + u32(1),
            b"",
            "radius Accounting-Request attribute 40 at offset 20: attribute length must be at least 2, got 1",
        ),
        (
            b"\x28\x06" + u32(1) + b"\x2c\x09ab",
            b"",
            "radius Accounting-Request attribute 44 at offset 26: attribute overflows the packet length 30, got length 9",
        ),
        (
            b"\x28\x06" + u32(1) + b"\x1a\x06" + u32(9),
            b"",
            "radius Accounting-Request attribute 26 (Vendor-Specific) at offset 26: Vendor-Specific needs a 4-octet vendor id and data (length >= 7), got length 6",
        ),
    ],
)
def test_structural_errors_are_the_packet_layer_ones(body: bytes, padding: bytes, message: str) -> None:
    head = bytes([4, 7]) + (20 + len(body)).to_bytes(2, "big")
    assert error_of(signed(head, body) + padding) == (RadiusAttributeError, message)


def test_a_typed_problem_waits_for_structure_and_authenticator() -> None:
    duplicate = b"\x28\x06" + u32(1) + b"\x2c\x03a" + b"\x2c\x03b"
    # a structural error later in the packet wins over the duplicate seen first
    broken = duplicate + b"\x01\x01"
    head = bytes([4, 7]) + (20 + len(broken)).to_bytes(2, "big")
    assert error_of(signed(head, broken)) == (
        RadiusAttributeError,
        "radius Accounting-Request attribute 1 at offset 32: attribute length must be at least 2, got 1",
    )
    # so does a wrong authenticator
    head = bytes([4, 7]) + (20 + len(duplicate)).to_bytes(2, "big")
    assert error_of(signed(head, duplicate, b"other"))[0] is RadiusAuthenticatorError
    # an authentic, well-formed packet then gets the typed layer's exact message
    assert error_of(signed(head, duplicate)) == (
        RadiusAttributeError,
        "radius accounting attributes Acct-Session-Id (44): attribute appears more than once, "
        "got a second occurrence; RFC 2866 allows it at most once per request",
    )


@pytest.mark.parametrize(
    ("attributes", "error", "message"),
    [
        (
            (Attribute(1, b"nemo"),),
            RadiusMissingAttribute,
            "radius accounting attributes Acct-Status-Type (40): mandatory attribute is missing, got none; RFC 2866 5.1: every Accounting-Request carries one",
        ),
        (
            (Attribute(40, u32(1)), Attribute(4, b"\x0a\x00\x00")),
            RadiusAttributeError,
            "radius accounting attributes NAS-IP-Address (4): value must be 4 octets, got 3 octets",
        ),
        # after a fault the walk stops typing but still checks the rest of the structure
        (
            (Attribute(40, b"\x01"), Attribute(40, u32(1)), Attribute(26, u32(9) + b"x")),
            RadiusAttributeError,
            "radius accounting attributes Acct-Status-Type (40): value must be 4 octets, got 1 octets",
        ),
    ],
)
def test_typed_errors_read_as_before(attributes: tuple[Attribute, ...], error: type[RadiusError], message: str) -> None:
    assert error_of(encode_accounting_request(3, attributes, SECRET)) == (error, message)


def test_vendor_specific_and_unknown_attributes_and_non_utf8_text() -> None:
    vsa = Attribute(26, u32(14122) + b"\x01\x05abc")
    attrs = (Attribute(40, u32(3)), vsa, Attribute(99, b"?"), Attribute(1, b"\xff\xfeab"), Attribute(33, b"hop"), vsa)
    request = decode_request(encode_accounting_request(3, attrs, SECRET), secret=SECRET, now=NOW, source=SRC)
    assert request.packet.attributes == attrs
    assert request.record.vendor_attributes == (vsa, vsa)
    assert request.record.user_name == "\\xff\\xfeab"


@pytest.mark.parametrize(("delay", "seconds"), [(None, 0), (0, 0), (5, 5), (63, 63), (64, 64), (3600, 3600)])
def test_event_time_for_short_and_long_delays(delay: int | None, seconds: int) -> None:
    data = build_accounting_request(1, AccountingRecord(status_type=1, delay_time=delay), SECRET)
    assert decode_request(data, secret=SECRET, now=NOW, source=SRC).event_time == NOW - timedelta(seconds=seconds)


def test_memo_is_bounded_and_keeps_answering() -> None:
    memo = _Memo(bytes.hex)
    for n in range(_MEMO_MAX + 10):
        assert memo[u32(n)] == f"{n:08x}"
    assert len(memo) <= _MEMO_MAX
    assert memo[u32(1)] == "00000001"


def test_addresses_stay_right_across_memo_clears() -> None:
    for n in range(0, _MEMO_MAX + 100, 7):
        record = AccountingRecord(
            status_type=3, framed_ip_address=IPv4Address(n), nas_ip_address=IPv4Address("192.0.2.7")
        )
        decoded = decode_request(build_accounting_request(n % 256, record, SECRET), secret=SECRET, now=NOW, source=SRC)
        assert decoded.record == record


attribute = st.builds(
    Attribute,
    st.sampled_from(TYPED) | st.sampled_from((26, 33)) | st.integers(0, 255),
    st.binary(max_size=3).map(lambda b: b * 2)
    | st.integers(0, 2**32 - 1).map(u32)
    | st.sampled_from((b"", b"\xff", "é".encode())),
)


@settings(max_examples=400)
@given(st.lists(attribute, max_size=14), st.booleans(), st.binary(max_size=3), st.sampled_from((SECRET, b"other")))
def test_same_outcome_as_the_two_step_path_for_signed_packets(
    attrs: list[Attribute], status: bool, padding: bytes, key: bytes
) -> None:
    # The first attribute is usually a valid Acct-Status-Type so that many packets decode fully.
    attrs = [Attribute(40, u32(2)), *attrs] if status else attrs
    # Vendor-Specific values shorter than 5 octets cannot be built; the structural test covers them.
    attrs = [a if a.type != 26 or len(a.value) >= 5 else Attribute(26, u32(9) + a.value + b"x") for a in attrs]
    data = encode_accounting_request(1, attrs, SECRET) + padding
    assert one_pass(data, key) == two_step(data, key)


@settings(max_examples=400)
@given(st.binary(max_size=80), st.integers(0, 3))
def test_same_outcome_as_the_two_step_path_for_arbitrary_bodies(body: bytes, extra: int) -> None:
    head = bytes([4, 1]) + (20 + len(body)).to_bytes(2, "big")
    data = signed(head, body) + bytes(extra)
    assert one_pass(data, SECRET) == two_step(data, SECRET)
