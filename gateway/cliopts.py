"""What every `edgegw` subcommand shares: the `--config`/`-c` option, the file it means, how a refused config is said."""

from __future__ import annotations

import argparse
import os
import sys
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
