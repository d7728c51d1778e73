"""A data directory written by release 0.1.0 (tests/storage/fixtures) and a config file naming it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
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


@pytest.fixture
def searchable_tmp() -> Iterator[Path]:
    """A temporary directory other users may search down to, as /var/lib is on a box, for tests that run a
    step as the service user. Outside pytest's own tree: its top (/tmp/pytest-of-root, 0700) was widened for
    the test, and any pytest starting meanwhile (a test's own, or another xdist worker's) made it private
    again under the test's feet."""
    with tempfile.TemporaryDirectory(prefix="edgegw-backup-") as name:
        top = Path(name)
        top.chmod(0o711)
        yield top


@pytest.fixture
def searchable_box(searchable_tmp: Path) -> tuple[Path, Path]:
    """`box`, in `searchable_tmp`."""
    data_dir = searchable_tmp / "data"
    shutil.copytree(RELEASE, data_dir)
    return write_config(searchable_tmp / "gateway.toml", data_dir), data_dir
