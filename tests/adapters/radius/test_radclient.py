"""Interop with Debian's radclient on a loopback UDP socket: its packets parse, our responses are accepted."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from adapters.radius import AcctStatusType, build_accounting_response, decode_request
from adapters.radius.errors import RadiusAuthenticatorError

pytestmark = pytest.mark.skipif(shutil.which("radclient") is None, reason="freeradius-utils (radclient) not installed")

SECRET = "loopback-secret"


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


def _radclient(port: int, secret: str, attrs: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["radclient", "-x", "-r", "1", "-t", "3", f"127.0.0.1:{port}", "acct", secret],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None
    proc.stdin.write(attrs.encode() + b"\n")
    proc.stdin.close()
    return proc


def _finish(proc: subprocess.Popen[bytes]) -> str:
    """Wait for radclient and return its output (stdin is already closed, so no communicate())."""
    assert proc.stdout is not None
    proc.wait(timeout=15)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return out


def test_radclient_stop_is_parsed_and_our_response_accepted(udp: socket.socket) -> None:
    attrs = (
        'Acct-Status-Type=Stop,User-Name="guest-0042",Calling-Station-Id="aabb.ccdd.eeff",'
        'Called-Station-Id="00-11-22-33-44-55:Kobe_Free_WiFi",Acct-Session-Id="80A1B2C3",'
        'NAS-Identifier="ap-lib-01",NAS-IP-Address=192.0.2.7,Acct-Session-Time=1805,'
        "Acct-Input-Octets=1000,Acct-Input-Gigawords=3,Acct-Output-Octets=2000,"
        "Acct-Terminate-Cause=Lost-Carrier,Acct-Delay-Time=2,Event-Timestamp=1775000000,"
        "Framed-IP-Address=10.20.0.15"
    )
    proc = _radclient(udp.getsockname()[1], SECRET, attrs)
    data, peer = udp.recvfrom(4096)
    now = datetime.now(UTC)
    req = decode_request(data, secret=SECRET.encode(), now=now, source=peer)
    r = req.record
    assert r.status is AcctStatusType.STOP
    assert r.user_name == "guest-0042"
    assert r.client_mac is not None and r.client_mac.value == "aa:bb:cc:dd:ee:ff"
    assert r.ap_mac is not None and r.ap_mac.value == "00:11:22:33:44:55"
    assert r.ssid == "Kobe_Free_WiFi"
    assert (r.session_id, r.nas_identifier, str(r.nas_ip_address)) == ("80A1B2C3", "ap-lib-01", "192.0.2.7")
    assert r.session_time == 1805
    assert r.input_octets == 3 * 2**32 + 1000
    assert r.output_octets == 2000
    assert r.terminate_cause_name == "Lost Carrier"
    assert r.event_timestamp == datetime.fromtimestamp(1775000000, UTC)
    assert str(r.framed_ip_address) == "10.20.0.15"
    assert (now - req.event_time).total_seconds() == 2
    udp.sendto(build_accounting_response(req, SECRET.encode()), peer)
    out = _finish(proc)
    assert proc.returncode == 0, out
    assert f"Received Accounting-Response Id {req.packet.identifier}" in out


def test_radclient_rejects_a_response_signed_with_another_secret(udp: socket.socket) -> None:
    proc = _radclient(udp.getsockname()[1], SECRET, 'Acct-Status-Type=Start,Acct-Session-Id="S1"')
    data, peer = udp.recvfrom(4096)
    req = decode_request(data, secret=SECRET.encode(), now=datetime.now(UTC), source=peer)
    udp.sendto(build_accounting_response(req, b"not-the-secret"), peer)
    out = _finish(proc)
    assert proc.returncode != 0
    assert "with invalid Response Authenticator!  (Shared secret is incorrect.)" in out
    assert "No reply from server" in out


def test_radclient_with_a_wrong_secret_is_refused(udp: socket.socket) -> None:
    proc = _radclient(udp.getsockname()[1], "wrong-secret", "Acct-Status-Type=Accounting-On")
    data, peer = udp.recvfrom(4096)
    with pytest.raises(RadiusAuthenticatorError) as err:
        decode_request(data, secret=SECRET.encode(), now=datetime.now(UTC), source=peer)
    assert f"radius Accounting-Request id {data[1]}: request authenticator does not match the shared secret" in str(
        err.value
    )
    proc.kill()
    _finish(proc)
