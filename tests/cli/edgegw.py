"""`edgegw` as a technician runs it: a process of its own, its output as bytes, its exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, data_dir: Path | None = None) -> Path:
    """A gateway config in `tmp_path` whose data directory is `data_dir` (default tmp_path/data)."""
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{data_dir or tmp_path / "data"}"\nstatus_interval_s = 0.5\n\n'
        '[[uplinks]]\nname = "o"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
    )
    return path


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def edgegw(
    *args: str, stdin: bytes | None = b"", uid: int | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    switch = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    done = subprocess.run(
        [*switch, sys.executable, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env=env(),
        check=False,
    )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())
