"""The accounting receiver with Debian's radclient as the NAS: stored, answered after commit, refusals counted."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.radius.server import RadiusAccountingServer
from gateway.wifilog import Query, WifiLogStore

pytestmark = pytest.mark.skipif(shutil.which("radclient") is None, reason="freeradius-utils (radclient) not installed")

SECRET = "nas-secret-1"
BASE = (
    'User-Name="hanako@example.jp",Calling-Station-Id="AA-BB-CC-01-02-03",'
    'Called-Station-Id="00-11-22-33-44-55:Library-Free",Acct-Session-Id="S-0001",NAS-Identifier="ap-lib-01",'
    "Framed-IP-Address=10.20.0.15"
)
NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


async def radclient(port: int, secret: str, attrs: str, retries: int = 1, timeout: int = 2) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "radclient",
        "-r",
        str(retries),
        "-t",
        str(timeout),
        f"127.0.0.1:{port}",
        "acct",
        secret,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate(attrs.encode() + b"\n")
    return proc.returncode or 0, out.decode()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[RadiusAccountingServer, int]]:
    store = WifiLogStore(tmp_path)
    server = RadiusAccountingServer(store, {"127.0.0.1": SECRET.encode()}, clock=lambda: NOW)
    _, port = await server.start("127.0.0.1", 0)
    yield server, port
    await server.close()
    store.close()


async def test_start_interim_stop_from_radclient_become_one_session(served: tuple[RadiusAccountingServer, int]) -> None:
    server, port = served
    for attrs in (
        "Acct-Status-Type=Start,Acct-Delay-Time=3",
        "Acct-Status-Type=Interim-Update,Acct-Session-Time=600,Acct-Input-Octets=100,Acct-Output-Octets=200",
        "Acct-Status-Type=Stop,Acct-Session-Time=900,Acct-Input-Octets=150,Acct-Output-Octets=300,"
        "Acct-Terminate-Cause=User-Request",
    ):
        rc, out = await radclient(port, SECRET, f"{BASE},{attrs}")
        assert rc == 0, out
    [s] = server.store.search(Query(mac="aabb.cc01.0203"))
    assert (s.nas, s.session_id, s.user_name, s.ssid, s.framed_ip) == (
        "id:ap-lib-01",
        "S-0001",
        "hanako@example.jp",
        "Library-Free",
        "10.20.0.15",
    )
    assert s.start == NOW - timedelta(seconds=900)  # the Stop says 900 s; the fixed clock puts every event at NOW
    assert (s.stop, s.duration_s, s.input_octets, s.output_octets, s.terminate_cause) == (
        NOW,
        900,
        150,
        300,
        "User Request",
    )
    assert server.counters["answered"] == 3 and server.counters["stored"] == 3


async def test_wrong_secret_and_unknown_client_are_dropped_unanswered_and_counted(
    served: tuple[RadiusAccountingServer, int],
) -> None:
    server, port = served
    rc, _ = await radclient(port, "wrong", f"{BASE},Acct-Status-Type=Start", retries=1, timeout=1)
    assert rc != 0
    assert server.counters["bad_authenticator"] == 1 and server.counters["answered"] == 0
    server.secrets = {"127.0.0.2": SECRET.encode()}
    rc, _ = await radclient(port, SECRET, f"{BASE},Acct-Status-Type=Start", retries=1, timeout=1)
    assert rc != 0 and server.counters["unknown_client"] == 1
    assert server.store.search(Query(mac="aa:bb:cc:01:02:03")) == []


async def test_retransmission_is_answered_from_the_cache_and_stored_once(
    served: tuple[RadiusAccountingServer, int],
) -> None:
    server, port = served
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    from adapters.radius import AccountingRecord, build_accounting_request

    datagram = build_accounting_request(
        7,
        AccountingRecord(status_type=1, session_id="S-9", nas_identifier="ap2", calling_station_id="aa:bb:cc:00:00:09"),
        SECRET.encode(),
    )
    loop = asyncio.get_running_loop()
    replies = []
    for _ in range(2):
        await loop.sock_sendto(sock, datagram, ("127.0.0.1", port))
        replies.append(await asyncio.wait_for(loop.sock_recv(sock, 4096), 5))
    sock.close()
    assert replies[0] == replies[1] and replies[0][0] == 5  # Accounting-Response
    assert server.counters["retransmissions"] == 1 and server.counters["stored"] == 1
    assert len(server.store.search(Query(mac="aa:bb:cc:00:00:09"))) == 1


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.e2e
async def test_kill_9_between_commit_and_response_then_the_retransmission_is_stored_once_and_answered(
    tmp_path: Path,
) -> None:
    port = _free_udp_port()
    cmd = [sys.executable, "-m", "tests.adapters.radius.server_process", str(tmp_path), str(port), SECRET]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    dying = await asyncio.create_subprocess_exec(*cmd, "die", stdout=subprocess.PIPE, env=env)
    assert dying.stdout is not None
    assert (await dying.stdout.readline()).strip() == b"ready"
    # radclient retransmits the same packet every second, five times
    client = asyncio.create_task(radclient(port, SECRET, f"{BASE},Acct-Status-Type=Start", retries=6, timeout=1))
    assert await dying.wait() == -9
    healthy = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, env=env)
    try:
        assert healthy.stdout is not None
        assert (await healthy.stdout.readline()).strip() == b"ready"
        rc, out = await client
        assert rc == 0, out
    finally:
        healthy.kill()
        await healthy.wait()
    store = WifiLogStore(tmp_path)
    [s] = store.search(Query(mac="aa:bb:cc:01:02:03"))
    assert s.session_id == "S-0001"
    store.close()
