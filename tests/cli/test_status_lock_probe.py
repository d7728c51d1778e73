"""`edgegw status` asks whether the gateway holds its lock without taking it.

Before, status tried a shared flock on gateway.lock and let go at once: a gateway starting in that instant was
refused as if a second gateway ran on the data directory (a review's tight loop: 2914 of 20000 starts refused).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from gateway.run_lock import DataDirInUse, DataDirLock
from tests.cli.edgegw import ROOT, config, edgegw, env

# `edgegw status` as often as it can be run, in a process of its own so that it runs beside the starts, not between
PROBE = """
import sys
from gateway.cli import build_parser
args = build_parser().parse_args(["status", "--json", "-c", sys.argv[1]])
for _ in range(int(sys.argv[2])):
    args.func(args)
"""
PROBES = 10000


def write_status(data: Path, age_s: float) -> None:
    (data / "status.json").write_text(
        json.dumps(
            {
                "gateway": "gw1",
                "version": "0",
                "pid": 4242,
                "written_at": time.time() - age_s,
                "adapters": [],
                "uplinks": [],
            }
        )
    )


def test_a_gateway_starting_while_status_asks_is_never_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    DataDirLock.take(data).release()  # the lock file is there, as after any run
    write_status(data, 0)
    said = tmp_path / "probe.err"  # a file, not a pipe: one "not running" line a probe would fill a pipe and stop it
    with said.open("wb") as err:
        probe = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(cfg), str(PROBES)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=ROOT,
            env=env(),
        )
    starts = refused = 0
    last = ""
    deadline = time.monotonic() + 120
    try:
        while probe.poll() is None and time.monotonic() < deadline:
            try:
                DataDirLock.take(data).release()
            except DataDirInUse as exc:
                refused += 1
                last = str(exc)
            starts += 1
    finally:
        probe.kill()
        probe.wait()
    assert probe.returncode == 0, said.read_text()[-2000:]
    assert starts > PROBES  # the starts ran all through the probes
    assert refused == 0, f"{refused} of {starts} starts refused while status asked, the last: {last}"


def test_a_lock_held_is_found_in_the_kernels_table(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    write_status(data, 0)
    lock = DataDirLock.take(data)
    try:
        assert edgegw("status", "-c", str(cfg)).returncode == 0
        write_status(data, 60)
        hung = edgegw("status", "-c", str(cfg))
    finally:
        lock.release()
    assert (hung.returncode, hung.stdout) == (1, "")
    assert hung.stderr.startswith(
        f"{data / 'status.json'}: the gateway holds its lock but has not rewritten its status"
    )
    dead = edgegw("status", "-c", str(cfg))
    assert dead.returncode == 1
    assert dead.stderr.startswith(f"{data / 'status.json'}: the gateway is not running (last status 6")
