"""Signed home-visit QR payload: encode a visit point's code, and reject forged or edited ones.

Format (ASCII, all characters in the QR alphanumeric set so the symbol stays small):

    VQ1.<key id>.<point id>.<mac>

- `VQ1`       format version 1
- key id     1-8 of 0-9 A-Z; names the HMAC key, so keys can be rotated while old codes still verify
- point id   1-32 of 0-9 A-Z -
- mac        base32 (RFC 4648, upper case, no padding) of the first 16 bytes (128 bits) of
             HMAC-SHA256(key, "VQ1.<key id>.<point id>.") - 26 characters

The MAC is compared as text in constant time, so every edit of any character is rejected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .codec import VisitQrError

__all__ = ["MIN_KEY_BYTES", "VisitPoint", "encode_visit_qr", "verify_visit_qr"]

VERSION = "VQ1"
MIN_KEY_BYTES = 16
_MAC_BYTES = 16
_KEY_ID = re.compile(r"[0-9A-Z]{1,8}")
_POINT_ID = re.compile(r"[0-9A-Z-]{1,32}")
_PAYLOAD = re.compile(r"VQ1\.([0-9A-Z]{1,8})\.([0-9A-Z-]{1,32})\.([A-Z2-7]{26})")


@dataclass(frozen=True, kw_only=True, slots=True)
class VisitPoint:
    point_id: str
    key_id: str
    version: int = 1


def _fail(code: str, what: str, value: object, fix: str = "", /, **params: object) -> VisitQrError:
    tail = f"; {fix}" if fix else ""
    return VisitQrError(code, f"visit QR: {what}, got {value}{tail}", **params)


def _mac(key: bytes, signed: str) -> str:
    digest = hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").rstrip("=")


def _check_key(key_id: str, key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise _fail(
            "visit_qr_key_weak",
            f"key {key_id!r} is shorter than {MIN_KEY_BYTES} bytes",
            f"{len(key)} bytes",
            "generate a 32-byte random key",
            key_id=key_id,
        )


def encode_visit_qr(point_id: str, key_id: str, key: bytes) -> str:
    """The payload to print as a QR code at one visit point."""
    if not _KEY_ID.fullmatch(key_id):
        raise _fail("visit_qr_key_id", "key id must be 1-8 of 0-9 A-Z", repr(key_id))
    if not _POINT_ID.fullmatch(point_id):
        raise _fail("visit_qr_point_id", "point id must be 1-32 of 0-9 A-Z -", f"{len(point_id)} characters")
    _check_key(key_id, key)
    signed = f"{VERSION}.{key_id}.{point_id}."
    return signed + _mac(key, signed)


def verify_visit_qr(text: str, keys: Mapping[str, bytes]) -> VisitPoint:
    """The visit point of a genuine payload; forged, edited or truncated payloads raise VisitQrError."""
    match = _PAYLOAD.fullmatch(text)
    if match is None:
        if text.startswith("VQ") and not text.startswith(VERSION + "."):
            raise _fail(
                "visit_qr_version",
                "unsupported format version",
                repr(text.split(".", 1)[0][:8]),
                "update the gateway or reprint the code",
            )
        raise _fail(
            "visit_qr_format",
            "not a visit-point code",
            f"{len(text)} characters",
            "scan the programme's visit QR code",
            length=len(text),
        )
    key_id, point_id, mac = match.groups()
    key = keys.get(key_id)
    if key is None:
        raise _fail(
            "visit_qr_key_unknown",
            "unknown key id",
            repr(key_id),
            "add the key to the gateway's visit-QR keys or reprint with a current key",
            key_id=key_id,
        )
    _check_key(key_id, key)
    expected = _mac(key, text[: len(text) - len(mac)])
    if not hmac.compare_digest(mac.encode("ascii"), expected.encode("ascii")):
        raise _fail(
            "visit_qr_signature",
            "signature does not match (forged or edited code)",
            f"key {key_id!r}",
            "report the code; do not record the visit",
            key_id=key_id,
        )
    return VisitPoint(point_id=point_id, key_id=key_id)
