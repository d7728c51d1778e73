"""What every `edgegw` subcommand shares: the `--config`/`-c` option, the file it means, how a refused config is said."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from gateway.errors import ConfigError

# Here, not in gateway.config, so that modules gateway.config imports (a processor's own CLI) can use this one.
DEFAULT_PATH = Path("/etc/edgegw/gateway.toml")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help=f"gateway configuration (default: $EDGEGW_CONFIG or {DEFAULT_PATH})",
    )


def config_path(given: Path | None) -> Path:
    """The file named on the command line, else $EDGEGW_CONFIG, else the installed default."""
    return given if given is not None else Path(os.environ.get("EDGEGW_CONFIG", str(DEFAULT_PATH)))


def print_config_error(
    exc: ConfigError, err: TextIO | None = None, *, what: str = "", source: str = "configuration"
) -> None:
    """One problem on one line, led by what failed (the file, else the line's own key or path); several as a list.

    `what` ("user list") leads every line a subcommand prints; `source` names the count's file when the
    error has none. A count and an indented list for a single problem hid what failed behind
    "configuration: 1 error(s)" on a line that a journal or a terminal showed apart from the problem.
    """
    err = err or sys.stderr  # looked up now: a test (or a caller) may have replaced sys.stderr
    lead = f"{what}: " if what else ""
    if len(exc.errors) == 1:
        err.write(f"{lead}{exc.source}: {exc.errors[0]}\n" if exc.source else f"{lead}{exc.errors[0]}\n")
        return
    err.write(f"{lead}{exc.source or source}: {len(exc.errors)} error(s)\n")
    err.writelines(f"  {line}\n" for line in exc.errors)


def bounded_int(low: int, high: int, *, why: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number in low..high, else the one line argparse prints (no traceback later).

    Unbounded, a value like 99999999999999999999 passed the parser and ended in SQLite's OverflowError or a
    purge's ValueError after the work was done.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}{why}, got {text}")
        return value

    return parse


def bounded_seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: seconds in low..high (inf and nan refused: they overflowed deep in asyncio)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be seconds {low:g}..{high:g}, got {text!r}") from None
        if not low <= value <= high:  # False for nan too
            raise argparse.ArgumentTypeError(f"must be seconds {low:g}..{high:g}, got {text}")
        return value

    return parse


def os_error_words(exc: OSError) -> str:
    """ "is a directory" rather than "[Errno 21] Is a directory: '/etc/edgegw'": the path is said by the caller."""
    if exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__
