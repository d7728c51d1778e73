"""`edgegw probe modbus` (which unit ids answer, at which baud) and `edgegw read` (one device's values as a table).

The Modbus family's contribution to the `edgegw` command: pyproject.toml declares `add_parsers` in the
`edgegw.cli` entry-point group, and gateway/cli.py adds whatever that group holds, naming no family.
`probe` and `read` take their options as a frozen request and write through callbacks, so the web
UI's tools (tools.py) run the very same code with progress lines instead of a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from adapters.modbus import rtu
from adapters.modbus.codec import PointValue, QualityCode, decode_reads, plan_reads
from adapters.modbus.config import PORT_HELP, PortAddress, SerialSettings, parse_port
from adapters.modbus.transport import Link, LinkError, ModbusTimeout, open_link
from gateway.errors import ConfigError
from gateway.profiles.loader import DEFAULT_SEARCH_PATH, load_profile
from gateway.profiles.schema import BAUD_RATES, Parity, Transport

__all__ = [
    "AUTO_BAUDS",
    "EXIT_NOTHING",
    "EXIT_OK",
    "EXIT_USAGE",
    "ProbeRequest",
    "ReadRequest",
    "add_parsers",
    "main",
    "parse_units",
    "probe",
    "read",
    "run_probe",
    "run_read",
]

Write = Callable[[str], object]  # takes text as a stream's write() does: whole lines, each ending in a newline
# (done, total, label, found): called after each unit asked
Step = Callable[[int, int, str, int], None]

EXIT_OK = 0
EXIT_NOTHING = 1  # the port opened but nothing answered
EXIT_USAGE = 2  # a bad argument, a missing port, no permission, an unknown profile

# the speeds devices ship with, most common first: auto-detection stops at the first that answers
AUTO_BAUDS = (9600, 19200, 4800, 2400, 38400, 115200, 57600, 1200)

# the bounds of a device's `unit_id` and `timeout` in the config (config.py), so that a value tried
# here with `read` can be written there; tests/adapters/modbus/test_cli_arguments.py keeps them in step
UNIT_IDS = range(1, 256)
MAX_TIMEOUT = 60.0
_UNIT_RULE = f"must be a unit id {UNIT_IDS[0]}..{UNIT_IDS[-1]}"
_TIMEOUT_RULE = f"must be seconds, more than 0 and at most {MAX_TIMEOUT:g}"


# which unit ids `probe` asks: on a serial line 0 is broadcast (never answered) and 248..255 are
# reserved by the spec; over Modbus TCP 255 addresses a device that is no gateway (the spec's advice),
# and the config takes 1..255 there. The port is not known while --units is parsed: `probe` checks the line's.
PROBE_UNITS_SERIAL = range(1, 248)
PROBE_UNITS_TCP = UNIT_IDS
_PROBE_UNITS_RULE = (
    f"unit ids are {PROBE_UNITS_SERIAL[0]}..{PROBE_UNITS_SERIAL[-1]} on a serial line, "
    f"{PROBE_UNITS_TCP[0]}..{PROBE_UNITS_TCP[-1]} over Modbus TCP"
)


def parse_units(text: str) -> list[int]:
    """`1-247`, `1,2,5`, `1-10,20`: unit ids 1..255 (a serial line's 1..247 is `probe`'s to check)."""
    units: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            first, last = int(lo), int(hi or lo)
            units.extend(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be like 1-247 or 1,2,5, got "{text}"') from None
    if not units or not all(u in PROBE_UNITS_TCP for u in units):
        raise argparse.ArgumentTypeError(f'{_PROBE_UNITS_RULE}, got "{text}"')
    return sorted(set(units))


def _unit_id(text: str) -> int:
    try:
        unit = int(text)
    except ValueError:
        unit = -1
    if unit not in UNIT_IDS:
        raise argparse.ArgumentTypeError(f'{_UNIT_RULE}, got "{text}"')
    return unit


def _timeout_ok(seconds: float) -> bool:
    return 0 < seconds <= MAX_TIMEOUT  # False for nan too


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not _timeout_ok(seconds):
        raise argparse.ArgumentTypeError(f'{_TIMEOUT_RULE}, got "{text}"')
    return seconds


def _port(text: str) -> PortAddress:
    try:
        return parse_port(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'--port {PORT_HELP}, got "{text}"') from None


def add_parsers(subparsers: Any) -> None:
    """Add `probe` (with the family `modbus`) and `read` to the `edgegw` argument parser."""
    p = subparsers.add_parser("probe", help="find the devices that answer on a bus")
    families = p.add_subparsers(dest="probe_family", required=True, metavar="{modbus}")
    m = families.add_parser("modbus", help="find the Modbus unit ids (and with --baud auto the baud rate) on a port")
    m.add_argument("--port", required=True, type=_port, help="/dev/ttyUSB0, tcp://HOST:502 or rtu-over-tcp://HOST:PORT")
    m.add_argument("--baud", default="9600", help="baud rate, or auto to try " + ", ".join(map(str, AUTO_BAUDS)))
    m.add_argument("--parity", default="N", choices=["N", "E", "O"])
    m.add_argument("--stop-bits", type=int, default=1, choices=[1, 2])
    m.add_argument(
        "--units",
        type=parse_units,
        default=parse_units("1-247"),
        help=f"unit ids to ask, {_PROBE_UNITS_RULE.removeprefix('unit ids are ')} (default 1-247)",
    )
    m.add_argument("--timeout", type=_seconds, default=0.1, help="seconds to wait for each unit (default 0.1)")
    m.set_defaults(func=run_probe)

    r = subparsers.add_parser("read", help="read one Modbus device by its profile and print its values")
    r.add_argument("--profile", required=True, metavar="NAME", help="vendor/model, e.g. eastron/sdm120")
    r.add_argument("--port", required=True, type=_port, help="/dev/ttyUSB0, tcp://HOST:502 or rtu-over-tcp://HOST:PORT")
    r.add_argument("--unit", required=True, type=_unit_id, help="the device's unit id (1..255)")
    r.add_argument("--baud", type=int, default=None, help="default: the profile's")
    r.add_argument("--parity", default=None, choices=["N", "E", "O"], help="default: the profile's")
    r.add_argument("--timeout", type=_seconds, default=None, help="seconds per request (default: the profile's)")
    r.add_argument(
        "--profiles-dir",
        dest="profile_dirs",
        type=Path,
        action="append",
        default=None,
        metavar="DIR",
        help="search DIR before the default profile path (repeatable)",
    )
    r.set_defaults(func=run_read)


# --- probe ----------------------------------------------------------------------------------------------------


class _Progress:
    """A one-line progress bar on stderr (redrawn with \\r), silent when stderr is not a terminal-like stream."""

    def __init__(self, err: TextIO) -> None:
        self.err = err

    def step(self, done: int, total: int, label: str, found: int) -> None:
        width = 30
        filled = width * done // total
        self.err.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}, found {found}")
        self.err.flush()

    def end(self) -> None:
        self.err.write("\n")
        self.err.flush()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeRequest:
    port: PortAddress
    baud: str = "9600"  # a number, or "auto"
    parity: str = "N"
    stop_bits: int = 1
    units: Sequence[int]
    timeout: float = 0.1


async def _ask(link: Link, unit: int, timeout: float) -> str | None:
    """What unit `unit` said to a one-register read (None: nothing usable)."""
    try:
        await link.transact(rtu.Request(unit_id=unit, function_code=3, address=0, count=1), timeout)
    except rtu.ExceptionResponse as exc:
        # an exception is an answer: the unit is there, register 0 is just not one of its
        return f"exception {exc.exception_code:02X} ({exc.name}) to FC03 @0"
    except (ModbusTimeout, rtu.ModbusError):
        return None
    return "FC03 @0"


async def probe(args: ProbeRequest, out: Write, err: Write, step: Step, end: Callable[[], None]) -> int:
    """Ask each unit id at each speed until one speed has answers; the exit code of `edgegw probe modbus`."""
    address: PortAddress = args.port
    serial_line = address.transport is not Transport.TCP
    if not _timeout_ok(args.timeout):
        err(f"probe: timeout {_TIMEOUT_RULE}, got {args.timeout:g}\n")
        return EXIT_USAGE
    refused = [u for u in args.units if u not in (PROBE_UNITS_SERIAL if serial_line else PROBE_UNITS_TCP)]
    if refused:
        got = _span(sorted(refused))
        if serial_line:
            err(
                f"probe: unit ids on a serial line are {PROBE_UNITS_SERIAL[0]}..{PROBE_UNITS_SERIAL[-1]} (248..255 "
                f"are reserved by the Modbus spec), got {got}; 1..255 are taken over Modbus TCP only\n"
            )
        else:
            err(f"probe: {_PROBE_UNITS_RULE}, got {got}\n")
        return EXIT_USAGE
    if args.baud == "auto":
        bauds: Sequence[int] = AUTO_BAUDS if serial_line else (9600,)
    else:
        try:
            bauds = (int(args.baud),)
        except ValueError:
            err(f'probe: --baud must be a number or auto, got "{args.baud}"\n')
            return EXIT_USAGE
        if bauds[0] not in BAUD_RATES:
            err(f"probe: --baud must be one of {', '.join(map(str, BAUD_RATES))} or auto, got {bauds[0]}\n")
            return EXIT_USAGE
    units = list(args.units)
    total, done = len(units) * len(bauds), 0
    line = ""
    for baud in bauds:
        settings = SerialSettings(baud=baud, parity=Parity(args.parity), stop_bits=args.stop_bits)
        line = settings.describe() if serial_line else "Modbus TCP"
        link = open_link(address, settings)
        try:
            await link.open()
        except LinkError as exc:
            err(f"{exc}\n")
            return EXIT_USAGE
        found: list[tuple[int, str]] = []
        try:
            for unit in units:
                try:
                    said = await _ask(link, unit, args.timeout)
                except LinkError as exc:  # the far side hung up mid-probe (a serial server's link dropped)
                    end()
                    err(f"probe: stopped at unit {unit} at {line}, got {_lost(exc)}\n")
                    return EXIT_USAGE
                if said is not None:
                    found.append((unit, said))
                if serial_line:
                    await asyncio.sleep(rtu.silent_interval(baud))
                done += 1
                step(done, total, f"at {line}" if serial_line else "", len(found))
        finally:
            await link.close()
        if found:
            end()
            for unit, said in found:
                out(f"unit {unit:>3}  answers ({said})\n")
            ids = ", ".join(str(u) for u, _ in found)
            out(f"found {len(found)} unit(s) on {address.text} at {line}: {ids}\n")
            return EXIT_OK
    end()
    span = _span(units)
    tried = ", ".join(map(str, bauds))
    where = f"at {tried} baud {args.parity}{args.stop_bits}" if serial_line else "over Modbus TCP"
    err(
        f"probe: nothing answered on {address.text} {where} (units {span}), got 0 answers; check A/B wiring "
        "and termination, baud rate and parity, that the devices are powered, and the unit ids\n"
    )
    return EXIT_NOTHING


def _lost(exc: LinkError) -> str:
    """The transport's words for the gateway ("it will be reopened") become a technician's: nothing reopens here."""
    said = str(exc).removesuffix("; it will be reopened")
    return f"{said}; check the device (or serial server) and its cable, then run it again"


def _span(units: list[int]) -> str:
    return (
        f"{units[0]}-{units[-1]}"
        if len(units) > 1 and units[-1] - units[0] + 1 == len(units)
        else ",".join(map(str, units))
    )


def run_probe(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    request = ProbeRequest(
        port=args.port,
        baud=args.baud,
        parity=args.parity,
        stop_bits=args.stop_bits,
        units=args.units,
        timeout=args.timeout,
    )
    progress = _Progress(err)
    return asyncio.run(probe(request, out.write, err.write, progress.step, progress.end))


# --- read -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRequest:
    profile: str
    port: PortAddress
    unit: int
    baud: int | None = None  # None: the profile's
    parity: str | None = None
    timeout: float | None = None
    profile_dirs: Sequence[Path] = ()


async def read(args: ReadRequest, out: Write, err: Write) -> int:
    """Read every point of one device by its profile and write the table; the exit code of `edgegw read`."""
    # argparse checks these for the command; the web UI's tool builds the request itself
    if args.unit not in UNIT_IDS:
        err(f"read: unit {_UNIT_RULE}, got {args.unit}\n")
        return EXIT_USAGE
    if args.timeout is not None and not _timeout_ok(args.timeout):
        err(f"read: timeout {_TIMEOUT_RULE}, got {args.timeout:g}\n")
        return EXIT_USAGE
    search = tuple(args.profile_dirs or ()) + DEFAULT_SEARCH_PATH
    try:
        profile = load_profile(args.profile, search)
    except ConfigError as exc:
        for problem in exc.errors:  # one line each
            err(f"read: {exc.source or args.profile}: {problem}\n")
        return EXIT_USAGE
    iface = profile.interface
    settings = SerialSettings(
        baud=args.baud or iface.baud,
        parity=Parity(args.parity) if args.parity else iface.parity,
        data_bits=iface.data_bits,
        stop_bits=iface.stop_bits,
    )
    timeout = args.timeout or iface.timeout
    address: PortAddress = args.port
    link = open_link(address, settings)
    try:
        await link.open()
    except LinkError as exc:
        err(f"{exc}\n")
        return EXIT_USAGE
    results: list[tuple[Any, Any]] = []
    failures: dict[str, str] = {}
    answered = False
    try:
        for request in plan_reads(
            profile.points,
            max_registers=iface.max_registers_per_read,
            max_bits=iface.max_bits_per_read,
            max_gap=iface.max_gap,
        ):
            req = rtu.Request(
                unit_id=args.unit, function_code=request.function_code, address=request.address, count=request.count
            )
            try:
                response = await link.transact(req, timeout)
            except LinkError as exc:  # the far side hung up mid-read: what was read is not a device's whole table
                err(f"read: unit {args.unit} on {address.text}: stopped, got {_lost(exc)}\n")
                return EXIT_USAGE
            except rtu.ExceptionResponse as exc:
                answered = True
                for name in request.points:
                    failures[name] = f"exception {exc.exception_code:02X} ({exc.name})"
                continue
            except (ModbusTimeout, rtu.ModbusError) as exc:
                kind = "no answer" if isinstance(exc, ModbusTimeout) else exc.message.rsplit(": ", 1)[-1].split(",")[0]
                for name in request.points:
                    failures[name] = kind
                continue
            answered = True
            results.append((request, response.registers if request.function_code in (3, 4) else response.bits))
            if address.transport is not Transport.TCP:
                await asyncio.sleep(max(rtu.silent_interval(settings.baud), iface.inter_request_delay))
    finally:
        await link.close()
    line = settings.describe() if address.transport is not Transport.TCP else "Modbus TCP"
    if not answered:
        err(
            f"read: unit {args.unit} did not answer on {address.text} at {line}, got no answer within "
            f"{timeout:g} s; check the unit id (`edgegw probe modbus --port {address.text}`), wiring, baud rate "
            "and parity\n"
        )
        return EXIT_NOTHING
    values = decode_reads(profile.points, results)
    out(f"{args.profile} unit {args.unit} on {address.text} ({line})\n")
    out(_table(profile.points, values, failures))
    return EXIT_OK


def _format(pv: PointValue) -> str:
    v = pv.value
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict):
        return " ".join(f"{k}={'1' if b else '0'}" for k, b in v.items())
    return str(v)


def _table(points: Sequence[Any], values: dict[str, PointValue], failures: dict[str, str]) -> str:
    rows = [("point", "value", "unit", "attribute", "quality")]
    for p in points:
        pv = values.get(p.name)
        if pv is None:
            rows.append((p.name, "-", p.unit or "", p.attribute or "", failures.get(p.name, "not read")))
            continue
        quality = pv.quality.value if pv.quality is QualityCode.GOOD else f"{pv.quality.value}: {pv.detail}"
        rows.append((p.name, _format(pv), p.unit or "", p.attribute or "", quality))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "".join(
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(r)).rstrip() + "\n" for r in rows
    )


def run_read(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    request = ReadRequest(
        profile=args.profile,
        port=args.port,
        unit=args.unit,
        baud=args.baud,
        parity=args.parity,
        timeout=args.timeout,
        profile_dirs=tuple(args.profile_dirs or ()),
    )
    return asyncio.run(read(request, out.write, err.write))


def main(argv: list[str] | None = None) -> int:
    """`python -m adapters.modbus.cli probe modbus …`: the same commands without the `edgegw` entry point."""
    parser = argparse.ArgumentParser(prog="edgegw")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
