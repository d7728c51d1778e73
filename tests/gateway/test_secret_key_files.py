"""A secret store key file put back by hand that does not fit: one clear line from every command, never a crash.

docs/backup.md asks a technician to copy `secrets.key` onto a replacement box. Another box's key made
`edgegw run` stop with "Please report this traceback" (cryptography's InvalidToken), a file that is no
Fernet key made every command end in "ValueError: Fernet key must be 32 url-safe base64-encoded bytes"
(review F5): under systemd, a crash loop without a hint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from gateway.errors import ConfigError
from gateway.secrets import SecretStore
from tests.gateway.secret_files import edgegw, store_box


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A gateway config whose data directory holds a secret store with one secret."""
    return store_box(tmp_path)


def _malformed(data: Path) -> str:
    (data / "secrets.key").write_bytes(b"not-a-fernet-key\n")
    return (
        f"{data / 'secrets.key'}: not a secret store key, got 16 bytes (expected 32 url-safe base64-encoded "
        f"bytes, 44 characters); put back the key file that belongs to {data / 'secrets.enc'} (kept apart from backups)"
    )


def _another_boxs(data: Path) -> str:
    (data / "secrets.key").write_bytes(Fernet.generate_key())
    return (
        f"{data / 'secrets.enc'}: cannot be decrypted with {data / 'secrets.key'}; the key file does not belong to it"
    )


KEYS = {"malformed": _malformed, "another box's": _another_boxs}


@pytest.mark.parametrize("key", sorted(KEYS))
def test_edgegw_run_says_the_key_does_not_fit_in_one_line_and_exits_2(box: Path, key: str) -> None:
    message = KEYS[key](box.parent / "data")
    run = edgegw("run", "-c", str(box))
    assert run.returncode == 2, run.stderr
    assert run.stderr == f"{message}\n"
    assert "Traceback" not in run.stderr and "unexpected error" not in run.stderr


def test_edgegw_secret_list_says_a_malformed_key_is_not_one(box: Path) -> None:
    message = _malformed(box.parent / "data")  # another box's key it said already
    run = edgegw("secret", "list", "-c", str(box))
    assert (run.returncode, run.stderr) == (2, f"secret list: {message}\n")


def test_every_way_into_the_store_says_a_malformed_key_is_not_one(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    (tmp_path / "secrets.key").write_bytes(b"")  # emptied by a copy cut short
    store = SecretStore(tmp_path)
    for use in (store.names, store.migrate, store.schema_version, lambda: store.get("a"), lambda: store.set("b", "2")):
        with pytest.raises(ConfigError) as info:
            use()
        assert info.value.errors == [
            f"{tmp_path / 'secrets.key'}: not a secret store key, got 0 bytes (expected 32 url-safe base64-encoded "
            f"bytes, 44 characters); put back the key file that belongs to {tmp_path / 'secrets.enc'} "
            "(kept apart from backups)"
        ]


def test_a_malformed_key_without_a_store_may_be_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "secrets.key").write_bytes(b"AAAA")
    with pytest.raises(ConfigError) as info:
        SecretStore(tmp_path).set("a", "1")
    assert info.value.errors[0].endswith("; move it aside: a new one is made with the first secret set")


def test_a_store_file_that_is_no_fernet_token_is_not_blamed_on_the_key(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    (tmp_path / "secrets.enc").write_bytes(b'{"a": "1"}\n')  # a store "repaired" by hand
    with pytest.raises(ConfigError) as info:
        SecretStore(tmp_path).schema_version()
    assert info.value.errors == [
        f"{tmp_path / 'secrets.enc'}: not a secret store, got 11 bytes that are no Fernet token; "
        "restore it from a backup (with the key file that belongs to it)"
    ]


def test_a_token_under_the_right_key_that_holds_no_map_is_refused_unshown(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("a", "1")
    fernet = Fernet((tmp_path / "secrets.key").read_bytes())
    (tmp_path / "secrets.enc").write_bytes(fernet.encrypt(b'["hunter2"]'))
    with pytest.raises(ConfigError) as info:
        SecretStore(tmp_path).migrate()
    assert info.value.errors == [
        f"{tmp_path / 'secrets.enc'}: not a secret store, got a document that is no JSON object"
    ]
