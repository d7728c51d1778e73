"""A failed sd_notify never raises: systemd must not kill a gateway that recovered (review s20, r8).

Before, `Notifier._send` made its socket outside its suppress(OSError): one moment of EMFILE ended the
watchdog task with an exception nobody saw, and systemd killed the recovered gateway at WatchdogSec; the
same raise from ready()/reloading()/stopping() aborted a reload or skipped the orderly stop.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.systemd import Notifier

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    # pytest's tmp_path can exceed the 108-byte limit of a Unix socket path
    where = Path(tempfile.mkdtemp(dir="/tmp", prefix="egwnf"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(where / "notify.sock"))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()
        shutil.rmtree(where, ignore_errors=True)


def _received(sock: socket.socket) -> list[str]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return got


def test_a_moment_without_descriptors_raises_nothing_and_the_watchdog_pings_on(notify_socket: socket.socket) -> None:
    address = notify_socket.getsockname()
    run = subprocess.run(
        [sys.executable, "-m", "tests.gateway.watchdog_emfile", address],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"raised": [], "watchdog_task_ended": False}
    received = _received(notify_socket)
    assert not [m for m in received if m != "WATCHDOG=1"], "notifications sent while no descriptor was free?"
    assert len(received) >= 2, "the watchdog did not ping again once descriptors were free"
    lines = [line.removeprefix("gateway.systemd: ") for line in run.stderr.splitlines() if "gateway.systemd: " in line]
    errno = "[Errno 24] Too many open files"
    assert lines[:3] == [
        f"WARNING systemd notification READY=1 not sent to {address}: {errno}",
        f"WARNING systemd notification RELOADING=1 not sent to {address}: {errno}",
        f"WARNING systemd notification STOPPING=1 not sent to {address}: {errno}",
    ]
    assert [line for line in lines[3:] if not line.startswith("DEBUG")] == [
        f"WARNING systemd watchdog: ping not sent to {address}: {errno}; systemd stops the gateway if no ping "
        "goes through for 0.1 s (WatchdogSec)",
        "INFO systemd watchdog: pings go through again",
    ]


def test_a_notification_to_a_socket_nobody_listens_on_is_logged_and_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """systemd gone (a shutdown, a unit run by hand with a stale NOTIFY_SOCKET): a line, never a raise."""
    gone = str(tmp_path / "gone.sock")
    notifier = Notifier(gone, watchdog_usec=1_000_000)
    notifier.ready("running")
    notifier.watchdog()  # feed_watchdog logs the pings' spells
    notifier.stopping()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"systemd notification READY=1 not sent to {gone}: [Errno 2] No such file or directory"),
        ("WARNING", f"systemd notification STOPPING=1 not sent to {gone}: [Errno 2] No such file or directory"),
    ]
