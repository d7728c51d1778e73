"""`edgegw probe modbus` and `edgegw read` against real peers: found units, the table, the technician's error texts."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import cli
from gateway.profiles import load_profile
from tests.adapters.modbus.peers import (
    PtyPair,
    UnitImage,
    image_from_values,
    serial_bus,
    start_tcp_peer,
)
from tests.support.entry_points import declared_entry_points

XY = load_profile("generic/xy-md02")


def _args(argv: list[str]) -> argparse.Namespace:
    """`edgegw …` parsed as the installed command does, with the family commands pyproject.toml declares
    (the installed metadata may predate them)."""
    return cli.build_parser(declared_entry_points(cli.CLI_GROUP)).parse_args(argv)


async def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = _args(argv)
    # the run functions own their event loop (they are CLI entry points): give them a thread
    code = await asyncio.to_thread(args.func, args, out, err)
    return code, out.getvalue(), err.getvalue()


def _xy(unit: int) -> UnitImage:
    return image_from_values(unit, XY, {"temperature": 21.5, "relative_humidity": 0.456, "temperature_correction": 0.5})


async def test_probe_finds_exactly_the_units_on_the_bus(tmp_path: Path) -> None:
    async with serial_bus(tmp_path, [_xy(3), _xy(7), _xy(12)]) as (path, _peer):
        code, out, err = await _run(["probe", "modbus", "--port", path, "--units", "1-15", "--timeout", "0.03"])
    assert code == 0
    assert out == (
        "unit   3  answers (exception 02 (illegal data address) to FC03 @0)\n"
        "unit   7  answers (exception 02 (illegal data address) to FC03 @0)\n"
        "unit  12  answers (exception 02 (illegal data address) to FC03 @0)\n"
        f"found 3 unit(s) on {path} at 9600 8N1: 3, 7, 12\n"
    )
    assert f"\r[{'#' * 30}] 15/15 at 9600 8N1, found 3\n" in err


async def test_probe_auto_baud_reports_the_first_speed_that_answers(tmp_path: Path) -> None:
    async with serial_bus(tmp_path, [_xy(2)]) as (path, _peer):
        # a pty answers at any speed: the first tried must not lose its answer to a loaded machine's 30 ms
        code, out, _err = await _run(
            ["probe", "modbus", "--port", path, "--baud", "auto", "--units", "1-3", "--timeout", "0.5"]
        )
    assert code == 0 and out.endswith(f"found 1 unit(s) on {path} at 9600 8N1: 2\n")


async def test_probe_says_when_nothing_answers(tmp_path: Path) -> None:
    async with serial_bus(tmp_path, [_xy(20)]) as (path, _peer):
        code, out, err = await _run(["probe", "modbus", "--port", path, "--units", "1-4", "--timeout", "0.02"])
    assert code == 1 and out == ""
    assert err.endswith(
        f"probe: nothing answered on {path} at 9600 baud N1 (units 1-4), got 0 answers; check A/B "
        "wiring and termination, baud rate and parity, that the devices are powered, and the unit ids\n"
    )


async def test_probe_over_tcp(tmp_path: Path) -> None:
    peer, port = await start_tcp_peer([_xy(1), _xy(5)])
    try:
        code, out, _ = await _run(
            ["probe", "modbus", "--port", f"tcp://127.0.0.1:{port}", "--units", "1-6", "--timeout", "0.05"]
        )
    finally:
        await peer.stop()
    assert code == 0 and out.endswith(f"found 2 unit(s) on tcp://127.0.0.1:{port} at Modbus TCP: 1, 5\n")


async def test_missing_port_is_named_with_where_to_look(tmp_path: Path) -> None:
    code, _out, err = await _run(["probe", "modbus", "--port", "/dev/ttyUSB97"])
    assert code == 2
    assert err == (
        'modbus /dev/ttyUSB97: no such serial port, got "/dev/ttyUSB97"; check the cable and '
        "`ls /dev/ttyUSB* /dev/ttyACM* /dev/serial/by-id/`\n"
    )


async def test_read_prints_one_table_of_decoded_values(tmp_path: Path) -> None:
    async with serial_bus(tmp_path, [_xy(1)]) as (path, _peer):
        code, out, err = await _run(["read", "--profile", "generic/xy-md02", "--port", path, "--unit", "1"])
    assert code == 0, err
    assert out == (
        f"generic/xy-md02 unit 1 on {path} (9600 8N1)\n"
        "point                   value  unit  attribute         quality\n"
        "temperature             21.5   CEL   temperature       good\n"
        "relative_humidity       0.456  C62   relativeHumidity  good\n"
        "temperature_correction  0.5    CEL                     good\n"
    )


async def test_read_flags_out_of_range_values_and_refused_points(tmp_path: Path) -> None:
    image = image_from_values(1, XY, {"temperature": 75.0, "relative_humidity": 0.5})
    async with serial_bus(tmp_path, [image]) as (path, _peer):
        code, out, _err = await _run(["read", "--profile", "generic/xy-md02", "--port", path, "--unit", "1"])
    assert code == 0
    assert out.splitlines()[2:] == [
        "temperature             75     CEL   temperature       out_of_range: outside -40..60",
        "relative_humidity       0.5    C62   relativeHumidity  good",
        "temperature_correction  -      CEL                     exception 02 (illegal data address)",
    ]


async def test_read_says_when_the_unit_does_not_answer(tmp_path: Path) -> None:
    async with serial_bus(tmp_path, [_xy(1)]) as (path, _peer):
        code, out, err = await _run(
            ["read", "--profile", "generic/xy-md02", "--port", path, "--unit", "9", "--timeout", "0.05"]
        )
    assert code == 1 and out == ""
    assert err == (
        f"read: unit 9 did not answer on {path} at 9600 8N1, got no answer within 0.05 s; check the unit "
        f"id (`edgegw probe modbus --port {path}`), wiring, baud rate and parity\n"
    )


async def test_read_unknown_profile(tmp_path: Path) -> None:
    code, _out, err = await _run(["read", "--profile", "acme/nothing", "--port", "/dev/ttyUSB0", "--unit", "1"])
    assert code == 2 and err.startswith('read: acme/nothing: no such profile, got "acme/nothing"; searched ')


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_permission_denied_suggests_the_dialout_group(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    try:
        device = os.path.realpath(pair.a)  # /dev/pts/N: root's, mode 0620, like a tty owned by root:dialout
        result = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-m",
                "adapters.modbus.cli",
                "read",
                "--profile",
                "generic/xy-md02",
                "--port",
                device,
                "--unit",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=os.getcwd(),
            check=False,
        )
    finally:
        pair.close()
    assert result.returncode == 2
    assert result.stderr == (
        f'modbus {device}: permission denied, got no access to "{device}"; add the user to the '
        "dialout group: sudo usermod -aG dialout $USER (then log in again)\n"
    )
