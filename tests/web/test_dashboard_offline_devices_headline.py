"""An offline device under a running adapter is in the dashboard's problems headline, with its count and a link.

The headline counted adapters and uplinks only: with the adapter running and one of its gauges silent for
hours, a librarian saw no problem at the top of the page; the device's row further down said "offline".
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.accounts.store import Role
from gateway.profiles import load_profile
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web

XY = load_profile("generic/xy-md02")
HEADLINE_JA = "<li>オフラインの機器が1台あります。アダプターの表で確認してください。</li>"
HEADLINE_EN = "<li>Devices offline: 1. See their rows in the adapters table.</li>"


def gateway_text(data_dir: Path, orion_url: str, modbus_port: int) -> str:
    """Two gauges on one Modbus TCP line: unit 1 answers, unit 2 is not there (unplugged, no power)."""
    devices = "".join(
        f"""
[[adapters.devices]]
name = "{name}"
bus = "cabinet-line"
profile = "generic/xy-md02"
unit_id = {unit}
poll_interval = 0.1
timeout = 0.05
retries = 0
"""
        for name, unit in (("th1", 1), ("th2", 2))
    )
    return f"""
[gateway]
id = "gw-web"
data_dir = "{data_dir}"

[[adapters]]
name = "cabinet"
type = "modbus"
offline_after = 1
probe_initial = 0.2
probe_max = 0.8

[[adapters.buses]]
name = "cabinet-line"
port = "tcp://127.0.0.1:{modbus_port}"
{devices}
[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_url}"
"""


async def status_when(
    client: TestClient[web.Request, web.Application], ready: Any, what: str, timeout: float = 10.0
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        doc: dict[str, Any] = await (await client.get("/api/status")).json()
        if doc.get("reachable") and ready(doc):
            return doc
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last status: {doc}")
        await asyncio.sleep(0.05)


async def test_an_offline_gauge_under_a_running_adapter_is_in_the_headline(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    values = {"temperature": 20.0, "relative_humidity": 0.5, "temperature_correction": 0.0}
    peer, port = await start_tcp_peer([image_from_values(1, XY, values)])
    try:
        text = gateway_text(tmp_path / "data", orion_double.url, port)
        async with gateway_web(tmp_path, orion_double.url, text=text) as env:
            viewer = await env.browser("mika", Role.VIEWER)
            doc = await status_when(
                viewer,
                lambda d: (
                    d["cells"].get("device.cabinet.th1.state") == "オンライン"
                    and d["cells"].get("device.cabinet.th2.state") == "オフライン"
                ),
                "th1 online and th2 offline",
            )
            assert doc["cells"]["adapter.cabinet.state"] == "稼働中"  # the adapter itself is fine
            assert (
                "オフラインの機器が1台あります。アダプターの表で確認してください。" in doc["problems"]
            )  # the refresh keeps the headline

            page = await (await viewer.get("/")).text()
            problems = re.search(r'<ul id="problems" class="problems">(.*?)</ul>', page, re.S)
            assert problems is not None
            assert HEADLINE_JA in problems.group(1)
            assert '<table id="adapters">' in page  # where the link leads: the device rows are in this table
            assert re.search(r'<tr class="device bad">\s*<td></td><td>th2</td>', page)

            english = await (await viewer.get("/", headers={"Accept-Language": "en"})).text()
            assert HEADLINE_EN in english
            doc = await (await viewer.get("/api/status", headers={"Accept-Language": "en"})).json()
            assert "Devices offline: 1. See their rows in the adapters table." in doc["problems"]
    finally:
        await peer.stop()
