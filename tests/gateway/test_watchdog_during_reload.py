"""systemd's watchdog is fed during a reload: a slow reload must not get the gateway killed.

Before, `serve` pinged WATCHDOG=1 only between turns of its loop, and a SIGHUP reload (stopping the
old generation, reopening the buffer with its integrity check, ~5 s per million rows cold) ran inside
one turn: with a large backlog it outlasted WatchdogSec and systemd killed the gateway mid-reload.
A real `edgegw run` subprocess, a real NOTIFY_SOCKET datagram listener, and a reload made slow by an
adapter whose stop takes seconds (tests/gateway/slow_stop.py).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
WATCHDOG_USEC = 2_000_000  # systemd would kill a gateway silent for 2 s
STOP_S = 2.5  # the adapter's stop: beyond the watchdog's limit, within the stop's deadline (gateway/app.py)


@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    # pytest's tmp_path can exceed the 108-byte limit of a Unix socket path
    where = Path(tempfile.mkdtemp(dir="/tmp", prefix="egwwd"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(where / "notify.sock"))
    try:
        yield sock
    finally:
        sock.close()
        shutil.rmtree(where, ignore_errors=True)


def receive_until(
    sock: socket.socket, events: list[tuple[float, str]], done: Callable[[str], bool], what: str, timeout: float = 30.0
) -> None:
    """Record every notification (arrival time, text) until one satisfies `done`."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}; got {[m for _, m in events]}")
        sock.settimeout(left)
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            continue
        events.append((time.monotonic(), message))
        if done(message):
            return


def test_the_watchdog_is_fed_while_a_slow_reload_runs(tmp_path: Path, notify_socket: socket.socket) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""[gateway]
id = "gw-watchdog"
data_dir = "{tmp_path / "data"}"

[[adapters]]
name = "polite"
type = "test-slow-stop"
stop_s = {STOP_S}

[[uplinks]]
name = "orion"
type = "orion"
url = "http://127.0.0.1:{free_port()}"
"""
    )
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify_socket.getsockname(),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("WATCHDOG_PID", None)
    log = tmp_path / "gateway.log"
    events: list[tuple[float, str]] = []
    with log.open("wb") as out:
        gw = subprocess.Popen(
            [sys.executable, "-m", "tests.gateway.slow_stop", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        receive_until(notify_socket, events, lambda m: m.startswith("READY=1"), "READY")
        # a few pings of the running gateway first
        receive_until(notify_socket, events, lambda m: sum(e[1] == "WATCHDOG=1" for e in events) >= 2, "pings")
        gw.send_signal(signal.SIGHUP)
        receive_until(notify_socket, events, lambda m: m == "READY=1\nSTATUS=reloaded", "the reload's end")
        reloaded_at = events[-1][0]
        receive_until(notify_socket, events, lambda m: events[-1][0] - reloaded_at > 1.5, "pings after the reload")
        gw.send_signal(signal.SIGTERM)
        receive_until(notify_socket, events, lambda m: m == "STOPPING=1", "STOPPING")
        assert gw.wait(timeout=30) == 0, log.read_text()
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait()
    [reloading] = [t for t, m in events if m.startswith("RELOADING=1")]
    assert reloaded_at - reloading >= STOP_S, "the reload was not slow: the test proves nothing"
    pings = [t for t, m in events if m == "WATCHDOG=1"]
    assert any(reloading < t < reloaded_at for t in pings), "no ping during the reload"
    ready = events[0][0]
    stopping = next(t for t, m in events if m == "STOPPING=1")
    # from READY on, systemd expects a ping within every WATCHDOG_USEC
    marks = [ready, *[t for t in pings if t < stopping]]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(marks)]
    assert max(gaps) < WATCHDOG_USEC / 1e6, f"silent for {max(gaps)} s (gaps {gaps}); systemd would kill it"
