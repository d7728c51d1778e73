"""The real `edgegw run` process killed with -9 again and again starts in safe mode: no adapter, uplinks draining.

A clean stop (SIGTERM) in between does not count: only starts that never stopped cleanly make a loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import GatewayProcess
from tests.support.orion_double import OrionDouble

CONFIG = """
[gateway]
id = "gw-loop"
data_dir = "@DATA_DIR@"

[[adapters]]
name = "gauges"
type = "simulated"
rate = 5

[[uplinks]]
name = "orion"
type = "orion"
url = "{url}"

[fleet.safe_mode]
restarts = 3
within_s = 600
"""


async def started(gw: GatewayProcess, timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while " started: " not in gw.log_tail(1_000_000):
        if time.monotonic() > end:
            raise AssertionError(f"gateway did not start; log: {gw.log_tail()}")
        await asyncio.sleep(0.05)


async def status(gw: GatewayProcess, check: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    """The status file once `check(doc)` holds (the gateway writes it every 5 s)."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            doc: dict[str, Any] = json.loads((gw.data_dir / "status.json").read_text())
            if check(doc):
                return doc
        except (OSError, ValueError):
            pass
        if time.monotonic() > end:
            raise AssertionError(f"status never matched; log: {gw.log_tail()}")
        await asyncio.sleep(0.1)


@pytest.mark.e2e
async def test_kill_9_three_times_starts_in_safe_mode_and_still_delivers(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    gw = GatewayProcess(tmp_path, CONFIG.format(url=orion_double.url))
    gw.start()
    await started(gw)
    await gw.terminate()  # a clean stop: not counted
    for _ in range(2):
        gw.start()
        await started(gw)
        gw.kill9()
    gw.start()  # the third start after two crashes within 600 s
    try:
        await started(gw)
        assert gw.proc is not None
        pid = gw.proc.pid
        doc = await status(gw, lambda d: d["pid"] == pid)  # not the file a killed process left
        assert doc["fleet"]["safe_mode"]["active"] is True
        assert doc["fleet"]["safe_mode"]["stopped_adapters"] == ["gauges"]
        assert doc["adapters"] == []
        delivered = await status(
            gw, lambda d: d["pid"] == pid and d["uplinks"][0]["delivered"] > 0
        )  # the buffer still drains
        assert delivered["uplinks"][0]["state"] in ("idle", "sending")
        assert "safe mode: the gateway restarted 3 times within 600 s without a clean stop" in gw.log_tail(1_000_000)
    finally:
        await gw.terminate()
    device = next(e for e in orion_double.entities.values() if e["type"] == "Device")
    assert device["deviceState"]["value"] == "safeMode"
