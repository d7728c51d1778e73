"""`edgegw` on a terminal of its own (a pty, its controlling terminal): what a technician sees and types."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass

from tests.cli.edgegw import ROOT, env


@dataclass
class Session:
    screen: bytes
    returncode: int


def on_terminal(*args: str, wait_for: bytes, typed: bytes, timeout: float = 30) -> Session:
    """Run `edgegw args` on a pty, type `typed` once `wait_for` is on the screen, and return the whole screen."""
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        # setsid --ctty: the pty becomes the controlling terminal, so /dev/tty (getpass's) is this one
        ["setsid", "--ctty", sys.executable, "-m", "gateway", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=ROOT,
        env=env(),
    )
    os.close(follower)
    screen, sent, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sent and wait_for in screen:
                os.write(leader, typed)
                sent = True
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    data = os.read(leader, 4096)
                except OSError:  # EIO: the process ended and closed the terminal
                    break
                if not data:
                    break
                screen += data
        return Session(screen=screen, returncode=proc.wait(timeout=10))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
