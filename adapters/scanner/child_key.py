"""The stations' child-token key: 32 bytes in the gateway's secret store, never beside the station store.

The key (HMAC-SHA-256, `station.child_token`) makes the pseudonym of a child's card that the
station store keys attendance by and the platform sees in `ChildAttendance` entity ids. Card
numbers are a few digits after a known prefix, so whoever holds the key and a token recovers the
card by trying them all: the key is kept (base64) as `secret:<store>.child_key` in the secret store
(`secrets.enc`, encrypted under `secrets.key`, which a backup leaves out unless told otherwise).

The first releases kept it in clear in the store's `meta` table. `child_key` adopts that value (the
same bytes, so the tokens already issued keep matching) into the secret store, durable there before
the store's migration deletes the row; a crash in between leaves it in both places, and the next
start finishes the move. Two different keys in the two places, or a store whose tokens were made
with a key the secret store no longer holds (`check` no longer matches), are errors: a new key would
silently give every child a new identity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from pathlib import Path

from gateway import redact
from gateway.errors import GatewayError
from gateway.secrets import SecretStore

__all__ = ["ChildKeyError", "ChildKeyInvalid", "ChildKeyMismatch", "ChildKeyMissing", "child_key", "key_check"]

KEY_BYTES = 32
_CHECK = b"edgegw scanner child key check v1"
_RESTORE = "restore the secret store (secrets.enc with its secrets.key) that belongs to this station store"


class ChildKeyError(GatewayError, ValueError):
    """The child-token key cannot be used as it is; starting with another would re-identify no one but lose everyone."""

    code = "scanner_child_key"


class ChildKeyInvalid(ChildKeyError):
    """A value under the key's name (or in the old `meta` row) that is not a 32-byte key."""

    code = "scanner_child_key_invalid"


class ChildKeyMismatch(ChildKeyError):
    """The secret store holds another key than the one the store's tokens were made with."""

    code = "scanner_child_key_mismatch"


class ChildKeyMissing(ChildKeyError):
    """The store's tokens were made with a key the secret store does not hold."""

    code = "scanner_child_key_missing"


def secret_name(database: Path) -> str:
    """`stations.child_key` for `<data_dir>/stations.db`: one key per store."""
    return f"{database.stem}.child_key"


def key_check(key: bytes) -> bytes:
    """8 bytes that tell whether a key is the one a store's tokens were made with (and nothing about the key)."""
    return hmac.new(key, _CHECK, hashlib.sha256).digest()[:8]


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return b""


def child_key(data_dir: Path, name: str, *, in_file: bytes | None, check: bytes | None, where: str) -> bytes:
    """The store's key from the secret store: adopted from `in_file` (the old `meta` row), else made on first use.

    Durable in the secret store when this returns, so the caller may then delete `in_file` from its file.
    `check` is the store's `key_check` of the key its tokens were made with (None before the first).
    """
    # Whatever is made or adopted goes through get_or_create: under the secret store's lock, durable
    # when it returns, and two processes starting together end with the one value both then use.
    store = SecretStore(data_dir)
    if in_file is not None:
        if len(in_file) != KEY_BYTES:
            raise ChildKeyInvalid(
                f"{where}: meta.child_key is not a {KEY_BYTES}-byte key, got {len(in_file)} bytes; "
                "restore the station store from a backup",
                secret=name,
            )
        adopted = base64.b64encode(in_file).decode("ascii")
        # the meta value itself, never a new key; durable before the row leaves the store's file
        text = store.get_or_create(name, lambda: adopted)
        if _decode(text) != in_file:  # the secret store held another key already
            raise ChildKeyMismatch(
                f"{where}: the child-token key in the store's meta table and secret:{name} in the secret store "
                f"{store.store_path} differ, got two keys (not shown); the tokens already issued were made with the "
                f"one in meta: put back the secret store this box had, or set secret:{name} to meta.child_key in "
                f"base64 (`edgegw secret set {name}`), and start again",
                secret=name,
            )
    elif check is not None:
        # tokens exist already: only their own key will do, so nothing is made here
        if name not in store.names():
            raise ChildKeyMissing(
                f"{where}: its child tokens were made with secret:{name}, got a secret store {store.store_path} "
                f"without it; {_RESTORE} (a new key would give every child a new token)",
                secret=name,
            )
        text = store.get(name)
    else:
        text = store.get_or_create(name, lambda: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii"))
    redact.register(text)
    key = _decode(text)
    if len(key) != KEY_BYTES:
        raise ChildKeyInvalid(
            f"{where}: secret:{name} is not a {KEY_BYTES}-byte key in base64, got a value that is not shown here; "
            f"{_RESTORE}",
            secret=name,
        )
    if check is not None and not hmac.compare_digest(key_check(key), check):
        raise ChildKeyMismatch(
            f"{where}: its child tokens were made with another key than secret:{name} in the secret store "
            f"{store.store_path}, got a key that does not match the store's meta.child_key_check; {_RESTORE}",
            secret=name,
        )
    return key
