"""A damaged secrets.enc is called damaged; only a key file of another store is blamed on the key file."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.secrets import SecretStore

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A store as a gateway has it after its first start (a few keys and a token), and its token."""
    data = tmp_path_factory.mktemp("data")
    store = SecretStore(data)
    store.set("orion.token", "s3cr3t-value")
    store.set("audit-hmac", "q" * 44)
    store.set("mail.queue_key", "m" * 44)
    return data, (data / "secrets.enc").read_bytes()


def damaged(data: Path) -> str:
    return (
        f"{data / 'secrets.enc'}: damaged, got a store whose integrity check fails although {data / 'secrets.key'} "
        "decrypts parts of it; restore secrets.enc from a backup and keep the key file, it belongs to the store"
    )


def error(data: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        SecretStore(data).get("orion.token")
    return info.value.errors


def test_one_changed_character_is_damage_not_a_foreign_key(box: tuple[Path, bytes]) -> None:
    data, token = box
    try:
        changed = bytearray(token)
        middle = len(changed) // 2
        changed[middle] = ord("A") if changed[middle] != ord("A") else ord("B")
        (data / "secrets.enc").write_bytes(bytes(changed))
        assert error(data) == [damaged(data)]
    finally:
        (data / "secrets.enc").write_bytes(token)
    assert SecretStore(data).get("orion.token") == "s3cr3t-value"


# From character 2 on: the first two carry the version byte, whose damage the shape check reports.
@given(where=st.integers(min_value=0, max_value=10**6), by=st.sampled_from(ALPHABET))
def test_any_single_changed_character_is_called_damage(box: tuple[Path, bytes], where: int, by: str) -> None:
    data, token = box
    text = token.decode().rstrip("=")
    where = 2 + where % (len(text) - 2)
    changed = (text[:where] + by + text[where + 1 :] + "=" * (len(token) - len(text))).encode()
    # the last character may carry bits the decoder drops: a change there leaves the store as it was
    assume(base64.urlsafe_b64decode(changed) != base64.urlsafe_b64decode(token))
    try:
        (data / "secrets.enc").write_bytes(changed)
        assert error(data) == [damaged(data)]
    finally:
        (data / "secrets.enc").write_bytes(token)


@given(key=st.binary(min_size=32, max_size=32))
def test_any_other_key_is_called_the_wrong_key(box: tuple[Path, bytes], key: bytes) -> None:
    data, _ = box
    own = (data / "secrets.key").read_bytes()
    other = base64.urlsafe_b64encode(key)
    assume(other != own.strip())
    try:
        (data / "secrets.key").write_bytes(other)
        assert error(data) == [
            f"{data / 'secrets.enc'}: cannot be decrypted with {data / 'secrets.key'}; the key file does not belong to it"
        ]
    finally:
        (data / "secrets.key").write_bytes(own)


def test_a_store_of_another_box_with_this_boxs_key_is_the_wrong_key(box: tuple[Path, bytes], tmp_path: Path) -> None:
    """The restore that went wrong: another box's secrets.enc beside this box's key."""
    SecretStore(tmp_path).set("orion.token", "other-box")
    (tmp_path / "secrets.key").write_bytes(Fernet.generate_key())
    assert error(tmp_path) == [
        f"{tmp_path / 'secrets.enc'}: cannot be decrypted with {tmp_path / 'secrets.key'}; "
        "the key file does not belong to it"
    ]
