"""The availability figure survives a kill -9 (a crash, a power cut) but for its last minute.

It was written only by a clean stop: a box that lost power lost the whole run's uptime. A real
gateway process ticks its fleet service on an injected clock (so minutes pass at once), is killed
with SIGKILL, and the file on disk is read back.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.app import Gateway
from tests.fleet.conftest import T0, Clock, gateway_config
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-07-01"  # T0 is its first second, Asia/Tokyo

DRIVER = """
import asyncio, sys
from pathlib import Path
from gateway.app import Gateway
from gateway.config import load_config

class Clock:
    def __init__(self, now):
        self.now = now
    def __call__(self):
        return self.now

async def main():
    clock = Clock(float(sys.argv[2]))
    Gateway.fleet_autotick = False
    Gateway.fleet_clock = clock
    gw = Gateway(load_config(Path(sys.argv[1])))
    await gw.start()
    for _ in range(int(sys.argv[3])):
        await gw.fleet.tick(clock.now)
        clock.now += 10
    print("ticked", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""

CONFIG = """
[gateway]
id = "gw-avail"
data_dir = "{data_dir}"

[[adapters]]
name = "gauges"
type = "simulated"
rate = 0.1

[[uplinks]]
name = "platform"
type = "orion"
url = "http://127.0.0.1:{port}"

[fleet.alarms]
rules = []
"""


def up_seconds(data_dir: Path) -> float:
    doc = json.loads((data_dir / "availability.json").read_text(encoding="utf-8"))
    return float(doc["days"][DAY][0])


def test_a_kill_9_loses_at_most_the_last_minute_of_uptime(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(data_dir=tmp_path / "data", port=free_port()))
    ticks = 14  # T0 .. T0+130: 130 s up
    with subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(config), str(T0), str(ticks)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ticked"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert 130 - 60 <= up_seconds(tmp_path / "data") <= 130


async def test_the_figure_is_written_at_most_once_a_minute_and_whole_on_stop(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = gateway_config(tmp_path, f"http://127.0.0.1:{free_port()}", {"alarms": {"rules": []}})
    path = tmp_path / "data" / "availability.json"
    gw = Gateway(config)
    await gw.start()
    writes = 0
    inode = None
    try:
        assert gw.fleet is not None
        for _ in range(61):  # ten minutes, a tick every 10 s
            await gw.fleet.tick(clock.now)
            if path.exists() and path.stat().st_ino != inode:  # each write renames a new file into place
                inode = path.stat().st_ino
                writes += 1
            clock.advance(10)
        assert 10 <= writes <= 11
        assert 600 - 60 <= up_seconds(tmp_path / "data") <= 600
    finally:
        await gw.stop()
    assert up_seconds(tmp_path / "data") == 600
    assert clock.now == T0 + 610


async def test_a_figure_that_cannot_be_written_is_said_once_and_the_ticks_go_on(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    config = gateway_config(tmp_path, f"http://127.0.0.1:{free_port()}", {"alarms": {"rules": []}})
    path = tmp_path / "data" / "availability.json"
    caplog.set_level(logging.INFO, logger="gateway.fleet.service")
    path.mkdir(parents=True)  # nothing can be renamed over a directory: the write fails as on a broken disk
    gw = Gateway(config)
    await gw.start()
    try:
        assert gw.fleet is not None
        for _ in range(13):
            doc = await gw.fleet.tick(clock.now)
            assert doc["fleet"]["availability"]["day"]  # the tick still reports
            clock.advance(10)
        path.rmdir()
        await gw.fleet.tick(clock.now)
    finally:
        await gw.stop()
    lines = [r.getMessage() for r in caplog.records if "availability figure" in r.getMessage()]
    assert lines == [
        f"availability figure not saved to {path}, got Is a directory; kept in memory and tried again at the next tick",
        f"availability figure saved again to {path}",
    ]
    assert up_seconds(tmp_path / "data") == 130
