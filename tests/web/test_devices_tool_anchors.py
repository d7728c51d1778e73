"""The devices page's tools can be linked to: `/devices#tools` and `/devices#tool-<family>-<tool>`, and a tool
job's page links back to its own tool.

The tools part had no id, a tool named by a third-party family (spaces, dots, Japanese) got an id no link could
name, and a job's "back" link led to the top of the devices page, the tool run a screen further down.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.accounts.store import Role
from gateway.control.tools import Param, Progress, Tool
from gateway.web.pages.devices import tool_anchor
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web
from tests.web.test_pages_devices_logs import COUNTER

SAFE = re.compile(r"tool-[A-Za-z0-9_-]+")


async def _nothing(args: Mapping[str, Any], progress: Progress) -> bool:
    return True


ODD = Tool(
    family="wifi.log",
    tool="scan 2.4GHz/無線",
    title="Scan the 2.4 GHz band",
    params=(Param(name="channel", type="int"),),
    run=_nothing,
)


async def test_the_tools_and_each_tool_have_an_id_a_link_can_name(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url, tools=[COUNTER, ODD]) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        page = await (await tech.get("/devices")).text()
        assert '<section id="tools">' in page
        # a tool with plain names keeps the id it always had (bookmarks made before still work)
        assert 'action="/devices/tools/start" id="tool-demo-count">' in page
        odd = tool_anchor("wifi.log", "scan 2.4GHz/無線")
        assert SAFE.fullmatch(odd), odd
        assert f'action="/devices/tools/start" id="{odd}">' in page
        assert f'<label for="{odd}-channel">channel</label>' in page
        assert 'id="tool-wifi.log' not in page


async def test_a_jobs_page_links_back_to_its_tool(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with gateway_web(tmp_path, orion_double.url, tools=[ODD]) as env:
        tech = await env.browser("taro", Role.TECHNICIAN)
        started = await env.services.control.call("tool.start", family="wifi.log", tool="scan 2.4GHz/無線", args={})
        job = str(started["job"])
        page = await (await tech.get(f"/devices/tools/{job}")).text()
        anchor = tool_anchor("wifi.log", "scan 2.4GHz/無線")
        assert f'<a id="tool-back" href="/devices#{anchor}">' in page
        # a job the gateway does not know: its tool is not known either, the tools part is
        page = await (await tech.get("/devices/tools/modbus-7")).text()
        assert '<a id="tool-back" href="/devices#tools">' in page
        # a page rendered while the gateway did not answer learns its tool's link with its refresh
        poll = await (await tech.get(f"/api/tools/{job}")).json()
        assert poll["back"] == f"/devices#{anchor}"


NAMES = st.text(st.characters(blacklist_characters="-_"), min_size=1, max_size=12)


@given(NAMES, NAMES, NAMES, NAMES)
def test_an_anchor_is_safe_and_tells_tools_apart(family: str, tool: str, other_family: str, other_tool: str) -> None:
    anchor = tool_anchor(family, tool)
    assert SAFE.fullmatch(anchor), anchor
    # plain names keep the id they always had; others get one of their own
    if re.fullmatch(r"[A-Za-z0-9]+", family) and re.fullmatch(r"[A-Za-z0-9]+", tool):
        assert anchor == f"tool-{family}-{tool}"
    if (family, tool) != (other_family, other_tool):
        assert anchor != tool_anchor(other_family, other_tool)
