"""The tool job page's heading names the tool the job runs, in the user's language; never the link's `?title=`.

The heading was the raw `title` query value: untranslated ("modbus probe" on the Japanese page), and any text
a link put there ("Your password has expired, call …") showed as the page's heading to the technician.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.accounts.store import Role
from gateway.control.client import ControlClient
from gateway.control.tools import load_tools
from gateway.web.app import build_app
from tests.control.running import eventually
from tests.support.orion_double import OrionDouble
from tests.web.conftest import csrf_token, login, new_client
from tests.web.pages_harness import gateway_web
from tests.web.test_pages_devices_logs import COUNTER

Client = TestClient[web.Request, web.Application]
PLANTED = "Your password has expired: call 0120-000-000"


def heading(page: str) -> tuple[str, str]:
    """The page's <title> and <h1>."""
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    h1 = re.search(r"<h1>(.*?)</h1>", page, re.S)
    assert title is not None and h1 is not None, page
    return title.group(1).strip(), h1.group(1).strip()


async def start(tech: Client, family: str, tool: str, **fields: str) -> str:
    """The job page's address the start redirects to."""
    form = {"csrf_token": await csrf_token(tech, "/devices"), "family": family, "tool": tool, **fields}
    response = await tech.post("/devices/tools/start", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    return response.headers["Location"]


async def test_the_heading_is_the_jobs_tool_translated_whatever_the_link_says(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with gateway_web(tmp_path, orion_double.url, tools=[*load_tools(), COUNTER]) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        # a probe of a port nobody listens on: the job fails at once, its page stays
        location = await start(tech, "modbus", "probe", port="tcp://127.0.0.1:1", units="1")
        job = re.match(r"/devices/tools/([A-Za-z0-9_.-]+)", location)
        assert job is not None
        page = await (await tech.get(location)).text()
        assert heading(page) == (
            "ツールの実行: ポートで応答するModbusユニットを探す — edgegw 管理画面",
            "ツールの実行: ポートで応答するModbusユニットを探す",
        )
        # the same job under a link that plants its own title: the heading stays the job's
        planted = await (await tech.get(f"/devices/tools/{job.group(1)}", params={"title": PLANTED})).text()
        assert PLANTED not in planted
        assert heading(planted)[1] == "ツールの実行: ポートで応答するModbusユニットを探す"
        english = await (await tech.get(location, headers={"Accept-Language": "en"})).text()
        assert heading(english)[1] == "Tool run: Find the Modbus units that answer on a port"

        # a tool the catalog does not know yet: the family's own title, as the tools form shows it
        location = await start(tech, "demo", "count", upto="2", succeed="on")
        assert heading(await (await tech.get(location)).text())[1] == "ツールの実行: Count units"

        # a job this UI did not start (another browser's stale link, a typed address): no title from the link
        unknown = await (await tech.get("/devices/tools/demo-99", params={"title": PLANTED})).text()
        assert PLANTED not in unknown
        assert heading(unknown)[1] == "ツールの実行"


async def test_the_heading_is_right_for_a_job_this_web_process_did_not_start(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    """The heading comes from the gateway's `tool.poll`: a web process that restarted, a second one, or a job
    the CLI started all name the tool (before, each web process knew only the jobs it had started itself)."""
    async with gateway_web(tmp_path, orion_double.url, tools=[*load_tools(), COUNTER]) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        probe = await start(tech, "modbus", "probe", port="tcp://127.0.0.1:1", units="1")
        count = await start(tech, "demo", "count", upto="2", succeed="on")
        # a job the CLI started over the control socket, not through any web page (once the web's demo job has
        # ended: one job per family at a time)
        cli = ControlClient(env.server.path, timeout_s=10.0)
        try:
            web_job = count.rsplit("/", 1)[1]
            await eventually(lambda: cli.call("tool.poll", job=web_job, after=0), lambda p: p["done"], "web's job")
            started = await cli.call("tool.start", family="demo", tool="count", args={"upto": 1})
        finally:
            await cli.close()
        by_cli = f"/devices/tools/{started['job']}"

        # a new web process in front of the same gateway (the old one restarted, or a second one)
        other = build_app(env.services, strict_i18n=True)
        server = TestServer(other)
        browser = await new_client(server)
        try:
            assert (await login(browser, "taro")).status in (302, 303)
            page = await (await browser.get(probe)).text()
            assert heading(page) == (
                "ツールの実行: ポートで応答するModbusユニットを探す — edgegw 管理画面",
                "ツールの実行: ポートで応答するModbusユニットを探す",
            )
            english = await (await browser.get(probe, headers={"Accept-Language": "en"})).text()
            assert heading(english)[1] == "Tool run: Find the Modbus units that answer on a port"
            # the catalog has no title for the demo tool: the gateway's English one
            assert heading(await (await browser.get(count)).text())[1] == "ツールの実行: Count units"
            assert heading(await (await browser.get(by_cli)).text())[1] == "ツールの実行: Count units"
            # a job the gateway does not know keeps the plain heading, whatever the link says
            unknown = await (await browser.get("/devices/tools/demo-99", params={"title": PLANTED})).text()
            assert PLANTED not in unknown
            assert heading(unknown)[1] == "ツールの実行"
        finally:
            await browser.close()
            await server.close()
        # the first web process names the CLI's job too
        assert heading(await (await tech.get(by_cli)).text())[1] == "ツールの実行: Count units"
