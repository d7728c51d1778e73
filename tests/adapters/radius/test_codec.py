"""The codec facade: verified requests, duplicate keys, responses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address

import pytest

from adapters.radius import (
    AccountingRecord,
    RetransmissionKey,
    SessionKey,
    build_accounting_request,
    build_accounting_response,
    decode_request,
)
from adapters.radius.packet import decode_accounting_response

SECRET = b"shared"
NOW = datetime(2026, 4, 1, 9, 0, 0, tzinfo=UTC)
SRC = ("192.0.2.10", 50000)


def test_retransmission_is_recognised_by_source_identifier_and_authenticator() -> None:
    data = build_accounting_request(9, AccountingRecord(status_type=1, session_id="S1"), SECRET)
    first = decode_request(data, secret=SECRET, now=NOW, source=SRC)
    again = decode_request(data, secret=SECRET, now=NOW + timedelta(seconds=3), source=SRC)
    assert first.retransmission_key == again.retransmission_key
    assert first.retransmission_key == RetransmissionKey(SRC, 9, data[4:20])
    other_port = decode_request(data, secret=SECRET, now=NOW, source=(SRC[0], 50001))
    assert other_port.retransmission_key != first.retransmission_key


def test_resent_event_with_new_delay_has_the_same_session_key() -> None:
    a = build_accounting_request(1, AccountingRecord(status_type=2, session_id="S1", nas_identifier="ap-1"), SECRET)
    b = build_accounting_request(
        2, AccountingRecord(status_type=2, session_id="S1", nas_identifier="ap-1", delay_time=10), SECRET
    )
    ra = decode_request(a, secret=SECRET, now=NOW, source=SRC)
    rb = decode_request(b, secret=SECRET, now=NOW + timedelta(seconds=10), source=SRC)
    assert ra.retransmission_key != rb.retransmission_key
    assert ra.session_key == rb.session_key == SessionKey("id:ap-1", "S1", 2, None)
    assert ra.event_time == rb.event_time == NOW


def test_session_key_nas_falls_back_to_ip_then_source_and_interims_differ_by_time() -> None:
    by_ip = AccountingRecord(status_type=3, session_id="S", session_time=60, nas_ip_address=IPv4Address("10.0.0.1"))
    r = decode_request(build_accounting_request(1, by_ip, SECRET), secret=SECRET, now=NOW, source=SRC)
    assert r.session_key == SessionKey("ip:10.0.0.1", "S", 3, 60)
    bare = AccountingRecord(status_type=7)
    r = decode_request(build_accounting_request(1, bare, SECRET), secret=SECRET, now=NOW, source=SRC)
    assert r.session_key == SessionKey("src:192.0.2.10", None, 7, None)


def test_response_verifies_against_the_request() -> None:
    data = build_accounting_request(200, AccountingRecord(status_type=1), SECRET)
    req = decode_request(data, secret=SECRET, now=NOW, source=SRC)
    for source in (req, req.packet):
        resp = build_accounting_response(source, SECRET)
        decoded = decode_accounting_response(resp, SECRET, req.packet.authenticator)
        assert (decoded.code, decoded.identifier, decoded.attributes) == (5, 200, ())
        assert len(resp) == 20


def test_naive_now_is_refused() -> None:
    data = build_accounting_request(1, AccountingRecord(status_type=1), SECRET)
    with pytest.raises(ValueError, match=r"^decode_request: now must be timezone-aware, got a naive datetime$"):
        decode_request(data, secret=SECRET, now=datetime(2026, 1, 1), source=SRC)
