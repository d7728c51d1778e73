"""A weak pinned key (small-order, non-canonical, off the curve) is refused: at check-config, at start, at each bundle.

With a small-order key such as sample.toml's old placeholder (32 zero bytes), a bundle whose
signature is R = identity, S = 0 verified for about one payload in four: anyone could configure a
box left with it, and pin their own key. The small-order encodings below are libsodium's blocklist
(crypto_core/ed25519/ref10, `ge25519_has_small_order`): seven y values, each with either sign bit.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.fleet import remote
from gateway.fleet.remote import BundleRefused, public_key_b64, sign_bundle, verify_bundle

ROOT = Path(__file__).resolve().parents[2]
P = 2**255 - 19
D = -121665 * pow(121666, -1, P) % P
ZERO_KEY = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
FIX = "paste the platform's real public key (`edgegw config public-key platform.pem` where its key is kept)"
SMALL = "a small-order Ed25519 point (32 zero bytes is one): bundles verify against it without any private key"
NONCANONICAL = "not the canonical encoding of an Ed25519 point (y not below 2^255-19, or x = 0 with its sign bit)"
OFF_CURVE = "not a point of the Ed25519 curve: no key pair has it"
LIBSODIUM_BLOCKLIST_Y = [
    "0000000000000000000000000000000000000000000000000000000000000000",  # 0 (order 4)
    "0100000000000000000000000000000000000000000000000000000000000000",  # 1 (order 1)
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p-1 (order 2)
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p (= 0, order 4)
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p+1 (= 1, order 1)
]
SMALL_ORDER_KEYS = [
    base64.b64encode(bytes.fromhex(y)[:31] + bytes([bytes.fromhex(y)[31] | sign])).decode()
    for y in LIBSODIUM_BLOCKLIST_Y
    for sign in (0, 0x80)
]
IDENTITY_R_ZERO_S = base64.b64encode(bytes([1]) + bytes(63)).decode()  # no private key involved


def errors(public_key: str, tmp_path: Path, **remote_config: object) -> list[str]:
    """The config errors of a [fleet.remote_config] pinning `public_key` ([] when it is accepted)."""
    try:
        parse_config(
            {
                "gateway": {"id": "g", "data_dir": str(tmp_path)},
                "adapters": [],
                "uplinks": [{"name": "orion", "type": "orion", "url": "http://127.0.0.1:1026"}],
                "fleet": {"remote_config": {"public_key": public_key, **remote_config}},
            }
        )
    except ConfigError as exc:
        return list(exc.errors)
    return []


def key_line(what: str, key: str) -> str:
    return f"fleet.remote_config.public_key: {what}, got {json.dumps(key)}; {FIX}"


def test_the_zero_key_is_refused_with_the_path_and_the_fix(tmp_path: Path) -> None:
    assert errors(ZERO_KEY, tmp_path) == [key_line(SMALL, ZERO_KEY)]
    # every problem at once: the weak key does not hide the section's others
    assert errors(ZERO_KEY, tmp_path, url="http://p.example/b") == [
        key_line(SMALL, ZERO_KEY),
        "fleet.remote_config: url must be https, got 'http://p.example/b'; or set allow_http = true on a test bench",
    ]


@pytest.mark.parametrize("key", SMALL_ORDER_KEYS)
def test_every_small_order_encoding_is_refused(key: str, tmp_path: Path) -> None:
    assert errors(key, tmp_path) in ([key_line(SMALL, key)], [key_line(NONCANONICAL, key)])


@given(offset=st.integers(0, 2**255 - 1 - P), sign=st.sampled_from([0, 1 << 255]))
def test_a_y_not_below_the_field_prime_is_refused_as_non_canonical(offset: int, sign: int) -> None:
    key = base64.b64encode(((P + offset) | sign).to_bytes(32, "little")).decode()
    assert errors(key, Path("/nonexistent")) == [key_line(NONCANONICAL, key)]


@given(y=st.integers(0, P - 1), sign=st.sampled_from([0, 1 << 255]))
def test_a_y_with_no_point_on_the_curve_is_refused(y: int, sign: int) -> None:
    # x^2 = (y^2 - 1) / (d y^2 + 1) has no root: Euler's criterion, not the square root the gateway takes
    u = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    assume(pow(u, (P - 1) // 2, P) == P - 1)
    key = base64.b64encode((y | sign).to_bytes(32, "little")).decode()
    assert errors(key, Path("/nonexistent")) == [key_line(OFF_CURVE, key)]


@given(seed=st.binary(min_size=32, max_size=32))
def test_every_real_key_is_accepted(seed: bytes) -> None:
    assert errors(public_key_b64(Ed25519PrivateKey.from_private_bytes(seed)), Path("/nonexistent")) == []


def forged(serial: int) -> bytes:
    payload = json.dumps(
        {"gateway": "gw-fleet", "serial": serial, "issued_at": "2026-07-01T03:00:00+00:00", "config": "x = 1"}
    ).encode()
    return json.dumps(
        {
            "format": remote.BUNDLE_FORMAT,
            "payload": base64.b64encode(payload).decode(),
            "signature": IDENTITY_R_ZERO_S,
        }
    ).encode()


def test_verification_refuses_every_bundle_under_a_weak_pinned_key() -> None:
    # the config refuses such a key; this guards a key that reached the service any other way
    for serial in range(1, 65):  # about one in four of these verified against the zero key
        with pytest.raises(BundleRefused) as info:
            verify_bundle(forged(serial), public_key=ZERO_KEY, gateway="gw-fleet", last_serial=0)
        assert info.value.code == "bad_key"
        assert str(info.value) == (
            "remote config: [fleet.remote_config] public_key must be a sound Ed25519 key, got "
            f"{SMALL}; nothing applied; {FIX}"
        )
    with pytest.raises(BundleRefused, match="got not base64 of 32 bytes") as info:
        verify_bundle(forged(1), public_key="AAAA", gateway="gw-fleet", last_serial=0)
    assert info.value.code == "bad_key"
    # a sound key still takes what its private half signed
    key = Ed25519PrivateKey.generate()
    signed = sign_bundle(key, gateway="gw-fleet", serial=3, config="x = 1", issued_at=datetime.now(UTC))
    assert verify_bundle(signed, public_key=public_key_b64(key), gateway="gw-fleet", last_serial=2).serial == 3


CONFIG = """
[gateway]
id = "gw-weak"
data_dir = "{data_dir}"

[[adapters]]
name = "gauges"
type = "simulated"
rate = 0.1

[[uplinks]]
name = "platform"
type = "orion"
url = "http://127.0.0.1:1"

[fleet.remote_config]
public_key = "{key}"
"""


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_the_real_command_refuses_a_box_with_the_zero_key(command: str, tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(data_dir=tmp_path / "data", key=ZERO_KEY))
    args = [str(path)] if command == "check-config" else ["--config", str(path)]
    # `run` with such a key would start and take forged bundles on its control socket: it must not start
    done = subprocess.run(
        [sys.executable, "-m", "gateway", command, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert key_line(SMALL, ZERO_KEY) in done.stdout + done.stderr
    assert not (tmp_path / "data" / "control.sock").exists()
