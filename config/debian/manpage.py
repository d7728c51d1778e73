"""Writes edgegw(1) in roff from the CLI's own parser, so the manual lists exactly the commands the package ships.

Run by build-deb.sh with the package's Python: `manpage.py VERSION > edgegw.1`.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys

from gateway.cli import build_parser

FILES = (
    ("/etc/edgegw/gateway.toml", "the configuration (a conffile); check it with edgegw check-config"),
    ("/var/lib/edgegw", "the buffer, the stores, the backups and the control socket"),
    ("/opt/edgegw/.venv", "the application and its Python libraries"),
    ("/lib/systemd/system/edgegw*.service", "the gateway, the web UI and the nightly backup"),
    ("/usr/share/edgegw/supervisor/edgegw.conf", "the same programs for supervisord, on boxes without systemd"),
)


def _roff(text: str) -> str:
    """Text as roff: backslashes doubled, a leading dot or quote made literal."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(name, help) of each subcommand, read from the parser's own help: argparse has no public list of them."""
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=10_000, max_help_position=60)
    # the subcommands are the lines indented by four under "positional arguments:" (options by two)
    return [(m[1], m[2]) for line in parser.format_help().splitlines() if (m := re.fullmatch(r" {4}(\S+) +(.*)", line))]


def render(version: str) -> str:
    parser = build_parser()
    lines = [
        f'.TH EDGEGW 1 "" "edgegw {version}" "User Commands"',
        ".SH NAME",
        "edgegw \\- " + _roff(parser.description or ""),
        ".SH SYNOPSIS",
        ".B edgegw",
        ".I command",
        "[\\fIoptions\\fR]",
        ".SH DESCRIPTION",
        "The gateway reads devices, buffers every reading durably in SQLite and delivers it to the FIWARE "
        "platform. It runs as the \\fBedgegw\\fR system user from \\fBedgegw.service\\fR; the commands below "
        "inspect and manage it. \\fBedgegw\\fR \\fIcommand\\fR \\fB\\-\\-help\\fR describes each command's options.",
        ".SH COMMANDS",
    ]
    commands = _commands(parser)
    if not commands:  # the help's layout changed: a manual without commands would pass silently
        raise SystemExit("manpage.py: no subcommands in `edgegw --help`, got none; update _commands()")
    for name, help_text in commands:
        lines += [".TP", ".B " + _roff(name), _roff(help_text)]
    lines.append(".SH FILES")
    for path, what in FILES:
        lines += [".TP", ".I " + _roff(path), _roff(what)]
    lines += [
        ".SH SEE ALSO",
        ".BR systemctl (1),",
        ".BR journalctl (1),",
        "/usr/share/doc/edgegw/README.md",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(sys.argv[1]))
