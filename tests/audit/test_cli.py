"""`edgegw audit verify|show` end to end through gateway.cli.main, on a log tampered with in raw sqlite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.audit.log import AuditLog
from gateway.cli import main

T0 = 1_796_000_000.0  # 2026-11-30 09:53:20 JST


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[web]\nstate_dir = "{tmp_path / "webstate"}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    log = AuditLog(tmp_path / "webstate")
    log.append(actor="tanaka", action="login", address="192.0.2.10", at=T0)
    log.append(
        actor="tanaka",
        action="config.apply",
        target="version 3",
        detail={"comment": "閾値を変更"},
        address="192.0.2.10",
        at=T0 + 61,
    )
    log.append(actor="cli:root", action="user.add", target="sato", detail={"role": "viewer"}, at=T0 + 122)
    return cfg


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_ok(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "verify", "-c", str(config)], capsys) == (
        0,
        f"audit log {tmp_path / 'webstate' / 'audit.db'}: OK, 3 entries verified\n",
        "",
    )


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (
            "UPDATE entries SET address = '198.51.100.7' WHERE id = 2",
            "audit entry 2: edited (its MAC does not match its contents)",
        ),
        ("DELETE FROM entries WHERE id = 2", "audit entry 2: deleted (entry 3 follows entry 1)"),
        (
            "INSERT INTO entries SELECT 4, at, 'mallory', action, target, detail_json, address, mac, mac FROM entries "
            "WHERE id = 3",
            "audit entry 4: edited or inserted (its MAC does not match its contents)",
        ),
    ],
    ids=["edited", "deleted", "inserted"],
)
def test_verify_finds_tampering(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: str, problem: str
) -> None:
    with sqlite3.connect(tmp_path / "webstate" / "audit.db") as db:
        db.execute(tamper)
    checked = 2 if tamper.startswith("DELETE") else 4 if tamper.startswith("INSERT") else 3
    assert run(["audit", "verify", "-c", str(config)], capsys) == (
        1,
        "",
        f"audit log {tmp_path / 'webstate' / 'audit.db'}: 1 problem(s) in {checked} entries\n  {problem}\n",
    )


def test_show(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "show", "-c", str(config)], capsys) == (
        0,
        '     3  2026-11-30 09:55:22 JST  cli:root  user.add  sato  {"role": "viewer"}\n'
        '     2  2026-11-30 09:54:21 JST  tanaka  config.apply  version 3  from 192.0.2.10  {"comment": "閾値を変更"}\n'
        "     1  2026-11-30 09:53:20 JST  tanaka  login  from 192.0.2.10\n",
        "",
    )
    assert run(["audit", "show", "--limit", "1", "-c", str(config)], capsys)[1].count("\n") == 1
    assert run(["audit", "show", "--action", "login", "-c", str(config)], capsys)[1] == (
        "     1  2026-11-30 09:53:20 JST  tanaka  login  from 192.0.2.10\n"
    )
    assert run(["audit", "show", "--actor", "cli:root", "-c", str(config)], capsys)[1].startswith("     3  ")
    with pytest.raises(SystemExit) as refused:  # the parser's one line, before the log is opened
        main(["audit", "show", "--limit", "0", "-c", str(config)])
    assert refused.value.code == 2
    assert capsys.readouterr().err.endswith("argument --limit: must be 1..1000000, got 0\n")


def test_purge_keeps_the_retention_period_and_the_chain(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.accounts import cli as user_cli

    monkeypatch.setattr(user_cli, "clock", lambda: T0 + 1095 * 86_400.0 + 100)  # the default: 3 years
    path = tmp_path / "webstate" / "audit.db"
    assert run(["audit", "purge", "-c", str(config)], capsys) == (
        0,
        f"audit log {path}: 2 entries older than 2026-11-30 09:55 JST purged (kept 1095 days)\n",
        "",
    )
    anchor = AuditLog(tmp_path / "webstate").entries(limit=1)[0]
    assert (anchor.action, anchor.actor, anchor.detail["first_id"], anchor.detail["last_id"]) == (
        "audit.purge",
        user_cli.cli_actor(),
        1,
        2,
    )
    assert run(["audit", "verify", "-c", str(config)], capsys)[:2] == (0, f"audit log {path}: OK, 2 entries verified\n")
    with pytest.raises(SystemExit) as refused:
        main(["audit", "purge", "--days", "0", "-c", str(config)])
    assert refused.value.code == 2
    assert capsys.readouterr().err.endswith("argument --days: must be 1..36500, got 0\n")


def test_show_keeps_control_characters_off_the_terminal(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    AuditLog(tmp_path / "webstate").append(actor="tanaka", action="command", target="pump\x1b[2J1", at=T0 + 200)
    assert run(["audit", "show", "--limit", "1", "-c", str(config)], capsys)[1] == (
        "     4  2026-11-30 09:56:40 JST  tanaka  command  pump\\x1b[2J1\n"
    )


def test_a_newer_log_is_refused_in_english(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(tmp_path / "webstate" / "audit.db") as db:
        db.execute("PRAGMA user_version = 9")
    path = tmp_path / "webstate" / "audit.db"
    assert run(["audit", "verify", "-c", str(config)], capsys) == (
        2,
        "",
        f"audit verify: {path}: schema version newer than this edgegw knows (1), got version 9; upgrade edgegw\n",
    )
