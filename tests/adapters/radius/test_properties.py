"""Property tests: build -> parse round-trips for every codec, and arbitrary input only raises typed errors."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.radius import AccountingRecord, Attribute, Packet, build_accounting_request, decode_request
from adapters.radius.attributes import record_from_attributes, record_to_attributes
from adapters.radius.errors import MacAddressError, RadiusError
from adapters.radius.mac import normalize_mac, split_called_station_id
from adapters.radius.packet import (
    decode_accounting_request,
    decode_accounting_response,
    decode_packet,
    encode_accounting_request,
    encode_accounting_response,
    encode_packet,
)

NOW = datetime(2026, 4, 1, tzinfo=UTC)
u32 = st.integers(0, 2**32 - 1)
text = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 253)
ip = st.builds(IPv4Address, u32)
secret = st.binary(min_size=1, max_size=32)


def attribute() -> st.SearchStrategy[Attribute]:
    plain = st.builds(Attribute, st.integers(0, 255).filter(lambda t: t != 26), st.binary(max_size=40))
    vsa = st.builds(
        lambda vid, data: Attribute(26, vid.to_bytes(4, "big") + data), u32, st.binary(min_size=1, max_size=30)
    )
    return plain | vsa


records = st.builds(
    AccountingRecord,
    status_type=u32,
    user_name=st.none() | text,
    calling_station_id=st.none() | text,
    called_station_id=st.none() | text,
    nas_ip_address=st.none() | ip,
    nas_identifier=st.none() | text,
    session_id=st.none() | text,
    session_time=st.none() | u32,
    input_octets=st.none() | st.integers(0, 2**64 - 1),
    output_octets=st.none() | st.integers(0, 2**64 - 1),
    terminate_cause=st.none() | u32,
    delay_time=st.none() | u32,
    event_timestamp=st.none() | st.builds(lambda s: datetime.fromtimestamp(s, UTC), u32),
    framed_ip_address=st.none() | ip,
    vendor_attributes=st.lists(
        st.builds(lambda vid, d: Attribute(26, vid.to_bytes(4, "big") + d), u32, st.binary(min_size=1, max_size=20)),
        max_size=3,
    ).map(tuple),
)


@settings(max_examples=150)
@given(
    st.integers(0, 255), st.integers(0, 255), st.binary(min_size=16, max_size=16), st.lists(attribute(), max_size=12)
)
def test_packet_round_trip(code: int, identifier: int, auth: bytes, attrs: list[Attribute]) -> None:
    p = Packet(code=code, identifier=identifier, authenticator=auth, attributes=tuple(attrs))
    assert decode_packet(encode_packet(p)) == p


@settings(max_examples=150)
@given(st.integers(0, 255), st.lists(attribute(), max_size=12), secret, st.lists(attribute(), max_size=4))
def test_accounting_request_and_response_round_trip(
    identifier: int, attrs: list[Attribute], key: bytes, extra: list[Attribute]
) -> None:
    data = encode_accounting_request(identifier, attrs, key)
    request = decode_accounting_request(data, key)
    assert (request.identifier, request.attributes) == (identifier, tuple(attrs))
    response = decode_accounting_response(encode_accounting_response(request, key, extra), key, request.authenticator)
    assert response.identifier == identifier
    assert [a for a in response.attributes if a.type == 33] == [a for a in attrs if a.type == 33]


@settings(max_examples=200)
@given(records, secret, st.integers(0, 255))
def test_record_round_trip(record: AccountingRecord, key: bytes, identifier: int) -> None:
    assert record_from_attributes(record_to_attributes(record)) == record
    decoded = decode_request(build_accounting_request(identifier, record, key), secret=key, now=NOW, source=("h", 1))
    assert decoded.record == record


@settings(max_examples=100)
@given(
    st.binary(min_size=6, max_size=6),
    st.sampled_from(["{}:{}:{}:{}:{}:{}", "{}-{}-{}-{}-{}-{}", "{}{}.{}{}.{}{}", "{}{}{}{}{}{}", "{}{}{}-{}{}{}"]),
    st.booleans(),
    st.none() | st.text(max_size=20),
)
def test_mac_spellings_round_trip(raw: bytes, form: str, upper: bool, ssid: str | None) -> None:
    spelled = form.format(*(f"{b:02x}" for b in raw))
    spelled = spelled.upper() if upper else spelled
    expected = ":".join(f"{b:02x}" for b in raw)
    assert normalize_mac(spelled) == expected
    ap, got_ssid = split_called_station_id(spelled + ("" if ssid is None else ":" + ssid))
    assert ap is not None and ap.value == expected
    # the whole Called-Station-Id is stripped, so trailing blanks of an SSID go too
    assert got_ssid == (None if ssid is None else ssid.rstrip() or None)


@settings(max_examples=400)
@given(st.binary(max_size=300), secret)
def test_arbitrary_datagrams_raise_only_typed_errors(data: bytes, key: bytes) -> None:
    for decode in (
        lambda: decode_packet(data),
        lambda: decode_accounting_request(data, key),
        lambda: decode_accounting_response(data, key, bytes(16)),
        lambda: decode_request(data, secret=key, now=NOW, source=("h", 1)),
    ):
        with contextlib.suppress(RadiusError):
            decode()


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=8)), max_size=8), secret)
def test_signed_but_malformed_attributes_raise_only_typed_errors(
    raw_attrs: list[tuple[int, bytes]], key: bytes
) -> None:
    # Correctly signed packets whose typed attributes have arbitrary sizes and repeats.
    attrs = [Attribute(t if t != 26 else 25, v) for t, v in raw_attrs]
    data = encode_accounting_request(1, attrs, key)
    with contextlib.suppress(RadiusError):
        decode_request(data, secret=key, now=NOW, source=("h", 1))


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_arbitrary_text_into_mac_parsers(value: str) -> None:
    with contextlib.suppress(MacAddressError):
        normalize_mac(value)
    split_called_station_id(value)
