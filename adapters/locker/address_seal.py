"""The patron's e-mail address at rest: AES-256-GCM under a key in the gateway's secret store, bound to its assignment.

The key is 32 random bytes kept (base64) as `secret:locker-<adapter>.address_key` in the gateway's
secret store (`secrets.enc`, itself encrypted under `secrets.key`), never beside the locker's
database: a copy of the database alone, or a backup made without `include_secret_key`, holds only
ciphertext. A sealed address is `nonce (12 bytes) || ciphertext || tag`, with the assignment id
as associated data, so a value moved to another row does not open. Replacing or losing the key
makes every sealed address in every copy unreadable (crypto-erasure of the whole store).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway import redact
from gateway.errors import GatewayError
from gateway.secrets import SecretStore

__all__ = ["AddressKeyInvalid", "AddressSeal", "AddressUnreadable", "secret_name"]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


class AddressKeyInvalid(GatewayError, ValueError):
    """The secret store holds something under the key's name that is not a key made here."""

    code = "locker_address_key_invalid"


class AddressUnreadable(GatewayError, ValueError):
    """A sealed address does not open: the key was replaced, or the value belongs to another row."""

    code = "locker_address_unreadable"


def secret_name(database: Path) -> str:
    """`locker-<adapter>.address_key` for `<data_dir>/locker-<adapter>.db`: one key per store."""
    return f"{database.stem}.address_key"


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def _aad(assignment_id: int) -> bytes:
    return f"edgegw locker address v1 assignment {assignment_id}".encode()


class AddressSeal:
    """Seals and opens the addresses of one locker store; `where` names the store in errors."""

    def __init__(self, key: bytes, *, where: str) -> None:
        self._aead = AESGCM(key)
        self.where = where

    def __repr__(self) -> str:
        return f"AddressSeal(where={self.where!r}, key=***)"

    @classmethod
    def from_secret_store(cls, data_dir: Path, name: str, *, where: str) -> AddressSeal:
        """The store's key from the secret store, made (and durable there) on first use."""
        # made under the secret store's lock and durable before any row depends on it; two processes
        # opening the store together get the same key (each making its own, one would seal with a lost key)
        text = SecretStore(data_dir).get_or_create(name, _new_key)
        redact.register(text)
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != KEY_BYTES:
            raise AddressKeyInvalid(
                f"{where}: secret:{name} is not a {KEY_BYTES}-byte key in base64, got a value that is not shown "
                "here; restore the secret store that belongs to this database (addresses sealed under the old key "
                "cannot be read without it)",
                secret=name,
            )
        return cls(key, where=where)

    def seal(self, assignment_id: int, address: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, address.encode(), _aad(assignment_id))

    def open(self, assignment_id: int, sealed: object) -> str:
        if not isinstance(sealed, bytes) or len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise AddressUnreadable(
                f"{self.where}: the e-mail address of assignment {assignment_id} is not a sealed value, "
                f"got a {type(sealed).__name__} of the wrong form; the row was changed outside the gateway",
                assignment=assignment_id,
            )
        try:
            plain = self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(assignment_id))
        except InvalidTag:
            raise AddressUnreadable(
                f"{self.where}: the e-mail address of assignment {assignment_id} does not open, got a sealed value "
                "made under another key or for another row; treated as no address (the key in the secret store "
                "was replaced, or the database was altered)",
                assignment=assignment_id,
            ) from None
        return plain.decode()
