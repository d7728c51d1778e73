"""`edgegw read` and `edgegw probe modbus` refuse a unit id or timeout the config would refuse: exit 2, the option named.

Regression: `edgegw read --unit 300` opened the port and crashed with a traceback (ValueError: bytes
must be in range(0, 256)), exit 1; the web UI's read tool said "failed, got ValueError"; and
`--timeout -1` was taken ("did not answer within -1 s").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.modbus import tools
from adapters.modbus.config import DeviceConfig
from gateway import cli
from tests.adapters.modbus.peers import PtyPair
from tests.support.entry_points import declared_entry_points

READ = ["read", "--profile", "generic/xy-md02", "--port", "/dev/ttyUSB0"]
PROBE = ["probe", "modbus", "--port", "/dev/ttyUSB0"]


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The error `edgegw …` prints for `argv`, after checking it exits 2 without touching the port."""
    parser = cli.build_parser(declared_entry_points(cli.CLI_GROUP))
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ([*READ, "--unit", "300"], 'edgegw read: error: argument --unit: must be a unit id 1..255, got "300"'),
        ([*READ, "--unit", "0"], 'edgegw read: error: argument --unit: must be a unit id 1..255, got "0"'),
        ([*READ, "--unit", "one"], 'edgegw read: error: argument --unit: must be a unit id 1..255, got "one"'),
        (
            [*READ, "--unit", "1", "--timeout", "-1"],
            'edgegw read: error: argument --timeout: must be seconds, more than 0 and at most 60, got "-1"',
        ),
        (
            [*READ, "--unit", "1", "--timeout", "nan"],
            'edgegw read: error: argument --timeout: must be seconds, more than 0 and at most 60, got "nan"',
        ),
        (
            [*PROBE, "--timeout", "0"],
            'edgegw probe modbus: error: argument --timeout: must be seconds, more than 0 and at most 60, got "0"',
        ),
    ],
)
def test_a_bad_unit_id_or_timeout_is_a_usage_error_naming_the_option(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _usage_error(argv, capsys) == error


def _config_takes(**fields: Any) -> bool:
    doc = {"name": "th1", "bus": "rs485", "profile": "generic/xy-md02", "unit_id": 1, **fields}
    try:
        DeviceConfig.model_validate(doc)
    except ValidationError:
        return False
    return True


def _cli_takes(argv: list[str]) -> bool:
    try:
        cli.build_parser(declared_entry_points(cli.CLI_GROUP)).parse_args(argv)
    except SystemExit:
        return False
    return True


@pytest.mark.parametrize("unit", [-1, 0, 1, 247, 248, 254, 255, 256])
def test_the_unit_ids_read_takes_are_the_configs(unit: int) -> None:
    assert _cli_takes([*READ, "--unit", str(unit)]) == _config_takes(unit_id=unit)


@pytest.mark.parametrize("timeout", [-1.0, 0.0, 0.001, 60.0, 60.5])
def test_the_timeouts_read_takes_are_the_configs(timeout: float) -> None:
    assert _cli_takes([*READ, "--unit", "1", "--timeout", str(timeout)]) == _config_takes(timeout=timeout)


def test_the_installed_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)  # a port that opens: the old code got as far as building the frame
    try:
        result = subprocess.run(
            [sys.executable, "-m", "adapters.modbus.cli", *READ[:-1], pair.a, "--unit", "300"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        pair.close()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == 'edgegw read: error: argument --unit: must be a unit id 1..255, got "300"'


@pytest.mark.parametrize(
    ("unit", "timeout", "said"),
    [
        (300, None, "read: unit must be a unit id 1..255, got 300"),
        (1, -1.0, "read: timeout must be seconds, more than 0 and at most 60, got -1"),
    ],
)
async def test_the_web_tool_says_what_is_wrong_and_does_not_crash(
    tmp_path: Path, unit: int, timeout: float | None, said: str
) -> None:
    pair = PtyPair(tmp_path)
    lines: list[str] = []
    read = next(t for t in tools.tools() if t.tool == "read")
    args = {"profile": "generic/xy-md02", "port": pair.a, "unit": unit, "baud": None, "parity": None}
    try:
        ok = await read.run({**args, "timeout": timeout}, lines.append)
    finally:
        pair.close()
    assert ok is False
    assert lines == [said]


async def test_the_web_probe_refuses_a_timeout_that_is_not_positive() -> None:
    lines: list[str] = []
    probe = next(t for t in tools.tools() if t.tool == "probe")
    args = {"port": "/dev/ttyUSB97", "baud": "9600", "parity": "N", "stop_bits": 1, "units": "1-3", "timeout": -1}
    assert await probe.run(args, lines.append) is False
    assert lines == ["probe: timeout must be seconds, more than 0 and at most 60, got -1"]
