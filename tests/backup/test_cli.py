"""`edgegw backup now|list|verify|restore` through the real argument parser, on a 0.1.0 data directory."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.cli import main


def test_now_list_verify_restore(box: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, data_dir = box
    assert main(["backup", "now", "-c", str(config)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.parent == data_dir / "backups"
    assert main(["backup", "list", "-c", str(config)]) == 0
    listing = capsys.readouterr().out
    assert str(path) in listing and "last success: " in listing
    assert main(["backup", "verify", str(path), "-c", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok, gateway fixture-gw, edgegw 0.1.0, taken ")
    with sqlite3.connect(data_dir / "buffer.db") as db:
        db.execute("DELETE FROM outbox")
    assert main(["backup", "restore", str(path), "--service-manager", "none", "-c", str(config)]) == 0
    assert capsys.readouterr().out.startswith(f"restored {path}; the files it replaced are in {data_dir}/.pre-restore-")
    with sqlite3.connect(data_dir / "buffer.db") as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 900


def test_restore_refuses_while_the_gateway_runs_and_a_truncated_file(
    box: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, data_dir = box
    assert main(["backup", "now", "-c", str(config)]) == 0
    path = Path(capsys.readouterr().out.strip())
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a running gateway's control socket
    control.bind(str(data_dir / "control.sock"))
    control.listen(1)
    try:
        assert main(["backup", "restore", str(path), "--service-manager", "none", "-c", str(config)]) == 1
    finally:
        control.close()
    assert "the gateway is running" in capsys.readouterr().err
    path.write_bytes(path.read_bytes()[:1000])
    assert main(["backup", "verify", str(path), "-c", str(config)]) == 1
    assert "the file is damaged or truncated" in capsys.readouterr().err
    assert main(["backup", "restore", str(path), "--service-manager", "none", "-c", str(config)]) == 1
    assert "the file is damaged or truncated" in capsys.readouterr().err


def test_edgegw_status_shows_a_failed_backup(box: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, data_dir = box
    (data_dir / "status.json").write_text(
        json.dumps(
            {
                "gateway": "fixture-gw",
                "version": "0.1.0",
                "pid": 1,
                "written_at": time.time(),  # a status just written: an old one is a gateway not running
                "adapters": [],
                "uplinks": [],
            }
        )
    )
    share = data_dir / "share"
    share.write_text("not a directory: the share is not mounted")
    config.write_text(config.read_text().replace("[backup]\n", f'[backup]\ncopy_to = "{share}"\n'))
    assert main(["backup", "now", "-c", str(config)]) == 1
    assert main(["status", "-c", str(config)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("backup: FAILED at ") and str(share) in last


def test_restore_under_systemd_stops_what_runs_and_starts_only_that_again(
    box: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd cannot run as PID 1 in this test (tests/packaging boots it in a container for the package):
    a `systemctl` on PATH answers `is-active` as a box with lockers switched off would and records the
    rest, so what restore asks of it, and in which order, is checked."""
    config, _ = box
    assert main(["backup", "now", "-c", str(config)]) == 0
    path = Path(capsys.readouterr().out.strip())
    calls = tmp_path / "systemctl.calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        # the kiosk is not enabled on this box: only the gateway and the web UI run
        'if [ "$1" = is-active ]; then [ "$3" != edgegw-kiosk.service ]; exit $?; fi\n'
    )
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert main(["backup", "restore", str(path), "--service-manager", "systemd", "-c", str(config)]) == 0
    asked = [line for line in calls.read_text().splitlines() if not line.startswith("is-active")]
    assert asked == ["stop edgegw-web.service edgegw.service", "start edgegw.service edgegw-web.service"]
