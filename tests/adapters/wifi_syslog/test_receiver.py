"""The syslog receiver on loopback: util-linux `logger` (UDP, TCP octet-counted) and raw sockets (LF, mixed)."""

from __future__ import annotations

import asyncio
import errno
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.wifi_syslog.framing import encode_octet_counted
from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.errors import AdapterError
from gateway.wifilog import Query, WifiLogStore
from gateway.wifilog.runner import listen_error

pytestmark = pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger not installed")
NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
MAC = "aa:bb:cc:dd:ee:01"


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[SyslogReceiver]:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW)
    yield rx
    await rx.close()
    store.close()


async def logger(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("logger", *args)
    assert await proc.wait() == 0


async def test_logger_udp_3164_and_5424_join_and_leave_make_one_session(receiver: SyslogReceiver) -> None:
    _, port = await receiver.start_udp("127.0.0.1", 0)
    await logger(
        "-n",
        "127.0.0.1",
        "-P",
        str(port),
        "-d",
        "--rfc3164",
        "-t",
        "hostapd",
        f"wlan0: AP-STA-CONNECTED {MAC} auth_alg=open",
    )
    await logger(
        "-n", "127.0.0.1", "-P", str(port), "-d", "--rfc5424", "-t", "hostapd", f"wlan0: AP-STA-DISCONNECTED {MAC}"
    )
    for _ in range(200):
        if receiver.counters["events"] == 2:
            break
        await asyncio.sleep(0.01)
    await receiver.flush()
    [s] = receiver.store.search(Query(mac=MAC.upper()))
    assert s.source == "syslog" and s.stop is not None and s.nas.startswith("syslog:")
    assert MAC not in s.session_id and receiver.counters["stored"] == 2


async def test_tcp_octet_counted_from_logger_and_lf_and_mixed_from_a_raw_socket(receiver: SyslogReceiver) -> None:
    _, port = await receiver.start_tcp("127.0.0.1", 0)
    await logger(
        "-n", "127.0.0.1", "-P", str(port), "-T", "--octet-count", "-t", "hostapd", f"wlan0: AP-STA-CONNECTED {MAC}"
    )
    unifi = (
        b"<30>Dec  4 11:00:00 U7PG2 0418d6a0b1c2,U7PG2-6.5.28: stahtd[2456]: [STA-TRACKER].stahtd_dump_event(): "
        b'{"message_type":"STA_ASSOC_TRACKER","mac":"aa:bb:cc:dd:ee:02","vap":"ath0","event_type":"association"}'
    )
    line = b"<30>Dec  4 11:05:00 ap1 hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:03"
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(unifi + b"\n" + encode_octet_counted(line) + b"not syslog at all\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    for _ in range(300):
        if receiver.counters["lines"] == 4:
            break
        await asyncio.sleep(0.01)
    await receiver.flush()
    assert receiver.counters["events"] == 3 and receiver.counters["unparsable"] == 1
    [u] = receiver.store.search(Query(mac="aa:bb:cc:dd:ee:02"))
    assert (u.ap_mac, u.nas) == ("04:18:d6:a0:b1:c2", "syslog:04:18:d6:a0:b1:c2")
    assert len(receiver.store.search(Query(mac="aa:bb:cc:dd:ee:03"))) == 1


async def test_a_broken_octet_count_closes_the_stream_and_is_counted(receiver: SyslogReceiver) -> None:
    _, port = await receiver.start_tcp("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"99999999999 <30>x\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the receiver
    writer.close()
    await writer.wait_closed()
    assert receiver.counters["framing_errors"] == 1


async def test_senders_outside_the_allowed_set_are_refused(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW, allowed=frozenset({"192.0.2.1"}))
    _, port = await rx.start_udp("127.0.0.1", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(f"<30>Dec  4 11:05:00 ap1 hostapd: wlan0: AP-STA-CONNECTED {MAC}".encode(), ("127.0.0.1", port))
    for _ in range(200):
        if rx.counters["refused_sender"]:
            break
        await asyncio.sleep(0.01)
    assert rx.counters["refused_sender"] == 1 and rx.counters["lines"] == 0
    await rx.close()
    store.close()


async def test_a_port_that_cannot_be_bound_says_why_and_what_to_do(receiver: SyslogReceiver) -> None:
    _, port = await receiver.start_udp("127.0.0.1", 0)
    with pytest.raises(
        AdapterError, match=rf"wifi syslog udp: cannot listen on 127\.0\.0\.1:{port}, got .*in use.*rsyslog"
    ):
        await receiver.start_udp("127.0.0.1", port)  # taken (here by itself; in the field, rsyslog)
    with pytest.raises(AdapterError, match=r"cannot listen on 192\.0\.2\.1:5514, got .*; listen must be an address"):
        await receiver.start_tcp("192.0.2.1", 5514)  # TEST-NET-1: no address of this box


def test_a_low_port_without_the_capability_names_it() -> None:
    # tests run as root here, so a refused bind cannot be caused; the errno is what the kernel gives edgegw
    error = listen_error(PermissionError(errno.EACCES, "Permission denied"), "wifi syslog udp", "10.0.0.2", 514)
    assert str(error) == (
        "wifi syslog udp: cannot listen on 10.0.0.2:514, got Permission denied; a port below 1024 needs "
        "CAP_NET_BIND_SERVICE: edgegw.service grants it; under supervisord or by hand use a port of 1024 or more "
        "(and set the APs to send there)"
    )
