"""`user list|passwd|unlock|remove` open existing accounts only; `user add` still begins them.

Before, `user list` made the data directory, web/, accounts.db and audit.db (root's, under sudo) for a
mistyped data_dir, and said "no users" as if the box had none.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.accounts import cli as user_cli
from gateway.accounts import passwords
from gateway.accounts.store import AccountStore, Role
from gateway.web.config import WebConfig


@pytest.fixture(autouse=True)
def cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "default_hasher", lambda: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def write_config(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{data_dir}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    return path


def user(config: Path, command: str, name: str = "", stdin: str = "") -> tuple[int, str, str]:
    ns = argparse.Namespace(
        user_command=command, config=str(config), name=name, password_stdin=True, must_change=False, role="admin"
    )
    out, err = io.StringIO(), io.StringIO()
    code = user_cli.run(ns, out, err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def tree(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


@pytest.mark.parametrize(("command", "name"), [("list", ""), ("passwd", "bob"), ("unlock", "bob"), ("remove", "bob")])
def test_a_data_dir_that_is_not_there_is_said_and_not_made(tmp_path: Path, command: str, name: str) -> None:
    code, out, err = user(write_config(tmp_path, tmp_path / "typo" / "x"), command, name, "long-enough-pass-1\n")
    assert (code, out) == (1, "")
    what = f"user {command} {name}".rstrip()
    assert err == (
        f"{what}: no accounts at {tmp_path / 'typo/x/web/accounts.db'}, got no directory {tmp_path / 'typo/x'}; "
        "check gateway.data_dir (and [web] state_dir) in the configuration, or start the gateway once\n"
    )
    assert not (tmp_path / "typo").exists()


def test_list_on_a_box_without_accounts_makes_none(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    code, out, err = user(write_config(tmp_path, data), "list")
    assert (code, err) == (0, "")
    assert out == "no users; add the first admin with `edgegw user add NAME --role admin`\n"  # as an empty store
    assert tree(data) == []


@pytest.mark.parametrize("command", ["passwd", "unlock", "remove"])
def test_a_change_on_a_box_without_accounts_makes_none(tmp_path: Path, command: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    code, out, err = user(write_config(tmp_path, data), command, "bob", "long-enough-pass-1\n")
    assert (code, out) == (1, "")
    assert err == (
        f"user {command} bob: no accounts at {data / 'web/accounts.db'}, got no user 'bob'; "
        "add the first admin with `edgegw user add NAME --role admin`; nothing changed\n"
    )
    assert tree(data) == []


def test_list_leaves_no_audit_log_and_add_still_begins_the_accounts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    web = data / "web"
    AccountStore(web, WebConfig(), hasher=passwords.default_hasher()).add_user(
        "tanaka", Role.ADMIN, "river-gauge-cabinet-7", now=1.0
    )
    config = write_config(tmp_path, data)
    code, out, _ = user(config, "list")
    assert code == 0 and out.startswith("NAME")
    assert not (web / "audit.db").exists()  # reading the accounts writes nothing to the log
    (web / "accounts.db").unlink()
    web.rmdir()
    assert user(config, "add", "suzuki", "library-counter-blue-9\n")[:2] == (0, "user suzuki added (admin)\n")
    assert {"accounts.db", "audit.db"} <= set(tree(web))
