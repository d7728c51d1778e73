"""`edgegw status` says a dead gateway is dead, and who owns a status file it may not read.

Before, a gateway killed 20 s earlier was shown with its adapters "running", exit 0 (the file outlives its
writer); `status --json` printed any JSON (`[]`) with exit 0; after a `sudo edgegw run` the service user was told
to "run as the gateway's user", which it was.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.edgegw import ROOT, config, edgegw, env
from tests.gateway.secret_files import GATEWAY_USER, data_dir, needs_root

__all__ = ["data_dir"]  # the fixture


def status_doc(written_at: float) -> str:
    return json.dumps(
        {"gateway": "gw1", "version": "0", "pid": 4242, "written_at": written_at, "adapters": [], "uplinks": []}
    )


def test_a_gateway_killed_is_said_not_running_at_once(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    gw = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env(),
    )
    try:
        status = tmp_path / "data" / "status.json"
        deadline = time.monotonic() + 30
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        running = edgegw("status", "-c", str(cfg))
        assert running.returncode == 0, running.stderr
        assert running.stdout.startswith("gateway gw1 (edgegw ") and f"pid {gw.pid})" in running.stdout
    finally:
        gw.send_signal(signal.SIGKILL)
        gw.wait()
    dead = edgegw("status", "-c", str(cfg))
    assert (dead.returncode, dead.stdout) == (1, "")
    assert dead.stderr.startswith(f"{status}: the gateway is not running (last status ")
    assert dead.stderr.endswith(
        f" s old, pid {gw.pid}); `journalctl -u edgegw` says why it stopped, `systemctl start edgegw` starts it\n"
    )
    assert edgegw("status", "--json", "-c", str(cfg)).returncode == 1


def test_without_a_lock_file_an_old_status_is_said_not_running(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "status.json").write_text(status_doc(time.time() - 3600))
    run = edgegw("status", "-c", str(cfg))
    assert run.returncode == 1
    assert re.search(r": the gateway is not running \(last status 36\d\d s old, pid 4242\); ", run.stderr)
    (tmp_path / "data" / "status.json").write_text(status_doc(time.time()))
    assert edgegw("status", "-c", str(cfg)).returncode == 0


@pytest.mark.parametrize("text", ["[]", "{}", '"status"'])
def test_status_json_of_a_document_that_is_no_status_is_an_error(tmp_path: Path, text: str) -> None:
    cfg = config(tmp_path)
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "status.json"
    path.write_text(text)
    run = edgegw("status", "--json", "-c", str(cfg))
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith(f"{path}: not a status document")


@needs_root
def test_a_status_file_left_by_a_root_run_names_its_owner_and_the_chown(data_dir: Path) -> None:
    status = data_dir / "status.json"
    status.write_text(status_doc(time.time()))
    status.chmod(0o640)  # root:root 0640, as a `sudo edgegw run` writes it
    cfg = config(data_dir.parent, data_dir)
    cfg.chmod(0o644)
    run = edgegw("status", "-c", str(cfg), uid=GATEWAY_USER)
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == (
        f"{status}: not readable by user nobody, got a file owned by root:root (mode 0640); run `sudo chown "
        f"nobody:nogroup {status}` and start the gateway as nobody (systemctl start edgegw), not with sudo\n"
    )
