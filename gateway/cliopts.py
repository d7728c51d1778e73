"""The `--config`/`-c` option every `edgegw` subcommand takes, and the file it means when not given."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

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
