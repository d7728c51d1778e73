"""`edgegw profile validate FILE… | list | show NAME`: check and browse firmware profiles offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from gateway.cliopts import print_config_error
from gateway.errors import ConfigError
from gateway.profiles.loader import DEFAULT_SEARCH_PATH, find_profiles, load_profile, load_profile_file
from gateway.profiles.schema import Profile

__all__ = ["EXIT_FAILURE", "EXIT_INVALID", "EXIT_OK", "add_parser", "run"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `profile` and its subcommands to the `edgegw` argument parser; returns the `profile` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "profile", help="validate, list and show firmware profiles (device models)"
    )
    sub = p.add_subparsers(dest="profile_command", required=True, metavar="{validate,list,show}")
    v = sub.add_parser("validate", help="check profile files; exit 2 listing every error with its key path")
    v.add_argument("files", nargs="+", type=Path, metavar="FILE")
    for name, help_text in (
        ("list", "every profile on the search path"),
        ("show", "one profile's interface, points and commands"),
    ):
        s = sub.add_parser(name, help=help_text)
        if name == "show":
            s.add_argument("name", metavar="NAME", help="vendor/model, e.g. eastron/sdm120")
            s.add_argument("--json", action="store_true", help="the validated profile as JSON")
        s.add_argument(
            "--profiles-dir",
            dest="profile_dirs",
            type=Path,
            action="append",
            default=None,
            metavar="DIR",
            help="search DIR before the default path (repeatable)",
        )
    return p


def _search_path(args: argparse.Namespace) -> tuple[Path, ...]:
    return tuple(getattr(args, "profile_dirs", None) or ()) + DEFAULT_SEARCH_PATH


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run a `profile` subcommand; returns the exit code (2 when a profile is invalid or unknown)."""
    out = out or sys.stdout
    err = err or sys.stderr
    command = args.profile_command
    if command == "validate":
        return _validate(args.files, out, err)
    if command == "list":
        return _list(_search_path(args), out, err)
    try:
        profile = load_profile(args.name, _search_path(args))
    except ConfigError as exc:
        print_config_error(exc, err, source="profile")
        return EXIT_INVALID
    out.write(_dump_json(profile) if args.json else format_profile(args.name, profile))
    return EXIT_OK


def _validate(files: list[Path], out: TextIO, err: TextIO) -> int:
    code = EXIT_OK
    for path in files:
        try:
            profile = load_profile_file(path)
        except ConfigError as exc:
            print_config_error(exc, err, source="profile")
            code = EXIT_INVALID
            continue
        out.write(
            f"{path}: OK — {profile.vendor} {profile.model}, {len(profile.points)} point(s), "
            f"{len(profile.commands)} command(s)\n"
        )
    return code


def _list(search_path: tuple[Path, ...], out: TextIO, err: TextIO) -> int:
    refs = find_profiles(search_path)
    if not refs:
        err.write(f"profile list: no profiles found, got none in {', '.join(map(str, search_path))}\n")
        return EXIT_FAILURE
    rows: list[tuple[str, ...]] = [("NAME", "VENDOR", "MODEL", "ENTITY TYPE", "POINTS", "FILE")]
    broken = 0
    for ref in refs:
        try:
            p = load_profile_file(ref.path)
        except ConfigError as exc:
            broken += 1
            rows.append((ref.name, "-", "-", f"INVALID ({len(exc.errors)} error(s))", "-", str(ref.path)))
            continue
        rows.append((ref.name, p.vendor, p.model, p.entity_type, str(len(p.points)), str(ref.path)))
    out.write(_table(rows))
    if broken:
        err.write(f"profile list: {broken} profile(s) invalid; run `edgegw profile validate FILE` for details\n")
        return EXIT_INVALID
    return EXIT_OK


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows)


def format_profile(name: str, p: Profile) -> str:
    """A technician's view of one profile: what to wire, what is read, what can be written."""
    i = p.interface
    lines = [
        f"{name}: {p.vendor} {p.model}",
        f"  source:      {p.source}",
        f"  entity type: {p.entity_type}",
        f"  firmware:    {', '.join(p.firmware_versions) or 'any (none listed)'}",
        f"  interface:   {i.transport.value} {i.baud} {i.data_bits}{i.parity.value}{i.stop_bits}, unit id {i.unit_id}, "
        f"timeout {i.timeout:g} s, delay {i.inter_request_delay:g} s, max {i.max_registers_per_read} registers "
        f"per read, max gap {i.max_gap}",
        "",
    ]
    rows: list[tuple[str, ...]] = [("POINT", "FC", "ADDRESS", "TYPE", "ORDER", "SCALE", "UNIT", "ATTRIBUTE", "EVERY")]
    for pt in p.points:
        scale = (
            f"{pt.scale:g}"
            + (f" /10^{pt.decimals_from}" if pt.decimals_from else "")
            + (f" {pt.offset:+g}" if pt.offset else "")
        )
        kind = pt.data_type.value + (f"[{pt.count}]" if pt.count else "") + (f".{pt.bit}" if pt.bit is not None else "")
        rows.append(
            (
                pt.name,
                f"{pt.function_code:02d}",
                f"{pt.address} (0x{pt.address:04X})",
                kind,
                pt.byte_order.value if pt.data_type.value != "bool" else "-",
                scale,
                pt.unit or "-",
                f"{pt.attribute} ({pt.ngsi_type})" if pt.attribute else "- (not published)",
                f"{p.interval_of(pt):g} s",
            )
        )
    lines.append("  " + _table(rows).rstrip("\n").replace("\n", "\n  "))
    if p.commands:
        lines.append("")
        crow: list[tuple[str, ...]] = [("COMMAND", "FC", "ADDRESS", "TYPE", "ALLOWED")]
        for c in p.commands:
            allowed = (
                ", ".join(f"{v:g}" for v in c.values)
                if c.values is not None
                else f"{c.range[0]:g}..{c.range[1]:g}"
                if c.range is not None
                else "true, false"
                if c.data_type.value == "bool"
                else "any"
            )
            crow.append(
                (c.name, f"{c.function_code:02d}", f"{c.address} (0x{c.address:04X})", c.data_type.value, allowed)
            )
        lines.append("  " + _table(crow).rstrip("\n").replace("\n", "\n  "))
    return "\n".join(lines) + "\n"


def _dump_json(p: Profile) -> str:
    return json.dumps(p.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
