"""The status document: malformed and invalid input counted per adapter, redacted, and readable by owner and group only."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import cli, redact
from gateway.app import STATUS_FILE, Gateway, _write_status
from gateway.config import parse_config
from gateway.records import Attribute, Reading, Source
from tests.adapters.mqtt.peers import publish
from tests.e2e.harness import ROOT, GatewayProcess, wait_until
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble

T0 = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)


def gauge(level: float) -> Reading:
    return Reading(
        entity_id="urn:ngsi-ld:WaterObserved:g1",
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=level, type="Number", unit="MTR")},
        observed_at=T0,
        source=Source(adapter="gauges"),
    )


async def test_invalid_readings_are_counted_per_adapter_and_the_file_is_private_and_redacted(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    gw = Gateway(
        parse_config(
            {
                "gateway": {"id": "gw-status", "data_dir": str(tmp_path)},
                "adapters": [
                    {"name": "gauges", "type": "simulated", "rate": 0.001},
                    {"name": "weather", "type": "simulated", "kind": "weather", "rate": 0.001},
                ],
                "uplinks": [{"name": "orion", "type": "orion", "url": orion_double.url}],
            }
        )
    )
    path = tmp_path / STATUS_FILE
    path.write_text("{}")
    path.chmod(0o644)  # as an earlier version left it
    await gw.start()
    try:
        await gw._emit_many([gauge(1.25), gauge(float("nan")), gauge(float("inf"))])
        redact.register("tok-4f1c9e2a7b")
        gw.loops[
            0
        ].last_error = (
            "Orion refused our credentials, got HTTP 401: token tok-4f1c9e2a7b; Authorization: Bearer eyJ0.eyJ1.c2ln"
        )
        await _write_status(gw)
    finally:
        await gw.stop()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    doc = json.loads(path.read_text())
    assert doc["invalid_readings"] == 2
    assert [(a["name"], a["invalid"], a["malformed"], a["diagnostics"]["summary"]) for a in doc["adapters"]] == [
        ("gauges", 2, 0, "river-level, 1 entities at 0.001/s"),
        ("weather", 0, 0, "weather, 1 entities at 0.001/s"),
    ]
    assert doc["uplinks"][0]["last_error"] == (
        "Orion refused our credentials, got HTTP 401: token ***; Authorization: Bearer ***"
    )
    assert [n for n in await asyncio.to_thread(os.listdir, tmp_path) if n.endswith(".tmp")] == []


async def test_edgegw_status_shows_the_last_rejection_of_an_uplink(
    orion_double: OrionDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-status"\ndata_dir = "{tmp_path}"\n\n'
        '[[adapters]]\nname = "gauges"\ntype = "simulated"\nrate = 0.001\n\n'
        f'[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "{orion_double.url}"\n'
    )
    gw = Gateway(parse_config(tomllib.loads(config.read_text())))
    await gw.start()
    try:
        gw.loops[0].last_rejection = "HTTP 400 BadRequest: Invalid characters in attribute value"
        await _write_status(gw)
    finally:
        await gw.stop()
    assert cli.main(["status", "-c", str(config)]) == 0
    uplink_line = capsys.readouterr().out.splitlines()[-1]
    assert uplink_line.startswith("  orion                orion      ")
    assert uplink_line.endswith("  last rejection: HTTP 400 BadRequest: Invalid characters in attribute value")


def mqtt_config(port: int) -> str:
    return f"""
[gateway]
id = "gw-malformed"
data_dir = "@DATA_DIR@"
log_format = "json"
status_interval_s = 0.3

[[adapters]]
name = "sensors"
type = "mqtt"
host = "127.0.0.1"
port = {port}
client_id = "status-test"

[[adapters.subscriptions]]
topic = "field/+"
entity_id = "urn:ngsi-ld:Thing:{{topic[1]}}"
entity_type = "Thing"

[[adapters.subscriptions.attributes]]
path = "n"
name = "n"

[[uplinks]]
name = "platform"
type = "mqtt"
host = "127.0.0.1"
port = {port}
format = "ngsi-v2"
"""


@pytest.mark.e2e
async def test_edgegw_status_shows_malformed_input_per_adapter(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, mqtt_config(mosquitto.port))
    gw.start()
    try:
        await wait_until(
            lambda: gw.status().get("adapters", [{}])[0].get("diagnostics", {}).get("connected"),
            30,
            "the adapter to subscribe",
            gw,
        )
        await publish(
            mosquitto,
            [("field/river1", b"<html>maintenance</html>")] * 398
            + [("field/river1", b'{"n": 1}'), ("field/river2", b'{"n": "high"}'), ("field/river2", b"[]")],
        )
        await wait_until(lambda: gw.status()["adapters"][0]["malformed"] == 400, 30, "the malformed count", gw)
        run = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway", "status", "-c", str(gw.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        code, _ = await gw.terminate()
        assert code == 0
    finally:
        gw.stop_now()
    assert run.returncode == 0, run.stderr
    adapter_line = run.stdout.splitlines()[2]
    assert adapter_line == (
        "  sensors              mqtt       running      emitted          1  "
        "malformed 400 (not_json 398, wrong_type 2)  invalid 0  restarts 0"
    )
    # the status written after the stop says so, and keeps the counts
    final = json.loads((gw.data_dir / STATUS_FILE).read_text())
    assert (final["adapters"][0]["state"], final["adapters"][0]["malformed"]) == ("stopped", 400)
    assert final["buffer"]["appended_total"] == 1
    topics = final["adapters"][0]["diagnostics"]["malformed_topics"]
    assert topics == {
        "field/river1": {"malformed": 398, "last_reason": "not_json"},
        "field/river2": {"malformed": 2, "last_reason": "wrong_type"},
    }
    warnings = [json.loads(line) for line in gw.logs().splitlines() if '"level":"warning"' in line]
    assert [(w["component"], w["msg"].split(":")[0]) for w in warnings if "malformed" in w["msg"]] == [
        ("sensors", "field/river1"),
        ("sensors", "field/river2"),
    ]


@pytest.mark.e2e
async def test_a_status_file_that_cannot_be_written_is_said_once_and_its_return_too(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    gw = GatewayProcess(tmp_path, mqtt_config(mosquitto.port))
    (gw.data_dir / STATUS_FILE).mkdir(parents=True)  # as unwritable as a full disk makes it, and undone at will
    gw.start()
    try:
        await wait_until(lambda: "status file not written" in gw.log_tail(), 20, "the failure to be logged", gw)
        await asyncio.sleep(1)  # more status intervals (0.3 s): still failing, not logged again
        (gw.data_dir / STATUS_FILE).rmdir()
        # within a few of its status_interval_s (0.3 s), not the default's 5 s
        await wait_until(lambda: "status file written again" in gw.log_tail(), 3, "the recovery to be logged", gw)
        code, _ = await gw.terminate()
        assert code == 0
    finally:
        gw.stop_now()
    lines = [json.loads(line) for line in gw.logs().splitlines() if "status file" in line]
    assert [(d["level"], d["msg"].split(":")[0]) for d in lines] == [
        ("warning", "status file not written, `edgegw status` shows an older state"),
        ("info", "status file written again"),
    ]
