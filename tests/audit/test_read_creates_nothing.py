"""`audit verify|show|purge` open an existing log only: a missing one is said, and nothing is made in its place.

Before, each made the data directory, web/ and an empty audit.db (root's, under sudo) and verify then said
"OK, 0 entries verified": for a mistyped data_dir, and for a web/ removed whole.
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import pytest

from gateway.audit import cli as audit_cli
from gateway.audit.log import AuditLog


def write_config(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{data_dir}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    return path


def audit(command: str, config: Path) -> tuple[int, str, str]:
    ns = argparse.Namespace(audit_command=command, config=str(config), limit=50, actor=None, action=None, days=None)
    out, err = io.StringIO(), io.StringIO()
    code = audit_cli.run(ns, out, err)
    return code, out.getvalue(), err.getvalue()


def tree(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


@pytest.mark.parametrize("command", ["verify", "show", "purge"])
def test_a_data_dir_that_is_not_there_is_said_and_not_made(tmp_path: Path, command: str) -> None:
    config = write_config(tmp_path, tmp_path / "typo" / "x")
    code, out, err = audit(command, config)
    assert (code, out) == (1, "")
    assert err == (
        f"audit {command}: no audit log at {tmp_path / 'typo/x/web/audit.db'}, got no directory "
        f"{tmp_path / 'typo/x'}; check gateway.data_dir (and [web] state_dir) in the configuration, "
        "or start the gateway once\n"
    )
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("command", ["verify", "show", "purge"])
def test_a_box_where_nothing_was_recorded_says_so(tmp_path: Path, command: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = write_config(tmp_path, data)
    code, out, err = audit(command, config)
    assert (code, err) == (0, "")
    assert out == (
        f"audit log {data / 'web/audit.db'}: none yet, nothing recorded in {data / 'web'}; if the web UI or "
        "`edgegw user` has run on this box, that directory was removed: restore it from the backup\n"
    )
    assert tree(data) == []


def test_a_log_removed_beside_the_key_and_head_is_found_and_not_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    AuditLog(data / "web").append(actor="alice", action="login", at=1.0)
    (data / "web" / "audit.db").unlink()
    config = write_config(tmp_path, data)
    code, out, err = audit("verify", config)
    assert (code, out) == (1, "")
    assert err == (
        f"audit log {data / 'web/audit.db'}: 1 problem(s) in 0 entries\n"
        f"  audit entry 1: deleted ({data / 'web/audit.db'} is missing, but entry 1 was written)\n"
    )
    assert not (data / "web" / "audit.db").exists()
    code, out, err = audit("show", config)
    assert (code, out) == (1, "")
    assert "`edgegw audit verify` says what is missing" in err
    assert not (data / "web" / "audit.db").exists()


def test_a_log_removed_with_its_key_and_head_while_accounts_stay_is_found(tmp_path: Path) -> None:
    data = tmp_path / "data"
    web = data / "web"
    AuditLog(web).append(actor="alice", action="login", at=1.0)
    (web / "accounts.db").write_bytes(b"")  # stands for the web UI's other state
    for name in ("audit.db", "audit.head"):
        (web / name).unlink()
    shutil.rmtree(web / "secrets")
    code, out, err = audit("verify", write_config(tmp_path, data))
    assert (code, out) == (1, "")
    assert f"audit log: {web / 'audit.db'} is missing, and so are audit.head and the key audit-hmac" in err
    assert not (web / "audit.db").exists()


def test_a_web_directory_removed_whole_is_not_verified_as_ok(tmp_path: Path) -> None:
    data = tmp_path / "data"
    AuditLog(data / "web").append(actor="alice", action="login", at=1.0)
    shutil.rmtree(data / "web")
    code, out, _ = audit("verify", write_config(tmp_path, data))
    assert code == 0  # the files cannot tell it from a box never set up (see _no_log); the words say both
    assert "OK" not in out
    assert "that directory was removed: restore it from the backup" in out
    assert tree(data) == []
