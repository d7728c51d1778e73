"""`tool.poll` names the job's tool (family, tool, the family's English title), so any client can say what a
job runs: the web UI after its restart, a second web process, or the CLI's job shown in a browser.

Before, `tool.poll` answered only `{lines, next, done, ok}`: a client that had not started the job itself could
not tell which tool it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.control.client import ControlClient
from gateway.control.protocol import ControlError
from gateway.control.tools import Param, Progress, Tool
from tests.control.running import eventually, running_gateway
from tests.support.orion_double import OrionDouble


def _gated_tools(gate: asyncio.Event) -> list[Tool]:
    """Two tools of one family and one of another; each says a line, then waits for `gate`."""

    async def wait_for_gate(args: Mapping[str, Any], progress: Progress) -> bool:
        progress(f"waiting on {args['port']}")
        await gate.wait()
        return True

    port = (Param(name="port", type="str", default="/dev/ttyUSB0"),)
    return [
        Tool(family="demo", tool="count", title="Count units", params=port, run=wait_for_gate),
        Tool(family="demo", tool="scan", title="Scan the bus", params=port, run=wait_for_gate),
        Tool(family="other", tool="count", title="Count others", params=port, run=wait_for_gate),
    ]


async def test_poll_names_the_jobs_tool_while_it_runs_and_after(orion_double: OrionDouble, tmp_path: Path) -> None:
    gate = asyncio.Event()
    async with running_gateway(tmp_path, orion_double.url, tools=_gated_tools(gate)) as gw:
        scan = (await gw.client.call("tool.start", family="demo", tool="scan", args={}))["job"]
        other = (await gw.client.call("tool.start", family="other", tool="count", args={"port": "tcp://h:502"}))["job"]
        # a client that started nothing (the CLI, another web process) asks about the jobs
        stranger = ControlClient(gw.socket, timeout_s=10.0)
        try:
            running = await eventually(
                lambda: stranger.call("tool.poll", job=scan, after=0), lambda p: p["lines"], f"job {scan}'s first line"
            )
            assert running == {
                "lines": ["waiting on /dev/ttyUSB0"],
                "next": 1,
                "done": False,
                "ok": None,
                "family": "demo",
                "tool": "scan",
                "title": "Scan the bus",
            }
            # a poll past the job's lines still names the tool (the web's job page asks for no lines)
            past = await stranger.call("tool.poll", job=other, after=1_000_000)
            assert {k: past[k] for k in ("lines", "family", "tool", "title")} == {
                "lines": [],
                "family": "other",
                "tool": "count",
                "title": "Count others",
            }
            gate.set()
            done = await eventually(
                lambda: stranger.call("tool.poll", job=scan, after=1), lambda p: p["done"], f"job {scan} done"
            )
            assert done == {
                "lines": [],
                "next": 1,
                "done": True,
                "ok": True,
                "family": "demo",
                "tool": "scan",
                "title": "Scan the bus",
            }
            # the family's other tool, started once the first has ended: each job keeps its own tool
            count = (await gw.client.call("tool.start", family="demo", tool="count", args={}))["job"]
            counted = await eventually(
                lambda: stranger.call("tool.poll", job=count, after=0), lambda p: p["done"], f"job {count} done"
            )
            assert (counted["family"], counted["tool"], counted["title"]) == ("demo", "count", "Count units")
            # a job the gateway does not know: the answer is as it was
            with pytest.raises(ControlError) as unknown:
                await stranger.call("tool.poll", job="demo-99", after=0)
        finally:
            await stranger.close()
    assert (unknown.value.code, unknown.value.message) == ("not_found", "tool.poll: no such job, got 'demo-99'")
