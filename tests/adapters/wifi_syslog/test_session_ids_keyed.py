"""A syslog session's id, and the id of its WifiSessionEvent entity, are keyed with a secret of the box.

The platform receives the AP (`accessPoint`) and the join time in clear: were either id a plain hash of
them and the client MAC, it could confirm a MAC it knows behind an event in one hash, or try a vendor's
16.7 million in a minute, and so unmask the `pz1:` token in `clientMac` for the whole key period. The
same box must give the same ids again after a restart, so that a replayed line overwrites its entity.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from adapters.wifi_syslog import load_patterns, parse_syslog
from adapters.wifi_syslog.adapter import WifiSyslogAdapter
from adapters.wifi_syslog.config import WifiSyslogConfig
from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.adapter_api import AdapterContext
from gateway.errors import ConfigError
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.v2 import to_v2_entity
from gateway.records import Reading
from gateway.wifilog import Query, WifiLogStore

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
MAC = "aa:bb:cc:dd:ee:01"
JST = timezone(timedelta(hours=9))


def line(word: str, mac: str = MAC, t: str = "11:00:00") -> bytes:
    return f"<30>Dec  4 {t} ap1 hostapd: wlan0: AP-STA-{word} {mac}".encode()


def session_id(data_dir: Path, data: bytes) -> str:
    store = WifiLogStore(data_dir)
    try:
        event = load_patterns().match(parse_syslog(data, now=NOW), now=NOW)
        assert event is not None
        return SyslogReceiver(store, clock=lambda: NOW).session_event(event, "192.0.2.1").session_id
    finally:
        store.close()


def test_the_session_id_is_keyed_per_box_and_stable_across_restarts(tmp_path: Path) -> None:
    box_a, box_b = tmp_path / "a", tmp_path / "b"
    join = session_id(box_a, line("CONNECTED"))
    # a receiver started anew on the same box (a restart): the same id, so a replayed join merges
    assert session_id(box_a, line("CONNECTED")) == join
    assert join.startswith("assoc-") and len(join) == len("assoc-") + 24
    # another box, the same line: another id, since it depends on a key only each box holds
    assert session_id(box_b, line("CONNECTED")) != join
    # a leave whose join was never seen makes its id the same way
    leave = session_id(box_a, line("DISCONNECTED", t="11:30:00"))
    assert session_id(box_b, line("DISCONNECTED", t="11:30:00")) != leave


async def _run_adapter(data_dir: Path, datagrams: list[bytes]) -> list[Reading]:
    """The adapter as the runtime runs it (real UDP, store, pseudonymizer), fed `datagrams`, stopped after
    their session events came out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    cfg = WifiSyslogConfig.model_validate(
        {
            "name": "wifi-syslog",
            "type": "wifi_syslog",
            "listen": "127.0.0.1",
            "udp_port": port,
            "tcp_port": None,
            "session_events": True,
        }
    )
    adapter = WifiSyslogAdapter(cfg, AdapterContext(gateway_id="g", data_dir=str(data_dir)))
    got: list[Reading] = []

    async def emit(r: Reading) -> None:
        if r.entity_type == "WifiSessionEvent":
            got.append(r)

    task = asyncio.create_task(adapter.run(emit))
    try:
        for _ in range(300):
            if adapter.receiver is not None and adapter.receiver.listeners:
                break
            await asyncio.sleep(0.01)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for data in datagrams:
                s.sendto(data, ("127.0.0.1", port))
        for _ in range(300):
            if len(got) == len(datagrams):
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(got) == len(datagrams), f"{len(got)} session events for {len(datagrams)} lines"
    return got


def _body(r: Reading) -> dict[str, Any]:
    return to_v2_entity(r, encoding=ValueEncoding.PERCENT)


async def test_the_entity_id_is_keyed_per_box_and_replays_overwrite_the_same_entity(tmp_path: Path) -> None:
    # the AP's time is JST; now, so the receiver believes it
    stamp = datetime.now(JST).strftime("%b %e %H:%M:%S")
    join = f"<30>{stamp} ap1 hostapd: wlan0: AP-STA-CONNECTED {MAC.upper()}".encode()
    other = f"<30>{stamp} ap1 hostapd: wlan0: AP-STA-CONNECTED AA:BB:CC:00:00:02".encode()
    [first, first_other] = await _run_adapter(tmp_path / "a", [join, other])
    # the gateway restarted and the relay sends the join again: the same entity, one session in the log
    [again] = await _run_adapter(tmp_path / "a", [join])
    assert again.entity_id == first.entity_id
    store = WifiLogStore(tmp_path / "a")
    try:
        assert len(store.search(Query(mac=MAC))) == 1
    finally:
        store.close()
    # another box (its own keys) receiving the very same line: everything the platform sees is the same
    # but the entity id and the token
    [elsewhere] = await _run_adapter(tmp_path / "b", [join])
    assert elsewhere.entity_id != first.entity_id
    assert first.attributes["clientMac"].value.startswith("pz1:")
    # and of two clients on one box, nothing else differs either: no unkeyed function of the MAC is left
    for a, b in ((first, elsewhere), (first, first_other)):
        body_a, body_b = _body(a), _body(b)
        for body in (body_a, body_b):
            del body["id"], body["clientMac"]
        assert body_a == body_b


async def test_a_secret_store_that_cannot_be_read_stops_the_start_before_any_line_is_taken(tmp_path: Path) -> None:
    # else every line would reach the commit unable to make its session id, and be lost there
    store = WifiLogStore(tmp_path)
    (tmp_path / "secrets.key").write_bytes(b"not a key\n")
    rx = SyslogReceiver(store, clock=lambda: NOW)
    try:
        for start in (rx.start_udp, rx.start_tcp):
            with pytest.raises(ConfigError) as err:
                await start("127.0.0.1", 0)
            assert str(err.value) == (
                f"{tmp_path / 'secrets.key'}: not a secret store key, got 9 bytes (expected 32 url-safe "
                "base64-encoded bytes, 44 characters); move it aside: a new one is made with the first secret set"
            )
        assert rx.listeners == 0
    finally:
        await rx.close()
        store.close()
