"""The Modbus family's tools for the web UI (`edgegw.tools` entry point): the bus probe and a one-off read.

Both run adapters/modbus/cli.py's own `probe` and `read`; only the output differs: progress lines
for `tool.poll` instead of a redrawn terminal bar.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from adapters.modbus.cli import EXIT_OK, ProbeRequest, ReadRequest, parse_units, probe, read
from adapters.modbus.config import PORT_HELP, PortAddress, parse_port
from gateway.control.tools import Param, Progress, Tool

FAMILY = "modbus"
_PORT = Param(name="port", type="str", required=True, help="/dev/ttyUSB0, tcp://HOST:502 or rtu-over-tcp://HOST:PORT")


def _lines(progress: Progress) -> Callable[[str], None]:
    """A write() for the cli's output: each complete line becomes one progress line."""

    def write(text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                progress(line)

    return write


def _port(text: str, progress: Progress) -> PortAddress | None:
    try:
        return parse_port(text)
    except ValueError:
        progress(f'port: {PORT_HELP}, got "{text}"')
        return None


async def run_probe(args: Mapping[str, Any], progress: Progress) -> bool:
    port = _port(args["port"], progress)
    if port is None:
        return False
    try:
        units = parse_units(args["units"])
    except argparse.ArgumentTypeError as exc:
        progress(f"units: {exc}")
        return False
    shown = {"found": -1}

    def step(done: int, total: int, label: str, found: int) -> None:
        # about ten lines per run, and one more whenever another unit answers
        if found != shown["found"] or done == total or done % max(1, total // 10) == 0:
            shown["found"] = found
            progress(f"{done}/{total}{' ' + label if label else ''}, found {found}")

    request = ProbeRequest(
        port=port,
        baud=str(args["baud"]),
        parity=args["parity"],
        stop_bits=args["stop_bits"],
        units=units,
        timeout=float(args["timeout"]),
    )
    write = _lines(progress)
    return await probe(request, write, write, step, lambda: None) == EXIT_OK


async def run_read(args: Mapping[str, Any], progress: Progress) -> bool:
    port = _port(args["port"], progress)
    if port is None:
        return False
    request = ReadRequest(
        profile=args["profile"],
        port=port,
        unit=args["unit"],
        baud=args["baud"],
        parity=args["parity"],
        timeout=None if args["timeout"] is None else float(args["timeout"]),
    )
    write = _lines(progress)
    return await read(request, write, write) == EXIT_OK


def tools() -> list[Tool]:
    return [
        Tool(
            family=FAMILY,
            tool="probe",
            title="Find the Modbus units that answer on a port",
            params=(
                _PORT,
                Param(name="baud", type="str", default="9600", help="baud rate, or auto"),
                Param(name="parity", type="str", default="N", help="N, E or O"),
                Param(name="stop_bits", type="int", default=1, help="1 or 2"),
                Param(name="units", type="str", default="1-247", help="unit ids, e.g. 1-247 or 1,2,5"),
                Param(name="timeout", type="float", default=0.1, help="seconds to wait for each unit"),
            ),
            run=run_probe,
        ),
        Tool(
            family=FAMILY,
            tool="read",
            title="Read one Modbus device by its profile",
            params=(
                Param(name="profile", type="str", required=True, help="vendor/model, e.g. eastron/sdm120"),
                _PORT,
                Param(name="unit", type="int", required=True, help="the device's unit id"),
                Param(name="baud", type="int", help="default: the profile's"),
                Param(name="parity", type="str", help="N, E or O; default: the profile's"),
                Param(name="timeout", type="float", help="seconds per request; default: the profile's"),
            ),
            run=run_read,
        ),
    ]
