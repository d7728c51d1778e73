"""`edgegw status` of a stopped gateway still says what the backups say, and never to start a part-restored box.

Before, status returned at "the gateway is not running" before the backup line: after a restore cut short (the
services are left stopped then) the technician was told `systemctl start edgegw` on a half-restored data
directory, and the `backup: REFUSED …` line docs/backup.md promises was not shown; `backup: FAILED` neither.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from gateway.backup.archive import STAGING_PREFIX, UNDER_WAY_MARK
from gateway.run_lock import DataDirLock
from tests.cli.edgegw import config, edgegw


def stopped_gateway(tmp_path: Path) -> tuple[Path, Path]:
    """A data directory as a gateway leaves it when it stops: its lock let go, its last status 2 minutes old."""
    cfg = config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    DataDirLock.take(data).release()
    (data / "status.json").write_text(
        json.dumps(
            {
                "gateway": "gw1",
                "version": "0",
                "pid": 4242,
                "written_at": time.time() - 120,
                "adapters": [],
                "uplinks": [],
            }
        )
    )
    return cfg, data


def restore_cut_short(data: Path) -> Path:
    staging = data / f"{STAGING_PREFIX}20261206T0301"
    staging.mkdir()
    (staging / UNDER_WAY_MARK).write_text("moved aside: …\n")
    return staging


@pytest.mark.parametrize("json_option", [[], ["--json"]])
def test_a_restore_cut_short_is_said_instead_of_a_start(tmp_path: Path, json_option: list[str]) -> None:
    cfg, data = stopped_gateway(tmp_path)
    staging = restore_cut_short(data)
    run = edgegw("status", *json_option, "-c", str(cfg))
    assert (run.returncode, run.stdout) == (1, "")
    first, second = run.stderr.splitlines()
    assert re.fullmatch(
        re.escape(f"{data / 'status.json'}: the gateway is not running (last status ")
        + r"12\d"
        + re.escape(
            f" s old, pid 4242), and a restore into {data} did not finish: do not start it on a part-restored data "
            "directory; put the data directory right (or restore again) first, as the backup line says"
        ),
        first,
    )
    assert "systemctl start" not in run.stderr
    assert second == (
        f"backup: REFUSED until a restore that did not finish is put right: {staging / UNDER_WAY_MARK} says where "
        f"each part of the data directory is; then delete {staging}"
    )


def test_a_failed_backup_is_shown_for_a_stopped_gateway(tmp_path: Path) -> None:
    cfg, data = stopped_gateway(tmp_path)
    (data / "backup-status.json").write_text(
        json.dumps(
            {
                "ok": False,
                "last_failure": {"at": "2026-12-06T03:00:00+00:00", "error": "backup: no room for edgegw-gw1"},
            }
        )
    )
    run = edgegw("status", "-c", str(cfg))
    assert (run.returncode, run.stdout) == (1, "")
    first, second = run.stderr.splitlines()
    assert first.endswith("`journalctl -u edgegw` says why it stopped, `systemctl start edgegw` starts it")
    assert second == "backup: FAILED at 2026-12-06T03:00:00+00:00: backup: no room for edgegw-gw1"


def test_a_restore_cut_short_is_shown_where_there_is_no_status(tmp_path: Path) -> None:
    cfg, data = stopped_gateway(tmp_path)
    (data / "status.json").unlink()  # a restore moves the data directory's files aside
    staging = restore_cut_short(data)
    run = edgegw("status", "-c", str(cfg))
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.splitlines() == [
        f"{data / 'status.json'}: no status yet; is the gateway running?",
        f"backup: REFUSED until a restore that did not finish is put right: {staging / UNDER_WAY_MARK} says where "
        f"each part of the data directory is; then delete {staging}",
    ]
