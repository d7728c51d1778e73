"""`/api/tools/<job>` names the job's tool as the page's heading would, in the user's language, for live.js.

The poll passed the gateway's `family`, `tool` and English `title` through, which the page cannot translate;
a page rendered before the gateway knew the job kept its plain heading for good.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from gateway.accounts.store import Role
from gateway.control.client import ControlClient
from gateway.control.tools import load_tools
from tests.control.running import eventually
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web
from tests.web.test_pages_devices_logs import COUNTER


async def test_the_poll_carries_the_translated_heading(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url, tools=[*load_tools(), COUNTER]) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        # jobs the CLI started: no page of this web process ever rendered them
        async with ControlClient(env.server.path, timeout_s=10.0) as cli:
            probe = await cli.call("tool.start", family="modbus", tool="probe", args={"port": "tcp://127.0.0.1:1"})
            count = await cli.call("tool.start", family="demo", tool="count", args={"upto": 1})
            for job in (probe["job"], count["job"]):
                await eventually(partial(cli.call, "tool.poll", job=job, after=0), lambda p: p["done"], job)

        async def heading(job: str, language: str = "ja") -> str:
            response = await tech.get(f"/api/tools/{job}", headers={"Accept-Language": language})
            assert response.status == 200, await response.text()
            doc = await response.json()
            assert doc["done"] is True and doc["family"] in ("modbus", "demo")
            return str(doc["heading"])

        assert await heading(probe["job"]) == "ツールの実行: ポートで応答するModbusユニットを探す"
        assert await heading(probe["job"], "en") == "Tool run: Find the Modbus units that answer on a port"
        # a tool the catalog does not know yet: the family's own title, as the tools form shows it
        assert await heading(count["job"]) == "ツールの実行: Count units"
        # a job the gateway does not know: no heading to give, the page keeps its own
        unknown = await tech.get("/api/tools/demo-99")
        assert unknown.status == 404 and "heading" not in await unknown.json()
