"""A data directory written by release 0.1.0 (tests/storage/fixtures) and a config file naming it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.tmpfs import tmpfs as tmpfs  # a mounted share for copy_to (a share must be a mount)

RELEASE = Path(__file__).parents[1] / "storage" / "fixtures" / "0.1.0"


def write_config(path: Path, data_dir: Path, gateway_id: str = "fixture-gw", backup: str = "") -> Path:
    path.write_text(
        f"""[gateway]
id = "{gateway_id}"
data_dir = "{data_dir}"

[backup]
{backup}

[[adapters]]
name = "sim"
type = "simulated"
kind = "weather"

[[uplinks]]
name = "orion"
type = "orion"
url = "http://127.0.0.1:1026"
"""
    )
    return path


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(config file, data dir) of a box running 0.1.0's data."""
    data_dir = tmp_path / "data"
    shutil.copytree(RELEASE, data_dir)
    return write_config(tmp_path / "gateway.toml", data_dir), data_dir
