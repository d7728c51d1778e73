"""Signed home-visit QR payloads: genuine codes verify, forged and edited ones never do."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.scanner import visit_qr
from adapters.scanner.codec import VisitQrError
from adapters.scanner.visit_qr import VisitPoint, encode_visit_qr, verify_visit_qr

KEY = bytes(range(32))
KEYS = {"K1": KEY, "K2": b"\xa5" * 32}
QR_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def test_hmac_primitive_matches_rfc4231_test_case_1() -> None:
    # RFC 4231 section 4.2: key 0x0b * 20, data "Hi There",
    # HMAC-SHA-256 = b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7
    expected = base64.b32encode(bytes.fromhex("b0344c61d8db38535ca8afceaf0bf12b")).decode().rstrip("=")
    assert visit_qr._mac(b"\x0b" * 20, "Hi There") == expected


def test_payload_shape() -> None:
    payload = encode_visit_qr("P-000123", "K1", KEY)
    assert re.fullmatch(r"VQ1\.K1\.P-000123\.[A-Z2-7]{26}", payload)
    assert set(payload) <= QR_ALPHANUMERIC  # stays in the compact QR alphanumeric mode
    assert verify_visit_qr(payload, KEYS) == VisitPoint(point_id="P-000123", key_id="K1", version=1)


def test_rotated_keys_verify_under_their_own_id() -> None:
    old = encode_visit_qr("P-1", "K1", KEY)
    new = encode_visit_qr("P-1", "K2", KEYS["K2"])
    assert old != new
    assert verify_visit_qr(old, KEYS).key_id == "K1"
    assert verify_visit_qr(new, KEYS).key_id == "K2"


def test_code_copied_onto_another_point_id_is_rejected() -> None:
    genuine = encode_visit_qr("P-000123", "K1", KEY)
    forged = genuine.replace("P-000123", "P-000124")
    with pytest.raises(VisitQrError) as err:
        verify_visit_qr(forged, KEYS)
    assert (err.value.code, str(err.value)) == (
        "visit_qr_signature",
        "visit QR: signature does not match (forged or edited code), got key 'K1'; "
        "report the code; do not record the visit",
    )
    assert err.value.params == {"key_id": "K1"}


def test_signature_under_another_key_id_is_rejected() -> None:
    genuine = encode_visit_qr("P-1", "K1", KEY)
    with pytest.raises(VisitQrError) as err:
        verify_visit_qr(genuine.replace("K1", "K2", 1), KEYS)
    assert err.value.code == "visit_qr_signature"


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("VQ2.K1.P-1.AAAAAAAAAAAAAAAAAAAAAAAAAA", "visit_qr_version",
         "visit QR: unsupported format version, got 'VQ2'; update the gateway or reprint the code"),
        ("https://example.com/", "visit_qr_format",
         "visit QR: not a visit-point code, got 20 characters; scan the programme's visit QR code"),
        ("VQ1.K1.p-1.AAAAAAAAAAAAAAAAAAAAAAAAAA", "visit_qr_format",
         "visit QR: not a visit-point code, got 37 characters; scan the programme's visit QR code"),
        ("VQ1.K1.P-1.AAAAAAAAAAAAAAAAAAAAAAAAA", "visit_qr_format",
         "visit QR: not a visit-point code, got 36 characters; scan the programme's visit QR code"),
        ("VQ1.K9.P-1.AAAAAAAAAAAAAAAAAAAAAAAAAA", "visit_qr_key_unknown",
         "visit QR: unknown key id, got 'K9'; "
         "add the key to the gateway's visit-QR keys or reprint with a current key"),
    ],
)  # fmt: skip
def test_verify_errors(text: str, code: str, message: str) -> None:
    with pytest.raises(VisitQrError) as err:
        verify_visit_qr(text, KEYS)
    assert (err.value.code, str(err.value)) == (code, message)


def test_weak_keys_are_refused_on_both_sides() -> None:
    with pytest.raises(VisitQrError) as err:
        encode_visit_qr("P-1", "K1", b"short")
    assert (err.value.code, str(err.value)) == (
        "visit_qr_key_weak",
        "visit QR: key 'K1' is shorter than 16 bytes, got 5 bytes; generate a 32-byte random key",
    )
    payload = encode_visit_qr("P-1", "K1", KEY)
    with pytest.raises(VisitQrError) as err:
        verify_visit_qr(payload, {"K1": b"short"})
    assert err.value.code == "visit_qr_key_weak"


def test_encode_rejects_ids_outside_the_format() -> None:
    with pytest.raises(VisitQrError) as err:
        encode_visit_qr("P-1", "k1", KEY)
    assert str(err.value) == "visit QR: key id must be 1-8 of 0-9 A-Z, got 'k1'"
    with pytest.raises(VisitQrError) as err:
        encode_visit_qr("P.1", "K1", KEY)
    assert str(err.value) == "visit QR: point id must be 1-32 of 0-9 A-Z -, got 3 characters"


point_ids = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=32)
key_ids = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)


@settings(max_examples=200)
@given(point_id=point_ids, key_id=key_ids, key=st.binary(min_size=16, max_size=64))
def test_encode_then_verify_round_trips(point_id: str, key_id: str, key: bytes) -> None:
    payload = encode_visit_qr(point_id, key_id, key)
    assert verify_visit_qr(payload, {key_id: key}) == VisitPoint(point_id=point_id, key_id=key_id)


@settings(max_examples=300)
@given(point_id=point_ids, data=st.data())
def test_every_single_character_edit_is_rejected(point_id: str, data: st.DataObject) -> None:
    payload = encode_visit_qr(point_id, "K1", KEY)
    index = data.draw(st.integers(0, len(payload) - 1))
    new = data.draw(st.sampled_from(sorted(QR_ALPHANUMERIC)).filter(lambda c: c != payload[index]))
    with pytest.raises(VisitQrError):
        verify_visit_qr(payload[:index] + new + payload[index + 1 :], KEYS)


@settings(max_examples=300)
@given(text=st.text(max_size=80) | st.from_regex(r"VQ1\.K[12]\.[A-Z0-9-]{1,8}\.[A-Z2-7]{26}", fullmatch=True))
def test_arbitrary_text_raises_only_visit_qr_errors(text: str) -> None:
    with pytest.raises(VisitQrError):
        verify_visit_qr(text, KEYS)
