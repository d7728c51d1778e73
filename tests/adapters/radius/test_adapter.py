"""The `radius` adapter as the runtime runs it: config validated, secrets from the secret store, usage emitted.

Loaded directly (the entry point needs the editable install refreshed)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.radius.adapter import RadiusAdapter
from adapters.radius.config import RadiusConfig
from gateway.adapter_api import AdapterContext
from gateway.errors import BufferFull
from gateway.records import Reading
from gateway.secrets import SecretStore
from gateway.wifilog import Query, WifiLogStore
from tests.adapters.radius.test_server import BASE, SECRET, radclient

pytestmark = pytest.mark.skipif(shutil.which("radclient") is None, reason="freeradius-utils (radclient) not installed")


def test_config_refuses_every_address_and_duplicate_clients() -> None:
    with pytest.raises(ValidationError, match="not every address"):
        RadiusConfig.model_validate(
            {
                "name": "r",
                "type": "radius",
                "listen": "0.0.0.0",
                "clients": [{"address": "192.0.2.1", "secret": "secret:a"}],
            }
        )
    with pytest.raises(ValidationError, match=r"192\.0\.2\.1 more than once"):
        RadiusConfig.model_validate(
            {
                "name": "r",
                "type": "radius",
                "listen": "127.0.0.1",
                "clients": [{"address": "192.0.2.1", "secret": "secret:a"}] * 2,
            }
        )
    with pytest.raises(ValidationError, match="secret"):
        RadiusConfig.model_validate(
            {
                "name": "r",
                "type": "radius",
                "listen": "127.0.0.1",
                "clients": [{"address": "192.0.2.1", "secret": "clear-text"}],
            }
        )


async def _listening(adapter: RadiusAdapter) -> None:
    for _ in range(200):
        if adapter.server is not None and adapter.server.transport is not None:
            return
        await asyncio.sleep(0.01)


async def _session_event_in(readings: list[Reading]) -> None:
    for _ in range(300):
        if any(r.entity_type == "WifiSessionEvent" for r in readings):
            return
        await asyncio.sleep(0.01)


def _session_events_adapter(tmp_path: Path) -> tuple[RadiusAdapter, int]:
    """An adapter with session_events on, its NAS secret in the store; and its port."""
    SecretStore(tmp_path).set("radius.ap1", SECRET)
    port = _free_port()
    cfg = RadiusConfig.model_validate(
        {
            "name": "wifi-radius",
            "type": "radius",
            "listen": "127.0.0.1",
            "port": port,
            "session_events": True,
            "clients": [{"address": "127.0.0.1", "secret": "secret:radius.ap1"}],
        }
    )
    return RadiusAdapter(cfg, AdapterContext(gateway_id="lib", data_dir=str(tmp_path))), port


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_adapter_stores_answers_and_emits_usage_without_personal_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    SecretStore(tmp_path).set("radius.ap1", SECRET)
    port = _free_port()
    cfg = RadiusConfig.model_validate(
        {
            "name": "wifi-radius",
            "type": "radius",
            "listen": "127.0.0.1",
            "port": port,
            "usage_interval_min": 0.005,
            "clients": [{"address": "127.0.0.1", "secret": "secret:radius.ap1"}],
        }
    )
    adapter = RadiusAdapter(cfg, AdapterContext(gateway_id="lib", data_dir=str(tmp_path)))
    readings: list[Reading] = []

    async def emit(r: Reading) -> None:
        readings.append(r)

    task = asyncio.create_task(adapter.run(emit))
    try:
        await _listening(adapter)
        rc, out = await radclient(port, SECRET, f"{BASE},Acct-Status-Type=Start")
        assert rc == 0, out
        rc, out = await radclient(
            port, SECRET, f"{BASE},Acct-Status-Type=Interim-Update,Acct-Session-Time=60,Acct-Input-Octets=5000"
        )
        assert rc == 0, out
        for _ in range(300):
            if any(r.attributes["inputOctets"].value == 5000 for r in readings):
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    usage = [r for r in readings if r.attributes["sessionsStarted"].value == 1]
    assert usage and usage[0].entity_id == "urn:ngsi-ld:WifiAccessPointUsage:00-11-22-33-44-55"
    assert any(r.attributes["connectedClients"].value == 1 for r in readings)
    text = repr(readings) + caplog.text + repr(adapter.diagnostics())
    for needle in ("aa:bb:cc:01:02:03", "AA-BB-CC-01-02-03", "hanako@example.jp", SECRET):
        assert needle not in text
    assert (tmp_path / "wifilog" / "signing-public.pem").exists()  # made by the gateway, not by a first export
    store = WifiLogStore(tmp_path)
    assert len(store.search(Query(mac="aa:bb:cc:01:02:03"))) == 1
    store.close()


def test_diagnostics_before_the_first_run(tmp_path: Path) -> None:
    cfg = RadiusConfig.model_validate(
        {
            "name": "r",
            "type": "radius",
            "listen": "127.0.0.1",
            "clients": [{"address": "192.0.2.1", "secret": "secret:a"}],
        }
    )
    assert RadiusAdapter(cfg, AdapterContext(gateway_id="g", data_dir=str(tmp_path))).diagnostics() == {
        "summary": "starting"
    }


async def test_a_failing_emit_stops_the_adapter_and_closes_socket_and_store(tmp_path: Path) -> None:
    SecretStore(tmp_path).set("radius.ap1", SECRET)
    port = _free_port()
    cfg = RadiusConfig.model_validate(
        {
            "name": "r",
            "type": "radius",
            "listen": "127.0.0.1",
            "port": port,
            "usage_interval_min": 0.001,
            "clients": [{"address": "127.0.0.1", "secret": "secret:radius.ap1"}],
        }
    )
    adapter = RadiusAdapter(cfg, AdapterContext(gateway_id="g", data_dir=str(tmp_path)))

    async def emit(r: Reading) -> None:
        raise RuntimeError("buffer refused")

    task = asyncio.create_task(adapter.run(emit))
    await _listening(adapter)
    rc, out = await radclient(port, SECRET, f"{BASE},Acct-Status-Type=Start")
    assert rc == 0, out
    with pytest.raises(RuntimeError, match="buffer refused"):
        await task
    assert adapter.server is not None and adapter.server.transport is not None and adapter.server.transport.is_closing()


async def test_session_events_leave_with_mac_and_user_pseudonymized(tmp_path: Path) -> None:
    adapter, port = _session_events_adapter(tmp_path)
    readings: list[Reading] = []

    async def emit(r: Reading) -> None:
        readings.append(r)

    task = asyncio.create_task(adapter.run(emit))
    try:
        await _listening(adapter)
        rc, out = await radclient(port, SECRET, f"{BASE},Acct-Status-Type=Start")
        assert rc == 0, out
        await _session_event_in(readings)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    [ev] = [r for r in readings if r.entity_type == "WifiSessionEvent"]
    assert ev.attributes["eventType"].value == "start"
    assert ev.attributes["clientMac"].value.startswith("pz1:k1:") and ev.attributes["userName"].value.startswith(
        "pz1:k1:"
    )
    assert ev.attributes["accessPoint"].value == "00:11:22:33:44:55" and ev.attributes["ssid"].value == "Library-Free"
    assert "aa:bb:cc:01:02:03" not in repr(ev) and "hanako" not in repr(ev)


async def test_a_session_event_the_buffer_refuses_goes_out_after_the_adapter_restarts(tmp_path: Path) -> None:
    adapter, port = _session_events_adapter(tmp_path)

    async def refusing(r: Reading) -> None:
        if r.entity_type == "WifiSessionEvent":
            raise BufferFull("buffer: caps reached and nothing left to drop, got 1 reading")

    first = asyncio.create_task(adapter.run(refusing))
    await _listening(adapter)
    rc, out = await radclient(port, SECRET, f"{BASE},Acct-Status-Type=Start")
    assert rc == 0, out  # the NAS has its answer: the record is in the Wi-Fi log store
    with pytest.raises(BufferFull):  # the run fails with the buffer's error, not silently
        await asyncio.wait_for(first, 10)
    assert adapter.diagnostics()["session_events"] == {"pending": 1, "dropped": 0, "forgotten": 0}

    readings: list[Reading] = []

    async def accepting(r: Reading) -> None:
        readings.append(r)

    again = asyncio.create_task(adapter.run(accepting))  # as the supervisor restarts it
    try:
        await _session_event_in(readings)
    finally:
        again.cancel()
        with pytest.raises(asyncio.CancelledError):
            await again
    [ev] = [r for r in readings if r.entity_type == "WifiSessionEvent"]
    assert ev.attributes["eventType"].value == "start" and ev.attributes["clientMac"].value.startswith("pz1:")
    assert adapter.diagnostics()["session_events"] == {"pending": 0, "dropped": 0, "forgotten": 0}
