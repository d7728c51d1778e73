"""`edgegw probe modbus --units` takes what its text says: 1..247 on a serial line, 1..255 over Modbus TCP.

Regression: the help and the error said 1..247, yet 248..255 (reserved on a serial line by the
Modbus spec) were taken and asked on the line, and the error for 256 still said 1..247.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

import pytest

from adapters.modbus import tools
from gateway import cli
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.modbus.rawpeers import RawRtuDevice, RawTcpServer, mbap, read_request, registers_pdu, rtu_answer
from tests.support.entry_points import declared_entry_points

RANGE = "1..247 on a serial line, 1..255 over Modbus TCP"


def _parser() -> argparse.ArgumentParser:
    return cli.build_parser(declared_entry_points(cli.CLI_GROUP))


async def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = _parser().parse_args(argv)
    code = await asyncio.to_thread(args.func, args, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("units", ["256", "0", "1-300", "0-3"])
def test_a_unit_id_no_port_takes_is_a_usage_error_naming_both_ranges(
    units: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["probe", "modbus", "--port", "/dev/ttyUSB0", "--units", units])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f'edgegw probe modbus: error: argument --units: unit ids are {RANGE}, got "{units}"'
    )


def test_a_units_text_that_is_no_list_says_the_form(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["probe", "modbus", "--port", "/dev/ttyUSB0", "--units", "one"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        'edgegw probe modbus: error: argument --units: must be like 1-247 or 1,2,5, got "one"'
    )


def test_the_help_says_the_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["probe", "modbus", "--help"])
    assert " ".join(capsys.readouterr().out.split()).count(RANGE) == 1


@pytest.mark.parametrize(("units", "bad"), [("248", "248"), ("240-255", "248-255"), ("1,250,254", "250,254")])
async def test_reserved_unit_ids_are_refused_on_a_serial_line_before_asking(
    tmp_path: Path, units: str, bad: str
) -> None:
    pair = PtyPair(tmp_path)
    device = RawRtuDevice(pair.b, lambda request: [(0.002, rtu_answer(request))])
    try:
        code, out, err = await _run(["probe", "modbus", "--port", pair.a, "--units", units, "--timeout", "0.02"])
    finally:
        device.close()
        pair.close()
    assert (code, out) == (2, "")
    assert err == (
        f"probe: unit ids on a serial line are 1..247 (248..255 are reserved by the Modbus spec), got {bad}; "
        "1..255 are taken over Modbus TCP only\n"
    )
    assert device.requests == []


async def test_unit_255_is_asked_over_modbus_tcp() -> None:
    # a Modbus TCP device that is no gateway answers to unit 255 (the spec's advice), and only there
    def script(tid: int, unit: int, pdu: bytes) -> bytes | None:
        fc, _, count = read_request(pdu)
        return mbap(tid, unit, registers_pdu(fc, [1] * count)) if unit == 255 else None

    server = await RawTcpServer(script).start()
    try:
        code, out, _ = await _run(
            ["probe", "modbus", "--port", f"tcp://127.0.0.1:{server.port}", "--units", "250-255", "--timeout", "0.05"]
        )
    finally:
        await server.stop()
    assert code == 0
    assert out.endswith(f"found 1 unit(s) on tcp://127.0.0.1:{server.port} at Modbus TCP: 255\n")
    assert [unit for unit, _ in server.requests] == [250, 251, 252, 253, 254, 255]


async def test_the_web_probe_says_the_same(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    lines: list[str] = []
    probe = next(t for t in tools.tools() if t.tool == "probe")
    args = {"port": pair.a, "baud": "9600", "parity": "N", "stop_bits": 1, "units": "250", "timeout": 0.02}
    try:
        assert await probe.run(args, lines.append) is False
        assert await probe.run({**args, "units": "300"}, lines.append) is False
    finally:
        pair.close()
    assert lines == [
        "probe: unit ids on a serial line are 1..247 (248..255 are reserved by the Modbus spec), got 250; "
        "1..255 are taken over Modbus TCP only",
        f'units: unit ids are {RANGE}, got "300"',
    ]
