"""Interop with util-linux `logger`: real RFC 3164 / RFC 5424 datagrams and RFC 6587 TCP frames, parsed."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from adapters.wifi_syslog import (
    AssociationKind,
    FrameSplitter,
    SDElement,
    SyslogFormat,
    decode_wifi_event,
    load_patterns,
    parse_syslog,
)

pytestmark = pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger not installed")
PATTERNS = load_patterns()


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


def _logger(port: int, *args: str) -> None:
    subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(port), *args], check=True, timeout=10)


def test_logger_rfc3164_hostapd_line(udp: socket.socket) -> None:
    _logger(
        udp.getsockname()[1],
        "--rfc3164",
        "-d",
        "-p",
        "daemon.info",
        "-t",
        "hostapd",
        "wlan0: AP-STA-CONNECTED AA:BB:CC:DD:EE:01 auth_alg=open",
    )
    data, _ = udp.recvfrom(4096)
    now = datetime.now(UTC)
    msg = parse_syslog(data, now=now)
    assert msg.format is SyslogFormat.RFC3164
    assert (msg.facility, msg.severity, msg.app_name) == (3, 6, "hostapd")
    assert msg.hostname == socket.gethostname().split(".")[0]
    assert msg.timestamp is not None
    # logger writes the host's local clock time without a zone: the wall-clock reading must match it
    wall = datetime.now().replace(microsecond=0)
    assert abs((msg.timestamp.replace(tzinfo=None) - wall).total_seconds()) < 5
    e = decode_wifi_event(data, now=now, patterns=PATTERNS)
    assert e is not None
    assert (e.kind, e.client_mac.value, e.interface, e.params) == (
        AssociationKind.CONNECTED,
        "aa:bb:cc:dd:ee:01",
        "wlan0",
        (("auth_alg", "open"),),
    )


def test_logger_rfc5424_with_structured_data(udp: socket.socket) -> None:
    _logger(
        udp.getsockname()[1],
        "--rfc5424",
        "-d",
        "-p",
        "local0.notice",
        "-t",
        "hostapd",
        "--msgid",
        "STA",
        "--sd-id",
        "wifi@32473",
        "--sd-param",
        'ssid="Kobe \\"Free\\""',
        "wlan1: AP-STA-DISCONNECTED 00:11:22:33:44:55",
    )
    data, _ = udp.recvfrom(4096)
    now = datetime.now(UTC)
    msg = parse_syslog(data, now=now)
    assert msg.format is SyslogFormat.RFC5424
    assert (msg.facility, msg.severity, msg.app_name, msg.msgid) == (16, 5, "hostapd", "STA")
    assert msg.timestamp is not None and abs((msg.timestamp - now).total_seconds()) < 5
    assert SDElement(id="wifi@32473", params=(("ssid", 'Kobe "Free"'),)) in msg.structured_data
    assert msg.structured_data[0].id == "timeQuality"
    e = decode_wifi_event(data, now=now, patterns=PATTERNS)
    assert e is not None and (e.kind, e.client_mac.value, e.interface) == (
        AssociationKind.DISCONNECTED,
        "00:11:22:33:44:55",
        "wlan1",
    )


def test_logger_rfc5424_nilvalues(udp: socket.socket) -> None:
    _logger(udp.getsockname()[1], "--rfc5424=notq,notime,nohost", "-d", "-t", "x", "hello")
    data, _ = udp.recvfrom(4096)
    msg = parse_syslog(data, now=datetime.now(UTC))
    assert (msg.timestamp, msg.hostname, msg.app_name, msg.structured_data, msg.message) == (
        None,
        None,
        "x",
        (),
        "hello",
    )


@pytest.mark.parametrize("octet_count", [True, False])
def test_logger_tcp_frames(octet_count: bool) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)
    try:
        lines = ["wlan0: AP-STA-CONNECTED 00:11:22:33:44:55", "wlan0: AP-STA-DISCONNECTED 00:11:22:33:44:55"]
        args = ["logger", "-n", "127.0.0.1", "-P", str(server.getsockname()[1]), "-T", "--rfc5424", "-t", "hostapd"]
        if octet_count:
            args.append("--octet-count")
        proc = subprocess.run([*args], input=("\n".join(lines) + "\n").encode(), timeout=10, check=False)
        assert proc.returncode == 0
        conn, _ = server.accept()
        splitter = FrameSplitter()
        frames: list[bytes] = []
        with conn:
            conn.settimeout(10)
            while chunk := conn.recv(7):  # small reads: frames straddle them
                splitter.feed(chunk)
                frames += iter(splitter.next, None)
        frames += splitter.close()
    finally:
        server.close()
    assert [m.message for m in (parse_syslog(f, now=datetime.now(UTC)) for f in frames)] == lines
