"""A bug that ends `edgegw run` is one redacted CRITICAL log line with the traceback, and exit 1 for a restart."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gateway import cli
from gateway.app import Gateway


async def _broken_start(self: Gateway) -> None:
    raise RuntimeError("cannot go on, got Authorization: Bearer eyJ0.eyJ1.c2ln")


def test_a_crash_is_logged_redacted_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-crash"\ndata_dir = "{tmp_path}"\nlog_format = "json"\n\n'
        '[[adapters]]\nname = "gauges"\ntype = "simulated"\nrate = 0.001\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
    )
    monkeypatch.setattr(Gateway, "start", _broken_start)  # stands for any bug: the code under test is the handling
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        assert cli.main(["run", "-c", str(config)]) == 1
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "eyJ0" not in err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    crash = [d for d in lines if d["level"] == "critical"]
    assert len(crash) == 1
    assert crash[0]["msg"].startswith("stopped by an unexpected error; every acknowledged reading is in the buffer")
    assert "RuntimeError: cannot go on, got Authorization: Bearer ***" in crash[0]["exc"]
