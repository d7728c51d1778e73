"""Tools through the socket: the modbus family's probe and read as jobs against a real pymodbus server."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from adapters.modbus.tools import tools as modbus_tools
from gateway.control.protocol import ControlError
from gateway.control.tools import Jobs, Tool
from gateway.profiles import load_profile
from tests.adapters.modbus.peers import UnitImage, image_from_values, start_tcp_peer
from tests.control.running import Running, eventually, running_gateway
from tests.support.entry_points import declared_entry_points
from tests.support.orion_double import OrionDouble

XY = load_profile("generic/xy-md02")


def _xy(unit: int) -> UnitImage:
    return image_from_values(unit, XY, {"temperature": 21.5, "relative_humidity": 0.456, "temperature_correction": 0.5})


async def _finish(gw: Running, job: str) -> tuple[list[str], bool]:
    lines: list[str] = []
    after = 0

    async def poll() -> Any:
        nonlocal after
        page = await gw.client.call("tool.poll", job=job, after=after)
        lines.extend(page["lines"])
        after = page["next"]
        return page

    page = await eventually(poll, lambda p: p["done"], f"job {job} done")
    return lines, page["ok"]


def test_the_modbus_family_declares_its_tools_entry_point() -> None:
    [ep] = declared_entry_points("edgegw.tools")
    assert (ep.name, ep.value) == ("modbus", "adapters.modbus.tools:tools")


async def test_probe_and_read_run_as_jobs_with_progress(orion_double: OrionDouble, tmp_path: Path) -> None:
    peer, port = await start_tcp_peer([_xy(1), _xy(5)])
    try:
        async with running_gateway(tmp_path, orion_double.url, rate=1.0, tools=modbus_tools()) as gw:
            listed = await gw.client.call("tools")
            assert [(t["family"], t["tool"]) for t in listed] == [("modbus", "probe"), ("modbus", "read")]
            assert listed[0]["params"][0] == {
                "name": "port",
                "type": "str",
                "required": True,
                "default": None,
                "help": "/dev/ttyUSB0, tcp://HOST:502 or rtu-over-tcp://HOST:PORT",
            }
            url = f"tcp://127.0.0.1:{port}"
            started = await gw.client.call(
                "tool.start", family="modbus", tool="probe", args={"port": url, "units": "1-6", "timeout": 0.05}
            )
            with pytest.raises(ControlError) as busy:
                await gw.client.call("tool.start", family="modbus", tool="probe", args={"port": url})
            lines, ok = await _finish(gw, started["job"])
            assert ok is True
            assert lines == [
                "1/6, found 1",
                "2/6, found 1",
                "3/6, found 1",
                "4/6, found 1",
                "5/6, found 2",
                "6/6, found 2",
                "unit   1  answers (exception 02 (illegal data address) to FC03 @0)",
                "unit   5  answers (exception 02 (illegal data address) to FC03 @0)",
                f"found 2 unit(s) on {url} at Modbus TCP: 1, 5",
            ]
            read = await gw.client.call(
                "tool.start", family="modbus", tool="read", args={"profile": "generic/xy-md02", "port": url, "unit": 5}
            )
            lines, ok = await _finish(gw, read["job"])
            assert ok is True
            assert lines[1:] == [
                "point                   value  unit  attribute         quality",
                "temperature             21.5   CEL   temperature       good",
                "relative_humidity       0.456  C62   relativeHumidity  good",
                "temperature_correction  0.5    CEL                     good",
            ]
            bad = await gw.client.call("tool.start", family="modbus", tool="probe", args={"port": "com1:"})
            lines, ok = await _finish(gw, bad["job"])
            assert (
                ok is False and len(lines) == 1 and lines[0].startswith("port: ") and lines[0].endswith('got "com1:"')
            )
            with pytest.raises(ControlError) as wrong:
                await gw.client.call("tool.start", family="modbus", tool="probe", args={"port": 1, "bogus": True})
            with pytest.raises(ControlError) as unknown:
                await gw.client.call("tool.poll", job="modbus-99", after=0)
    finally:
        await peer.stop()
    assert busy.value.code == "busy"
    # the job's id: its family, this gateway start's token (a page left open on an earlier start's job never
    # follows a new one that took its number) and its number
    assert re.fullmatch(r"modbus-[0-9a-f]{6}-1", started["job"])
    assert busy.value.message == f"tool.start: a modbus job is running, got another; wait for job {started['job']}"
    assert (wrong.value.code, wrong.value.message) == ("bad_args", "modbus probe: 2 bad argument(s)")
    assert wrong.value.errors == ["args.bogus: unknown parameter, got True", "args.port: must be str, got int"]
    assert (unknown.value.code, unknown.value.message) == ("not_found", "tool.poll: no such job, got 'modbus-99'")


async def test_a_job_of_an_earlier_gateway_start_is_not_found_after_a_restart() -> None:
    # numbers start at 1 again with every start: a page left open on the earlier start's demo-…-1 must be told
    # its job is gone, not be handed the new start's first job
    async def done(args: Mapping[str, Any], progress: Any) -> bool:
        return True

    demo = Tool(family="demo", tool="ok", title="Demo", params=(), run=done)
    before, after = Jobs([demo]), Jobs([demo])  # two starts of the gateway
    old = before.start("demo", "ok", {})
    new = after.start("demo", "ok", {})
    assert old.endswith("-1") and new.endswith("-1") and old != new
    with pytest.raises(ControlError) as gone:
        after.poll(old, 0)
    assert gone.value.code == "not_found"
    await before.close()
    await after.close()
