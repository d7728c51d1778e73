"""A restore onto a replacement box brings the audit log and the web UI's secret store, never the key file beside
that store (docs/backup.md): verify names that file, not "restore the secret store", which is already there."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.audit.log import HEAD_FILE, AuditLog
from gateway.backup.archive import data_files
from gateway.web.config import WebConfig

T0 = 1_796_000_000.0


def test_a_restored_log_without_its_store_key_names_the_key_file(tmp_path: Path) -> None:
    old_box, new_box = tmp_path / "old", tmp_path / "new"
    state = WebConfig().state_path(old_box)
    log = AuditLog(state)
    for i in range(3):
        log.append(actor="alice", action="login", detail={"n": i}, address="192.0.2.1", at=T0 + i)
    # what a backup holds (include_secret_key off), put in place on the new box
    for rel in data_files(old_box):
        (new_box / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(old_box / rel, new_box / rel)
    restored = WebConfig().state_path(new_box)
    assert (restored / HEAD_FILE).exists() and (restored / "secrets" / "secrets.enc").exists()
    assert not (restored / "secrets" / "secrets.key").exists()
    verdict = AuditLog(restored).verify()
    assert not verdict.ok
    [problem] = verdict.problems
    assert problem.endswith(
        f"{restored / 'secrets' / 'secrets.enc'} is there but not its key file {restored / 'secrets' / 'secrets.key'}: "
        "put back the one kept from the box the backup came from (docs/backup.md)"
    )
    # the key put back: every entry verifies again
    shutil.copy2(state / "secrets" / "secrets.key", restored / "secrets" / "secrets.key")
    again = AuditLog(restored).verify()
    assert again.ok and again.checked == 3
