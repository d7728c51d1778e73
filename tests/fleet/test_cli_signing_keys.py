"""`edgegw config public-key | sign` on a signing key that is not the plain PEM `keygen` writes: a message, not a traceback.

A passphrase-protected key ended in "TypeError: Password was not given but private key is encrypted"
(review F13); a file that is no key in cryptography's words without the file's name.
"""

from __future__ import annotations

import io
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, PrivateFormat

from gateway.cli import build_parser
from gateway.fleet.cli import run_config


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = build_parser([]).parse_args(argv)
    code = run_config(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_a_passphrase_protected_signing_key_says_so_and_how_to_decrypt_it(tmp_path: Path) -> None:
    key = tmp_path / "platform-enc.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw"))
    )
    said = (
        f"{key}: passphrase-protected, got an encrypted private key; decrypt it into a file of its own "
        f"(openssl pkey -in {key} -out <new key file>, chmod 600 it) and give that file\n"
    )
    assert cli(["config", "public-key", str(key)]) == (1, "", f"config public-key: {said}")
    conf = tmp_path / "gateway.toml"
    conf.write_text("[gateway]\nid = 'gw'\n")
    assert cli(["config", "sign", str(conf), "--key", str(key), "--serial", "1"]) == (1, "", f"config sign: {said}")


def test_a_file_that_is_no_private_key_is_named(tmp_path: Path) -> None:
    key = tmp_path / "public.pem"
    key.write_bytes(b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n")
    code, out, err = cli(["config", "public-key", str(key)])
    assert (code, out) == (1, "")
    assert err.startswith(f"config public-key: {key}: not a PEM private key (")
    assert err.endswith("); give the key `edgegw config keygen` wrote\n")
