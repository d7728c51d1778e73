"""The syslog receiver's other paths, and the `wifi_syslog` adapter as the runtime runs it (loaded directly:
the entry point needs the editable install refreshed)."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.wifi_syslog import load_patterns, parse_syslog
from adapters.wifi_syslog.adapter import WifiSyslogAdapter
from adapters.wifi_syslog.config import WifiSyslogConfig
from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.adapter_api import AdapterContext
from gateway.records import Reading
from gateway.wifilog import Query, SessionEvent, WifiLogStore

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
MAC = "aa:bb:cc:dd:ee:01"


def line(word: str, t: str = "11:00:00", host: str = "ap1") -> bytes:
    return f"<30>Dec  4 {t} {host} hostapd: wlan0: AP-STA-{word} {MAC}".encode()


async def until(cond: object, what: str) -> None:
    for _ in range(300):
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_repeated_join_ignored_lines_trailing_frame_and_a_leave_without_join(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    seen: list[SessionEvent] = []
    rx = SyslogReceiver(store, clock=lambda: NOW, on_event=seen.append)
    await rx.close()  # before any listener: nothing to close
    _, port = await rx.start_tcp("127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    # a join twice (hostapd repeats it on reauthentication), an unrelated line, a leave without LF at EOF
    writer.write(line("CONNECTED") + b"\n" + line("CONNECTED", "11:00:05") + b"\n")
    writer.write(b"<30>Dec  4 11:00:06 ap1 dnsmasq: DHCPACK(br-lan) 10.0.0.5\n" + line("DISCONNECTED", "11:10:00"))
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await until(lambda: rx.counters["lines"] == 4, "4 lines")
    await rx.flush()
    [s] = store.search(Query(mac=MAC))
    assert s.stop is not None and rx.counters["ignored"] == 1 and len(seen) == 3
    # a leave whose join the gateway never saw (it restarted): a session of its own, closed
    fresh = SyslogReceiver(store, clock=lambda: NOW)
    event = load_patterns().match(parse_syslog(line("DISCONNECTED", "12:00:00", "ap9"), now=NOW), now=NOW)
    assert event is not None
    ev = fresh.session_event(event, "127.0.0.1")
    assert ev.session_id.startswith("assoc-") and ev.nas == "syslog:ap9"
    d = rx.diagnostics()
    assert d["summary"] == "lines 4, association events stored 3" and d["malformed"] == {}
    await rx.close()
    store.close()


async def test_a_failing_store_is_reported(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    rx = SyslogReceiver(store, clock=lambda: NOW)
    _, port = await rx.start_udp("127.0.0.1", 0)
    store.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(line("CONNECTED"), ("127.0.0.1", port))
    await until(lambda: rx.counters["events"] == 1, "the event")
    await rx.flush()
    assert rx.last_error is not None and rx.last_error.startswith("wifi syslog store: commit failed, got ")
    await rx.close()


def test_config_needs_a_port_and_one_address() -> None:
    with pytest.raises(ValidationError, match="udp_port = 0 and tcp_port unset: nothing to listen on"):
        WifiSyslogConfig.model_validate({"name": "s", "type": "wifi_syslog", "listen": "127.0.0.1", "udp_port": None})
    with pytest.raises(ValidationError, match="not every address"):
        WifiSyslogConfig.model_validate({"name": "s", "type": "wifi_syslog", "listen": "::"})
    with pytest.raises(ValidationError, match="must be an IP address of this box"):
        WifiSyslogConfig.model_validate({"name": "s", "type": "wifi_syslog", "listen": "wlan0"})


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_adapter_listens_on_udp_and_tcp_and_emits_usage(tmp_path: Path) -> None:
    udp, tcp = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    cfg = WifiSyslogConfig.model_validate(
        {
            "name": "wifi-syslog",
            "type": "wifi_syslog",
            "listen": "127.0.0.1",
            "udp_port": udp,
            "tcp_port": tcp,
            "senders": ["127.0.0.1"],
            "usage_interval_min": 0.002,
        }
    )
    adapter = WifiSyslogAdapter(cfg, AdapterContext(gateway_id="g", data_dir=str(tmp_path)))
    assert adapter.diagnostics() == {"summary": "starting"}
    readings: list[Reading] = []

    async def emit(r: Reading) -> None:
        readings.append(r)

    task = asyncio.create_task(adapter.run(emit))
    await until(lambda: adapter.receiver is not None and adapter.receiver.listeners == 2, "listening")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(line("CONNECTED"), ("127.0.0.1", udp))
    await until(lambda: any(r.attributes["connectedClients"].value == 1 for r in readings), "usage with one client")
    assert readings[-1].entity_id == "urn:ngsi-ld:WifiAccessPointUsage:syslog-ap1"
    assert adapter.diagnostics()["stored"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(("udp", "tcp"), [(True, False), (False, True)])
async def test_adapter_with_one_transport_only(tmp_path: Path, udp: bool, tcp: bool) -> None:
    cfg = WifiSyslogConfig.model_validate(
        {
            "name": "s",
            "type": "wifi_syslog",
            "listen": "127.0.0.1",
            "udp_port": _free_port(socket.SOCK_DGRAM) if udp else None,
            "tcp_port": _free_port(socket.SOCK_STREAM) if tcp else None,
        }
    )
    adapter = WifiSyslogAdapter(cfg, AdapterContext(gateway_id="g", data_dir=str(tmp_path)))

    async def emit(r: Reading) -> None:
        raise RuntimeError("not reached in this test")

    task = asyncio.create_task(adapter.run(emit))
    await until(lambda: adapter.receiver is not None and adapter.receiver.listeners == 1, "listening")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
