"""An adapter's buggy diagnostics() never stops the gateway (review s20, r1/r2).

Before, `_serve`'s status loop caught only OSError: one adapter whose diagnostics() returned a list made
`Gateway.status()` raise AttributeError, serve() ended, and systemd's restart met the same adapter again.
A real `edgegw run` subprocess with a test family (tests/gateway/bad_diagnostics.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, returns: str) -> tuple[list[dict[str, object]], Path]:
    """Run the gateway with one adapter whose diagnostics() returns `returns` for ~20 status writes, then stop
    it; its log lines and its data directory."""
    data = tmp_path / "data"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""[gateway]
id = "gw-diag"
data_dir = "{data}"
status_interval_s = 0.1

[[adapters]]
name = "pumps"
type = "test-bad-diagnostics"
returns = "{returns}"

[[uplinks]]
name = "orion"
type = "orion"
url = "http://127.0.0.1:{free_port()}"
"""
    )
    config.chmod(0o640)
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        gw = subprocess.Popen(
            [sys.executable, "-m", "tests.gateway.bad_diagnostics", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while b"control socket listening" not in log.read_bytes():
            assert gw.poll() is None, f"the gateway ended (exit {gw.returncode}):\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(2.0)  # ~20 status writes
        assert gw.poll() is None, f"the gateway ended (exit {gw.returncode}):\n{log.read_text()}"
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=30) == 0, log.read_text()
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return lines, data


def _warnings(lines: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(line["component"], line["msg"]) for line in lines if line["level"] in ("warning", "error", "critical")]


def test_diagnostics_that_are_a_list_show_as_an_error_and_the_gateway_runs_on(tmp_path: Path) -> None:
    lines, data = _run(tmp_path, "list")
    assert _warnings(lines) == [
        ("pumps", "adapter diagnostics() returned list, not a dict; its status shows that error instead")
    ]
    status = orjson.loads((data / "status.json").read_bytes())
    [pumps] = status["adapters"]
    assert pumps["diagnostics"] == {"error": "diagnostics() returned list, not a dict"}


def test_a_status_that_cannot_be_written_is_logged_once_and_the_gateway_runs_on(tmp_path: Path) -> None:
    """A generator in the diagnostics makes the status document itself fail (a TypeError, not an OSError)."""
    lines, _ = _run(tmp_path, "generator")
    [(component, message)] = _warnings(lines)
    assert component == "gateway"
    assert str(message).startswith(
        "status not written, `edgegw status` shows an older state: TypeError: cannot pickle 'generator' object"
    ), message
