"""verify_bundle against what a platform (or whoever sits on its path) may send: only BundleRefused ever escapes.

The bytes come from the network, so every malformed, forged or tampered bundle must end as a refusal
the fleet service records (with its stable code), never as another exception that would stop the
service's tick; and nothing is accepted but exactly what the pinned key signed for this gateway.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.fleet import remote
from gateway.fleet.remote import BUNDLE_FORMAT, MAX_BUNDLE_BYTES, Bundle, BundleRefused, sign_bundle, verify_bundle

KEY = Ed25519PrivateKey.generate()
PINNED = remote.public_key_b64(KEY)
GATEWAY = "gw-fleet"
ISSUED = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
CODES = {"bad_format", "bad_signature", "wrong_gateway", "replayed"}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
b64_bytes = st.binary(max_size=96).map(lambda b: base64.b64encode(b).decode("ascii"))
serials = st.integers(min_value=-(2**70), max_value=2**70)


def refused(data: bytes, last_serial: int = 0) -> BundleRefused:
    """The refusal `data` gets; any other exception fails the test as it would stop the fleet service's tick."""
    with pytest.raises(BundleRefused) as info:
        verify_bundle(data, public_key=PINNED, gateway=GATEWAY, last_serial=last_serial)
    assert info.value.code in CODES
    return info.value


def outcome(data: bytes, last_serial: int = 0) -> Bundle | BundleRefused:
    """The bundle accepted or the refusal; any other exception fails the test."""
    try:
        return verify_bundle(data, public_key=PINNED, gateway=GATEWAY, last_serial=last_serial)
    except BundleRefused as exc:
        return exc


def signed(payload: bytes, *, fmt: Any = BUNDLE_FORMAT) -> bytes:
    """A bundle whose signature over `payload` holds, whatever the payload says."""
    doc = {
        "format": fmt,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signature": base64.b64encode(KEY.sign(payload)).decode("ascii"),
    }
    return json.dumps(doc).encode()


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_refused(data: bytes) -> None:
    refused(data)


@FUZZ
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "format": st.just(BUNDLE_FORMAT) | json_values,
                "payload": b64_bytes | json_values,
                "signature": b64_bytes | json_values,
            },
        ),
    )
)
def test_arbitrary_json_documents_are_refused(doc: Any) -> None:
    # no signature by the pinned key is in here: whatever its shape, the document is refused
    refused(json.dumps(doc).encode())


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=128),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {},
            optional={
                "gateway": st.just(GATEWAY) | json_values,
                "serial": serials | json_values | st.just(1e400) | st.just("9" * 5000),
                "issued_at": json_values,
                "config": json_values,
            },
        ).map(lambda d: json.dumps(d).encode()),
    ),
    serials,
)
def test_any_payload_the_key_signed_is_refused_or_read_whole(payload: bytes, last_serial: int) -> None:
    bundle = outcome(signed(payload), last_serial)
    if isinstance(bundle, BundleRefused):
        assert bundle.code in CODES
        return
    body = json.loads(payload)
    assert bundle == Bundle(gateway=GATEWAY, serial=body["serial"], issued_at=body["issued_at"], config=body["config"])
    # exactly what was signed, nothing read leniently into it ("5" is not 5, 5.9 not 5, true not 1)
    assert [type(body[k]) for k in ("gateway", "serial", "issued_at", "config")] == [str, int, str, str]
    assert bundle.serial > last_serial


def _tampered(original: bytes, how: str, at: int, data: bytes) -> bytes:
    i = at % (len(original) + 1)
    if how == "replace":
        return original[:i] + data + original[i + len(data) :]
    if how == "insert":
        return original[:i] + data + original[i:]
    if how == "delete":
        return original[:i] + original[i + max(1, len(data)) :]
    return original[:i]  # truncate


@FUZZ
@given(
    config=st.text(max_size=60),
    serial=st.integers(min_value=1, max_value=10**6),
    how=st.sampled_from(["replace", "insert", "delete", "truncate"]),
    at=st.integers(min_value=0),
    data=st.binary(min_size=1, max_size=8),
)
def test_a_tampered_bundle_is_refused_or_is_still_exactly_what_was_signed(
    config: str, serial: int, how: str, at: int, data: bytes
) -> None:
    original = sign_bundle(KEY, gateway=GATEWAY, serial=serial, config=config, issued_at=ISSUED)
    expected = verify_bundle(original, public_key=PINNED, gateway=GATEWAY, last_serial=0)
    tampered = _tampered(original, how, at, data)
    assume(tampered != original)
    bundle = outcome(tampered)
    if isinstance(bundle, BundleRefused):
        assert bundle.code in CODES
    else:  # accepted only when the change left the signed content alone (outer whitespace, base64's spare bits)
        assert bundle == expected


