"""The package under test, built once per run (`make deb`'s script, ~1 min) and shared by the packaging tests,
also across pytest-xdist workers.

EDGEGW_TEST_DEB=dist/edgegw_….deb tests a package built already, as it is.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    if prebuilt := os.environ.get("EDGEGW_TEST_DEB"):
        return Path(prebuilt).resolve()
    for tool in ("dpkg-deb", "fakeroot", "strip", "readelf"):
        if shutil.which(tool) is None:
            pytest.skip(f"cannot build the package here: needs {tool}")
    # Under pytest-xdist every worker has a session of its own: the package is built once, in the run's
    # temporary folder the workers share, by the first worker that needs it, while the others wait.
    run_dir = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    with open(run_dir / "deb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = run_dir / "deb.built"
        if built.exists():
            return Path(built.read_text())
        out = tmp_path_factory.mktemp("deb")
        # PYTHONPATH naming the checkout, as a developer's shell may have it: the package must not depend on it
        done = subprocess.run(
            [REPO / "config" / "debian" / "build-deb.sh", out],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert done.returncode == 0, f"build-deb.sh failed:\n{done.stdout}\n{done.stderr}"
        path = Path(done.stdout.strip().splitlines()[-1])
        assert path.name.startswith("edgegw_0.1.0-1_") and path.name.endswith(".deb")
        built.write_text(str(path))
        return path
