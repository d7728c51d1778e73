"""A backup taken while the audit log is written restores as a log that verifies.

The backup snapshotted web/audit.db, then copied web/audit.head (sorted names): an entry appended in
between left a head naming an entry its database did not hold, and `edgegw audit verify` reported
entries deleted in every restore of that backup, for good. The appends here are the audit log's own,
made at the moments a web UI's login could land: just before and just after the database's snapshot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.audit.log import AuditLog
from gateway.backup import archive
from tests.backup.conftest import write_config

NIGHT = datetime(2026, 12, 3, 18, 12, tzinfo=UTC)


def test_an_entry_appended_during_the_backup_leaves_a_log_that_verifies_once_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    web = data_dir / "web"
    web.mkdir(parents=True)
    AuditLog(web).append(actor="alice", action="login", at=NIGHT.timestamp())
    config = write_config(tmp_path / "gateway.toml", data_dir)
    snapshot = archive._snapshot

    def while_the_web_ui_writes(src: Path, dst: Path, data_fd: int, rel: Path) -> int:
        if src.name == "audit.db":
            AuditLog(web).append(actor="alice", action="logout", at=NIGHT.timestamp() + 1)
        version = snapshot(src, dst, data_fd, rel)
        if src.name == "audit.db":
            AuditLog(web).append(actor="bob", action="login", at=NIGHT.timestamp() + 2)
        return version

    monkeypatch.setattr(archive, "_snapshot", while_the_web_ui_writes)
    path = archive.create(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=tmp_path / "out", now=NIGHT
    )
    monkeypatch.undo()
    archive.restore(path, data_dir=data_dir, config_path=config, gateway_id="fixture-gw", now=NIGHT)
    verdict = AuditLog(web).verify()
    assert verdict.problems == []
    assert [e.action for e in AuditLog(web).entries()] == ["logout", "login"]  # newest first: bob's came after
