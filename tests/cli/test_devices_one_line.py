"""`read`, `probe modbus`, `scanner listen` and `backup`: a device gone or a file not there is one line.

Before: a Modbus TCP device that accepted and then dropped the link ended `read` and `probe` in a LinkError
traceback; `scanner listen --serial /dev/ttyNONE` in FileNotFoundError, and its Ctrl-C (the way it is stopped)
in a KeyboardInterrupt traceback; `backup verify /nonexist` said the file was "damaged or truncated"; `backup now`
by the service user on a data directory of root's ended in a PermissionError traceback.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.edgegw import ROOT, config, edgegw, env
from tests.gateway.secret_files import GATEWAY_USER, needs_root


@pytest.fixture
def drops_the_link() -> Iterator[int]:
    """A TCP 'device' that accepts and closes each connection at once without answering."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.recv(64)  # the request arrives, the link drops before any answer
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


LOST = "connection lost, got a closed link; check the device (or serial server) and its cable, then run it again"


def test_read_with_the_link_dropped_is_one_line(drops_the_link: int) -> None:
    port = f"tcp://127.0.0.1:{drops_the_link}"
    run = edgegw("read", "--profile", "dfrobot/sen0676", "--port", port, "--unit", "1", "--timeout", "1")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"read: unit 1 on {port}: stopped, got modbus {port}: {LOST}\n"


def test_probe_with_the_link_dropped_is_one_line(drops_the_link: int) -> None:
    port = f"tcp://127.0.0.1:{drops_the_link}"
    run = edgegw("probe", "modbus", "--port", port, "--units", "1-3", "--timeout", "1")
    assert (run.returncode, run.stdout) == (2, "")
    last = run.stderr.splitlines()[-1]  # unit 1 or 2: whether the first drop is seen as the close or as silence
    assert re.fullmatch(
        rf"probe: stopped at unit [12] at Modbus TCP, got modbus {re.escape(port)}: {re.escape(LOST)}", last
    )
    assert "Traceback" not in run.stderr


def test_scanner_listen_on_a_missing_port_is_one_line() -> None:
    run = edgegw("scanner", "listen", "--serial", "/dev/ttyNONE")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (
        "scanner listen: cannot open /dev/ttyNONE, got no such file or directory; check the cable and the name "
        "(ls /dev/serial/by-id /dev/input/by-id)\n"
    )


def test_scanner_listen_stopped_with_ctrl_c_ends_cleanly(tmp_path: Path) -> None:
    fifo = tmp_path / "scanner"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "scanner", "listen", "--serial", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"listening on {fifo}; Ctrl-C to stop\n".encode()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (0, b"", b"scanner listen: stopped\n")


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_backup_verify_of_a_file_not_there_says_so(tmp_path: Path, what: str) -> None:
    (tmp_path / "data").mkdir()
    target = tmp_path / "nonexist.tar" if what == "missing" else tmp_path
    run = edgegw("backup", "verify", str(target), "-c", str(config(tmp_path)))
    said = (
        "no such file; `edgegw backup list` shows the kept ones" if what == "missing" else "not a file, got a directory"
    )
    assert (run.returncode, run.stdout, run.stderr) == (2, "", f"backup verify: {target}: {said}\n")


@needs_root
def test_backup_now_by_the_service_user_in_a_directory_of_roots_is_one_line(tmp_path: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgegw-backup-") as name:
        top = Path(name)
        top.chmod(0o755)
        data = top / "data"
        data.mkdir(mode=0o755)  # root's, as `sudo mkdir` (or a root `edgegw run`) leaves it
        cfg = config(top, data)
        cfg.chmod(0o644)
        run = edgegw("backup", "now", "-c", str(cfg), uid=GATEWAY_USER)
        assert (run.returncode, run.stdout) == (1, "")
        assert run.stderr.splitlines()[-1] == (
            f"backup: cannot use {data / 'backups'}, got permission denied; {data} belongs to root: run it with sudo"
        )
        assert "Traceback" not in run.stderr
