"""A real mosquitto broker on a free loopback port, with stop/start for outage tests.

`MosquittoBroker` keeps its persistence file in its own directory, so a stop/start keeps
persistent sessions and queued QoS1 messages like a real broker restart does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import restartable_port


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(path).exists():
        raise RuntimeError("mosquitto is not installed; `make test` installs it (apt-get install mosquitto)")
    return path


class MosquittoBroker:
    def __init__(
        self, workdir: Path, port: int | None = None, extra_conf: str = "", *, tcp_nodelay: bool = True
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or restartable_port()  # outages stop a broker and start it again on its port
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            "log_type error\n"
            "log_type warning\n"
            f"log_dest file {self.workdir}/mosquitto.log\n"
            # answer PUBACKs at once instead of waiting for Nagle's algorithm (as a tuned broker does);
            # tcp_nodelay=False is a stock mosquitto's behaviour
            f"set_tcp_nodelay {'true' if tcp_nodelay else 'false'}\n"
            # as root, mosquitto drops to user `mosquitto`, which cannot write the persistence and
            # log files in pytest's private tmp directories (sessions would not survive a restart)
            + ("user root\n" if os.geteuid() == 0 and "user " not in extra_conf else "")
            + extra_conf
        )

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "broker already running"
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (
                    (self.workdir / "mosquitto.log").read_text(errors="replace")
                    if (self.workdir / "mosquitto.log").exists()
                    else ""
                )
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {log[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Like a crash: no clean shutdown, no persistence write."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def closing_clients(self) -> int:
        """Connections to this broker that a client closed and the broker has not closed yet.

        The client's end of such a connection waits in FIN_WAIT1/FIN_WAIT2 (/proc/net/tcp) until the
        broker has read up to the end and closes its own. A client that reconnects with the same id
        before that takes the session over, and the broker drops what it had not read yet on the old
        connection, acks included: wait for 0 before such a reconnect.
        """
        port = f":{self.port:04X}"
        closing = 0
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(port) and fields[3] in ("04", "05"):  # remote port, FIN_WAIT1/2
                closing += 1
        return closing


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One broker for the whole session; do not stop it (use `mosquitto_private` for outages)."""
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_private(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A broker of this test's own, free to stop, kill and restart."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()
