"""`edgegw user …` end to end through gateway.cli.main, with a real config, stores and audit log in tmp_path."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.accounts import cli as user_cli
from gateway.accounts import passwords
from gateway.accounts.store import AccountStore, Role
from gateway.audit.log import AuditLog
from gateway.cli import main
from gateway.web.config import WebConfig

from .conftest import T0

GOOD = "river-gauge-cabinet-7"
OTHER = "library-counter-blue-9"
ACTOR = user_cli.cli_actor()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    monkeypatch.setattr(user_cli, "clock", lambda: T0)
    # the real profile is tested in test_passwords; here it would only make the test slow
    monkeypatch.setattr(passwords, "default_hasher", lambda: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    return cfg


def state(tmp_path: Path) -> Path:
    return tmp_path / "data" / "web"


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str | None = None
) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def add(
    config: Path, name: str, role: str, password: str, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    return run(
        ["user", "add", name, "--role", role, "--password-stdin", "-c", str(config)], capsys, mp, password + "\n"
    )


def test_add_from_stdin_is_stored_and_audited(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert add(config, "tanaka", "admin", GOOD, capsys, monkeypatch) == (0, "user tanaka added (admin)\n", "")
    web = state(tmp_path)
    assert stat.S_IMODE(web.stat().st_mode) == 0o700
    assert stat.S_IMODE((web / "accounts.db").stat().st_mode) == 0o600
    store = AccountStore(web, WebConfig(), hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    assert store.authenticate("tanaka", GOOD, address="192.0.2.1", now=T0 + 1).ok
    entry = AuditLog(web).entries(limit=1)[0]
    assert (entry.actor, entry.action, entry.target, dict(entry.detail), entry.at) == (
        ACTOR,
        "user.add",
        "tanaka",
        {"role": "admin"},
        T0,
    )
    assert GOOD not in (web / "audit.db").read_bytes().decode("utf-8", "replace")


def test_add_typed_twice(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = iter([GOOD, GOOD])
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return next(typed)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    assert run(["user", "add", "ito", "--role", "technician", "-c", str(config)], capsys, monkeypatch) == (
        0,
        "user ito added (technician)\n",
        "",
    )
    assert prompts == ["password for ito: ", "password for ito (again): "]


def test_two_different_passwords_change_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = iter([GOOD, OTHER])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(typed))
    assert run(["user", "add", "ito", "--role", "viewer", "-c", str(config)], capsys, monkeypatch) == (
        2,
        "",
        "user add ito: the two passwords differ; nothing changed\n",
    )
    assert AccountStore(state(tmp_path), WebConfig()).list_users() == []


def test_policy_errors_in_english(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert add(config, "tanaka", "admin", "password", capsys, monkeypatch) == (
        2,
        "",
        "user add tanaka: password refused; nothing changed\n"
        "  the password is too short; use at least 12 characters\n"
        "  the password is on the list of common passwords; choose one that is not\n",
    )
    assert add(config, "tanaka", "admin", "tanaka-tanaka-tanaka", capsys, monkeypatch)[2] == (
        "user add tanaka: password refused; nothing changed\n"
        "  the password contains the user name; choose one that does not\n"
    )


def test_every_policy_key_has_english() -> None:
    assert set(user_cli.ENGLISH) == set(passwords.POLICY_KEYS)


def test_list_passwd_unlock_remove(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    c = str(config)
    add(config, "tanaka", "admin", GOOD, capsys, monkeypatch)
    add(config, "sato", "viewer", OTHER, capsys, monkeypatch)
    store = AccountStore(
        state(tmp_path), WebConfig(lockout_failures=5), hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    store.authenticate("tanaka", GOOD, address="192.0.2.10", now=T0 + 60)
    for i in range(5):
        store.authenticate("sato", "wrong", address="192.0.2.66", now=T0 + 120 + i)
    code, out, err = run(["user", "list", "-c", c], capsys, monkeypatch)
    assert (code, err) == (0, "")
    assert out == (
        "NAME                 ROLE       LAST LOGIN           FROM             STATE\n"
        "sato                 viewer     -                    -                locked until 2026-11-30 10:10 JST\n"
        "tanaka               admin      2026-11-30 09:54 JST 192.0.2.10       ok\n"
    )
    assert run(["user", "unlock", "sato", "-c", c], capsys, monkeypatch) == (0, "user sato unlocked\n", "")
    assert run(
        ["user", "passwd", "sato", "--password-stdin", "--must-change", "-c", c], capsys, monkeypatch, GOOD + "\n"
    ) == (0, "password of sato changed\n", "")
    assert run(["user", "passwd", "sato", "--password-stdin", "-c", c], capsys, monkeypatch, GOOD + "\n") == (
        2,
        "",
        "user passwd sato: password refused; nothing changed\n"
        "  the new password is the current one; choose a different one\n",
    )
    assert "must change password" in run(["user", "list", "-c", c], capsys, monkeypatch)[1]
    assert run(["user", "remove", "tanaka", "-c", c], capsys, monkeypatch) == (
        2,
        "",
        "user tanaka: is the only admin, got a change that would leave none; add another admin first\n",
    )
    assert run(["user", "remove", "sato", "-c", c], capsys, monkeypatch) == (0, "user sato removed\n", "")
    assert run(["user", "unlock", "nobody", "-c", c], capsys, monkeypatch) == (
        2,
        "",
        "user nobody: no such user, got 'nobody'\n",
    )
    actions = [(e.action, e.target) for e in reversed(AuditLog(state(tmp_path)).entries())]
    assert actions == [
        ("user.add", "tanaka"),
        ("user.add", "sato"),
        ("user.unlock", "sato"),
        ("user.password", "sato"),
        ("user.remove", "sato"),
    ]
    assert {e.actor for e in AuditLog(state(tmp_path)).entries()} == {ACTOR}


def test_an_empty_list_says_how_to_begin(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()  # a box never set up; a data_dir that is not there is refused (read_creates_nothing)
    assert run(["user", "list", "-c", str(config)], capsys, monkeypatch) == (
        0,
        "no users; add the first admin with `edgegw user add NAME --role admin`\n",
        "",
    )


def test_duplicate_and_bad_names(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add(config, "tanaka", "admin", GOOD, capsys, monkeypatch)
    assert add(config, "TANAKA", "viewer", OTHER, capsys, monkeypatch) == (
        2,
        "",
        "user TANAKA: already exists, got a second user of that name\n",
    )
    assert add(config, "a b", "viewer", OTHER, capsys, monkeypatch) == (
        2,
        "",
        "user name: must be 1-64 characters of A-Z a-z 0-9 _ . @ - starting with a letter or digit, got 'a b'\n",
    )


def test_setup_link_once_then_refused(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(["user", "setup-link", "-c", str(config)], capsys, monkeypatch)
    assert (code, err) == (0, "")
    first, second = out.splitlines()
    prefix = "one-time setup link, valid until 2026-11-30 10:53 JST: /setup/"
    assert first.startswith(prefix)
    token = first.removeprefix(prefix)
    assert second == f"open it on the web UI, e.g. https://<this box>:8443/setup/{token}"
    entry = AuditLog(state(tmp_path)).entries(limit=1)[0]
    assert (entry.action, entry.actor, dict(entry.detail)) == ("user.setup_link", ACTOR, {})
    assert token not in (state(tmp_path) / "audit.db").read_bytes().decode("utf-8", "replace")
    store = AccountStore(state(tmp_path), WebConfig(), hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    assert store.use_setup_token(token, "tanaka", GOOD, now=T0 + 60).role is Role.ADMIN
    assert run(["user", "setup-link", "-c", str(config)], capsys, monkeypatch) == (
        1,
        "",
        "user setup-link: an admin exists already; log in and add users on the Users page\n",
    )


def test_a_bad_config_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[gateway]\nid = "gw1"\n')
    code, out, err = run(["user", "list", "-c", str(cfg)], capsys, monkeypatch)
    assert (code, out) == (2, "")
    assert err.startswith(f"user list: {cfg}: ")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files away")
def test_files_made_by_root_belong_to_the_gateways_user(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)  # the data directory belongs to the gateway's user
    assert add(config, "tanaka", "admin", GOOD, capsys, monkeypatch)[0] == 0
    made = [state(tmp_path), *state(tmp_path).rglob("*")]
    assert {p.name for p in made} >= {"web", "accounts.db", "audit.db", "audit.head", "secrets.key", "secrets.enc"}
    assert {(p.name, p.stat().st_uid, p.stat().st_gid) for p in made} == {(p.name, 65534, 65534) for p in made}


def test_name_errors_come_before_the_password_is_typed(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_typing(prompt: str) -> str:
        raise AssertionError("the password was asked for")

    monkeypatch.setattr("getpass.getpass", no_typing)
    c = str(config)
    add(config, "tanaka", "admin", GOOD, capsys, monkeypatch)  # first: without accounts, passwd says there are none
    assert run(["user", "passwd", "nobody", "-c", c], capsys, monkeypatch) == (
        2,
        "",
        "user nobody: no such user, got 'nobody'\n",
    )
    assert run(["user", "add", "Tanaka", "--role", "viewer", "-c", c], capsys, monkeypatch)[2] == (
        "user Tanaka: already exists, got a second user of that name\n"
    )
    assert run(["user", "add", "a b", "--role", "viewer", "-c", c], capsys, monkeypatch)[0] == 2
