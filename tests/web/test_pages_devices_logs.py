"""Devices (profiles, a tool run with progress) and logs (level and component filters), through a real gateway."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway import logs
from gateway.accounts.store import Role
from gateway.control.tools import Param, Progress, Tool
from tests.support.orion_double import OrionDouble
from tests.web.conftest import csrf_token
from tests.web.pages_harness import gateway_web


async def count_to(args: Mapping[str, Any], progress: Progress) -> bool:
    for n in range(1, int(args["upto"]) + 1):
        progress(f"unit {n}: <b>answered</b>")
        await asyncio.sleep(0)
    return bool(args["succeed"])


COUNTER = Tool(
    family="demo",
    tool="count",
    title="Count units",
    params=(
        Param(name="upto", type="int", required=True, help="last unit id"),
        Param(name="succeed", type="bool", default=True),
        Param(name="port", type="str", default="/dev/ttyUSB0"),
    ),
    run=count_to,
)


async def test_profiles_are_listed_and_shown(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url) as env:
        viewer = await env.browser("mika", Role.VIEWER)
        page = await (await viewer.get("/devices")).text()
        assert '<a href="/devices/profiles/eastron/sdm120">eastron/sdm120</a>' in page
        assert "ツール" not in page  # tools are for technicians
        page = await (await viewer.get("/devices/profiles/eastron/sdm120")).text()
        assert re.search(r'<pre id="profile-text">eastron/sdm120: (?i:eastron) ', page)
        assert (await viewer.get("/devices/profiles/eastron/nope")).status == 404
        assert (await viewer.get("/devices/profiles/..%2F..%2Fetc/passwd")).status == 404


async def test_a_technician_runs_a_tool_and_reads_its_progress(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url, tools=[COUNTER]) as env:
        viewer = await env.browser("mika", Role.VIEWER)
        token = await csrf_token(viewer, "/devices")
        form = {"csrf_token": token, "family": "demo", "tool": "count", "upto": "3"}
        assert (await viewer.post("/devices/tools/start", data=form)).status == 403
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/devices")).text()
        assert '<form class="tool" method="post" action="/devices/tools/start" id="tool-demo-count">' in page
        assert '<input id="tool-demo-count-port" name="port"  value="/dev/ttyUSB0">' in page
        form = {
            "csrf_token": await csrf_token(tech, "/devices"),
            "family": "demo",
            "tool": "count",
            "upto": "3",
            "succeed": "on",
        }
        response = await tech.post("/devices/tools/start", data=form, allow_redirects=False)
        assert response.status == 303
        job = re.fullmatch(r"/devices/tools/([A-Za-z0-9_.-]+)", response.headers["Location"])
        assert job
        page = await (await tech.get(response.headers["Location"])).text()
        assert f'data-poll="/api/tools/{job.group(1)}"' in page
        lines: list[str] = []
        after = 0
        for _ in range(200):
            doc = await (await tech.get(f"/api/tools/{job.group(1)}", params={"after": str(after)})).json()
            lines += doc["lines"]
            after = doc["next"]
            if doc["done"]:
                break
            await asyncio.sleep(0.01)
        assert lines == [f"unit {n}: <b>answered</b>" for n in (1, 2, 3)]  # JSON; the page adds them as text
        assert doc["ok"] is True
        # a required field left empty is named back, nothing started
        form = {"csrf_token": await csrf_token(tech, "/devices"), "family": "demo", "tool": "count", "upto": ""}
        response = await tech.post("/devices/tools/start", data=form)
        assert "入力を確認してください: upto" in await response.text()
        # so is an integer the control socket cannot carry (64 bits), not a 500
        form = {
            "csrf_token": await csrf_token(tech, "/devices"),
            "family": "demo",
            "tool": "count",
            "upto": "0x" + "f" * 30,
        }
        response = await tech.post("/devices/tools/start", data=form)
        assert response.status == 200 and "入力を確認してください: upto" in await response.text()
        assert (await tech.get("/api/tools/nosuchjob")).status == 404


async def test_logs_by_level_and_component_with_markup_inert(orion_double: OrionDouble, tmp_path: Path) -> None:
    def emit(component: str, level: int, msg: str) -> None:
        record = logging.LogRecord("adapters.modbus.adapter", level, __file__, 1, msg, None, None)
        record.component = component  # as component_logger sets it: the adapter's name
        logs.RING.handle(record)

    emit("webtest", logging.DEBUG, "poll")
    emit("webtest", logging.INFO, "bus open")
    emit("webtest", logging.WARNING, "device <script>alert(1)</script> offline")
    emit("webtest-2", logging.ERROR, "another adapter")
    async with gateway_web(tmp_path, orion_double.url) as env:
        viewer = await env.browser("mika", Role.VIEWER)
        page = await (await viewer.get("/logs", params={"component": "webtest"})).text()
        rows = re.findall(
            r'<tr class="log level-(\w+)"><td>[^<]*JST</td><td>\w+</td><td>([^<]*)</td><td class="message">([^<]*)</td>',
            page,
        )
        assert rows == [
            ("info", "webtest", "bus open"),
            ("warning", "webtest", "device &lt;script&gt;alert(1)&lt;/script&gt; offline"),
        ]
        everything = await (await viewer.get("/logs", params={"level": "debug"})).text()
        assert '<option value="webtest"><option value="webtest-2">' in everything
        doc = await (await viewer.get("/api/logs", params={"level": "warning", "component": "webtest"})).json()
        assert [(x["component"], x["message"]) for x in doc["lines"]] == [
            ("webtest", "device <script>alert(1)</script> offline")
        ]
