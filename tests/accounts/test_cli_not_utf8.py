"""`edgegw user add|passwd` refuses a password whose bytes are not UTF-8, with a message instead of a traceback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.accounts import cli as user_cli
from gateway.accounts import passwords
from gateway.accounts.store import AccountStore, Role
from gateway.cli import main
from gateway.web.config import WebConfig

from .conftest import T0

GOOD = "river-gauge-cabinet-7"
LATIN1 = "café-gauge-cabinet-7".encode("latin-1") + b"\n"  # a password file saved by a Latin-1 editor


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    monkeypatch.setattr(user_cli, "clock", lambda: T0)
    monkeypatch.setattr(passwords, "default_hasher", lambda: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    return cfg


def store(tmp_path: Path) -> AccountStore:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return AccountStore(tmp_path / "data" / "web", WebConfig(), hasher=hasher)


def refused(command: str, name: str) -> str:
    return (
        f"user {command} {name}: password refused, got bytes that are not UTF-8 (not shown); save it as UTF-8 "
        "(e.g. iconv -f LATIN1 -t UTF-8); nothing changed\n"
    )


# stdin decodes with surrogateescape in UTF-8 mode and the C locale, strictly in a UTF-8 locale: both seen
@pytest.mark.parametrize("errors", ["surrogateescape", "strict"])
def test_passwd_and_add_refuse_a_password_that_is_not_utf8(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, errors: str
) -> None:
    store(tmp_path).add_user("tanaka", Role.ADMIN, GOOD, now=T0)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(LATIN1), encoding="utf-8", errors=errors))
    assert main(["user", "passwd", "tanaka", "--password-stdin", "-c", str(config)]) == 2
    assert capsys.readouterr() == ("", refused("passwd", "tanaka"))
    assert store(tmp_path).authenticate("tanaka", GOOD, address="192.0.2.1", now=T0 + 1).ok  # unchanged

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(LATIN1), encoding="utf-8", errors=errors))
    assert main(["user", "add", "ito", "--role", "viewer", "--password-stdin", "-c", str(config)]) == 2
    assert capsys.readouterr() == ("", refused("add", "ito"))
    assert [u.name for u in store(tmp_path).list_users()] == ["tanaka"]


def test_a_typed_password_that_is_not_utf8_is_refused(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = LATIN1.rstrip(b"\n").decode("utf-8", "surrogateescape")  # getpass reading a non-UTF-8 terminal
    monkeypatch.setattr("getpass.getpass", lambda prompt: typed)
    assert main(["user", "add", "tanaka", "--role", "admin", "-c", str(config)]) == 2
    assert capsys.readouterr() == ("", refused("add", "tanaka"))
    assert store(tmp_path).list_users() == []
