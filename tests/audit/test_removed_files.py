"""audit.db and audit.head both removed while the secret store keeps the key: verify must not call that a new log.

Regression: `verify` found no entries and no head and answered ok with 0 checked, although the key
`audit-hmac`, made by the first append only, shows that entries had been written. Real files on disk;
`edgegw audit verify` run as a subprocess, as a technician runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.audit.log import KEY_NAME, AuditLog, AuditVerdict

T0 = 1_796_000_000.0
REMOVED = "audit.db and audit.head were removed (the audit key shows entries were written)"


def _remove_both(state_dir: Path) -> None:
    for name in ("audit.db", "audit.db-wal", "audit.db-shm", "audit.head"):
        (state_dir / name).unlink(missing_ok=True)


def test_both_files_removed_while_the_key_is_kept_is_found(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    for i in range(5):
        log.append(actor="admin", action="user.remove", target=f"u{i}", at=T0 + i)
    _remove_both(tmp_path)
    again = AuditLog(tmp_path)  # the next start makes an empty audit.db
    assert KEY_NAME in again.secrets.names()
    assert again.verify() == AuditVerdict(ok=False, problems=[REMOVED], checked=0)


def test_a_log_never_written_to_verifies_and_its_purge_makes_no_key(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    assert log.purge(T0, now=T0) == 0  # the web UI's retention runs at its start, before any login
    assert KEY_NAME not in log.secrets.names()
    assert log.verify() == AuditVerdict(ok=True, problems=[], checked=0)
    log.append(actor="admin", action="login", at=T0)
    assert log.verify() == AuditVerdict(ok=True, problems=[], checked=1)


def test_the_cli_says_the_files_were_removed_and_exits_1(tmp_path: Path) -> None:
    state_dir = tmp_path / "webstate"
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[web]\nstate_dir = "{state_dir}"\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:1026"\n'
    )
    AuditLog(state_dir).append(actor="tanaka", action="login", address="192.0.2.10", at=T0)
    _remove_both(state_dir)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"audit log {state_dir / 'audit.db'}: 1 problem(s) in 0 entries\n  {REMOVED}\n"