@FUZZ
@given(
    config=st.text(max_size=60),
    serial=st.integers(min_value=1, max_value=10**6),
    field=st.sampled_from(["payload", "signature"]),
    other_config=st.text(max_size=60),
    other_serial=st.integers(min_value=1, max_value=10**6),
)
def test_a_payload_or_signature_swapped_from_another_bundle_is_refused(
    config: str, serial: int, field: str, other_config: str, other_serial: int
) -> None:
    assume((config, serial) != (other_config, other_serial))
    doc = json.loads(sign_bundle(KEY, gateway=GATEWAY, serial=serial, config=config, issued_at=ISSUED))
    other = json.loads(sign_bundle(KEY, gateway=GATEWAY, serial=other_serial, config=other_config, issued_at=ISSUED))
    doc[field] = other[field]
    assert refused(json.dumps(doc).encode()).code == "bad_signature"


@FUZZ
@given(
    gateway=st.just(GATEWAY) | st.text(max_size=20),
    serial=serials,
    last_serial=serials,
    config=st.text(max_size=200),
    issued_at=st.datetimes(timezones=st.just(UTC)),
)
def test_a_signed_bundle_is_accepted_only_for_this_gateway_above_the_last_serial(
    gateway: str, serial: int, last_serial: int, config: str, issued_at: datetime
) -> None:
    data = sign_bundle(KEY, gateway=gateway, serial=serial, config=config, issued_at=issued_at)
    if gateway == GATEWAY and serial > last_serial:
        bundle = verify_bundle(data, public_key=PINNED, gateway=GATEWAY, last_serial=last_serial)
        assert bundle == Bundle(gateway=GATEWAY, serial=serial, issued_at=issued_at.isoformat(), config=config)
    else:
        assert refused(data, last_serial).code == ("wrong_gateway" if gateway != GATEWAY else "replayed")


def test_a_signed_bundle_padded_past_the_size_limit_is_refused_before_parsing() -> None:
    good = sign_bundle(KEY, gateway=GATEWAY, serial=2, config="x = 1", issued_at=ISSUED)
    padded = good + b" " * (MAX_BUNDLE_BYTES + 1 - len(good))
    exc = refused(padded)
    assert (exc.code, str(exc)) == (
        "bad_format",
        f"remote config: bundle too large, got {MAX_BUNDLE_BYTES + 1} bytes; at most {MAX_BUNDLE_BYTES}",
    )
    assert verify_bundle(padded[:MAX_BUNDLE_BYTES], public_key=PINNED, gateway=GATEWAY, last_serial=1).serial == 2


def _payload(**fields: Any) -> bytes:
    body = {"gateway": GATEWAY, "serial": 7, "issued_at": ISSUED.isoformat(), "config": "x = 1"} | fields
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("serial", "got"),
    [
        ("5", '"5" (string)'),
        (5.9, "5.9 (number)"),
        (5.0, "5.0 (number)"),
        (True, "true (boolean)"),
        (None, "null"),
        ([5], "[5] (array)"),
        ("9" * 100, f'"{"9" * 57}… (string)'),
    ],
)
def test_a_serial_that_is_not_an_integer_is_refused_naming_what_it_got(serial: Any, got: str) -> None:
    exc = refused(signed(_payload(serial=serial)))
    assert (exc.code, str(exc)) == (
        "bad_format",
        f"remote config: signed payload: serial must be an integer, got {got}",
    )


def test_every_field_of_the_signed_payload_that_is_wrong_is_named_at_once() -> None:
    exc = refused(signed(b'{"gateway": 3, "serial": "5", "config": {"password": "s3cret"}}'))
    assert (exc.code, str(exc)) == (
        "bad_format",
        'remote config: signed payload: gateway must be a string, got 3 (integer); serial must be an integer, got "5" '
        "(string); issued_at missing; config must be a string, got object",  # the config's content never shown
    )
    exc = refused(signed(b"[1, 2]"))
    assert str(exc) == "remote config: signed payload: must be a JSON object, got [1, 2] (array)"


not_integers = json_values.filter(lambda v: isinstance(v, bool) or not isinstance(v, int))
JSON_TYPES = {str: "string", float: "number", bool: "boolean", list: "array", dict: "object"}


@FUZZ
@given(serial=not_integers, last_serial=serials)
def test_a_signed_serial_of_any_other_type_than_integer_is_refused(serial: Any, last_serial: int) -> None:
    exc = refused(signed(_payload(serial=serial)), last_serial)
    assert exc.code == "bad_format"
    assert str(exc).startswith("remote config: signed payload: serial must be an integer, got ")
    assert str(exc).endswith("got null" if serial is None else f" ({JSON_TYPES[type(serial)]})")
