"""Every adapter family's diagnostics() reaches status.json and `edgegw status` (text and --json), secrets masked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import cli
from gateway.app import Gateway, _write_status
from gateway.config import load_config
from gateway.profiles import load_profile
from gateway.secrets import SecretStore
from tests.adapters.http_poll.peers import DocServer, serve
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble

XY = load_profile("generic/xy-md02")


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def config_text(tmp_path: Path, *, modbus_port: int, http_url: str, mqtt_port: int, orion_url: str) -> str:
    return f'''
[gateway]
id = "gw-families"
data_dir = "{tmp_path}"

[[adapters]]
name = "demo"
type = "simulated"
rate = 100
limit = 5

[[adapters]]
name = "cabinet"
type = "modbus"
offline_after = 1
probe_initial = 0.2
probe_max = 0.4

[[adapters.buses]]
name = "gw"
port = "tcp://127.0.0.1:{modbus_port}"

[[adapters.devices]]
name = "th1"
bus = "gw"
profile = "generic/xy-md02"
unit_id = 1
poll_interval = 0.1
timeout = 0.1

[[adapters.devices]]
name = "th9"
bus = "gw"
profile = "generic/xy-md02"
unit_id = 9
poll_interval = 0.1
timeout = 0.05
retries = 0

[[adapters]]
name = "river"
type = "http_poll"
url = "{http_url}"
interval_s = 0.05
timeout_s = 0.05
headers = {{ X-Api-Key = "secret:portal-key" }}

[[adapters.mappings]]
items = "stations"
entity_id = "urn:ngsi-ld:WaterObserved:{{id}}"
entity_type = "WaterObserved"

[[adapters.mappings.attributes]]
path = "level"
name = "waterLevel"
unit = "MTR"

[[adapters]]
name = "sensors"
type = "mqtt"
host = "127.0.0.1"
port = {mqtt_port}
client_id = "families-status"

[[adapters.subscriptions]]
topic = "field/+"
entity_id = "urn:ngsi-ld:Thing:{{topic[1]}}"
entity_type = "Thing"

[[adapters.subscriptions.attributes]]
path = "n"
name = "n"

[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_url}"
'''


async def test_every_family_shows_its_diagnostics_in_edgegw_status(
    orion_double: OrionDouble, mosquitto: MosquittoBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    SecretStore(tmp_path).set("portal-key", "k3y-0123456789")
    peer, port = await start_tcp_peer(
        [image_from_values(1, XY, {"temperature": 20.5, "relative_humidity": 0.5, "temperature_correction": 0.0})]
    )
    # the portal echoes the request's key in its error body, as some do
    server = DocServer(body=b'{"error": "key k3y-0123456789 is not allowed"}', status=403)
    path = tmp_path / "gateway.toml"
    try:
        async with serve(server):
            path.write_text(
                config_text(
                    tmp_path,
                    modbus_port=port,
                    http_url=server.url,
                    mqtt_port=mosquitto.port,
                    orion_url=orion_double.url,
                )
            )
            gw = Gateway(load_config(path))
            await gw.start()
            try:

                def settled() -> bool:
                    assert gw.supervisor is not None
                    status = {a.name: a for a in gw.supervisor.status()}
                    devices = status["cabinet"].diagnostics["buses"]["gw"]["devices"]
                    return (
                        (devices["th1"]["state"], devices["th9"]["state"]) == ("online", "offline")
                        and len(server.requests) >= 2
                        and status["demo"].emitted == 5
                    )

                await until(settled, "the devices' states, two refused polls and the simulated readings")
                await _write_status(gw)
            finally:
                await gw.stop()
    finally:
        await peer.stop()

    assert cli.main(["status", "--json", "-c", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    diagnostics = {a["name"]: a["diagnostics"] for a in doc["adapters"]}
    assert diagnostics["demo"] == {
        "kind": "river-level",
        "entities": 1,
        "rate": 100.0,
        "limit": 5,
        "emitted": 5,
        "events": 0,
        "summary": "river-level, 1 entities at 100/s, 5 of 5",
    }
    cabinet = diagnostics["cabinet"]
    assert (cabinet["summary"], cabinet["malformed"]) == (
        "devices online 1/2 (not online: th9)",
        {"crc_errors": 0, "frame_errors": 0},
    )
    bus = cabinet["buses"]["gw"]
    assert (bus["port"], bus["open"], bus["error"]) == (f"tcp://127.0.0.1:{port}", True, "")
    th1, th9 = bus["devices"]["th1"], bus["devices"]["th9"]
    assert (th1["state"], th1["unit_id"], th1["last_error"], th1["timeouts"]) == ("online", 1, "", 0)
    assert th1["answers"] >= 1
    assert (th9["state"], th9["unit_id"], th9["answers"]) == ("offline", 9, 0)
    assert th9["last_error"] == (
        f"modbus unit 9 FC03 @259 x1 on tcp://127.0.0.1:{port}: no answer, got nothing "
        "within 0.05 s; check the unit id, and that the device behind a gateway is powered "
        "and wired"
    )
    river = diagnostics["river"]
    assert (river["url"], river["failing"], river["emitted"], river["failed"]["http_status"] >= 2) == (
        server.url,
        "http_status",
        0,
        True,
    )
    assert river["summary"] == f"polls {river['polls']}, failing: http_status"
    assert river["last_error"] == 'http_status: HTTP 403 Forbidden, body \'{"error": "key *** is not allowed"}\''
    sensors = diagnostics["sensors"]
    assert (sensors["received"], sensors["emitted"], sensors["malformed"]) == (0, 0, {})
    assert "k3y-0123456789" not in (tmp_path / "status.json").read_text()

    assert cli.main(["status", "-c", str(path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:] if line.startswith("  ")}
    assert lines["demo"].endswith("restarts 0  river-level, 1 entities at 100/s, 5 of 5")
    assert lines["cabinet"].endswith("restarts 0  devices online 1/2 (not online: th9)")
    assert lines["river"].endswith(
        f"restarts 0  polls {river['polls']}, failing: http_status  last error: "
        'http_status: HTTP 403 Forbidden, body \'{"error": "key *** is not allowed"}\''
    )
