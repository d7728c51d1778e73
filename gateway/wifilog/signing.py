"""Ed25519 signatures for erasure certificates and export manifests: canonical JSON, detached public key.

The private key is one entry of the secret store (`secret:wifilog.signing`); the public key is
published beside the log store (`<data_dir>/wifilog/signing-public.pem`) and is what a verifier
trusts. A document carries the SHA-256 of the public key that signed it, so a document signed by
another key is named as such instead of merely failing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.secrets import SecretStore

__all__ = ["SIGNING_SECRET", "Signer", "canonical", "fingerprint", "load_public_key", "verify_document"]

SIGNING_SECRET = "wifilog.signing"


def canonical(document: dict[str, Any]) -> bytes:
    """The signed bytes: sorted keys, no spaces, UTF-8, without the `signature` member."""
    body = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"wifilog public key {path}: not an Ed25519 key, got {type(key).__name__}")
    return key


def _new_private_key() -> str:
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode("ascii")


class Signer:
    """The gateway's Wi-Fi log signing key, made on first use."""

    def __init__(self, secrets: SecretStore) -> None:
        # get_or_create: the receivers, the CLI and the web UI starting together all sign with one key
        text = secrets.get_or_create(SIGNING_SECRET, _new_private_key)
        self._key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))
        self.public_key = self._key.public_key()
        self.fingerprint = fingerprint(self.public_key)

    def __repr__(self) -> str:
        return f"Signer(fingerprint={self.fingerprint[:16]}…)"

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """`document` with `signing_key_sha256` and `signature` (base64 Ed25519 over `canonical`) added."""
        body = {**document, "signing_key_sha256": self.fingerprint}
        body.pop("signature", None)
        return {**body, "signature": base64.b64encode(self._key.sign(canonical(body))).decode("ascii")}


def verify_document(document: dict[str, Any], public_key: Ed25519PublicKey) -> list[str]:
    """Problems with a signed document (empty when the signature holds for `public_key`)."""
    sig = document.get("signature")
    if not isinstance(sig, str):
        return ["signature: missing"]
    if document.get("signing_key_sha256") != fingerprint(public_key):
        return [
            f"signing_key_sha256: signed by another key, got {str(document.get('signing_key_sha256'))[:16]}…; "
            "verify with the public key of the gateway that issued it"
        ]
    try:
        public_key.verify(base64.b64decode(sig, validate=True), canonical(document))
    except (InvalidSignature, ValueError):
        return ["signature: does not match the document (altered after signing)"]
    return []
