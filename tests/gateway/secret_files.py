"""Rigs for the secret store's file tests: a gateway config over a store, and `edgegw` or Python run as another user.

The gateway's user is played by uid 65534 with a real switch of user (setpriv), in a process of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.secrets import SecretStore

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_USER = 65534  # nobody, standing in for edgegw
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="giving files to another user and running as it needs root and setpriv (util-linux)",
)
# every command that opens the store, and the name it gives itself in its error line
every_store_command = pytest.mark.parametrize(
    ("command", "what"),
    [
        (("secret", "list"), "secret list"),
        (("secret", "set", "uplink.password", "--stdin"), "secret set"),
        (("pseudonym", "list"), "pseudonym list"),
        (("pseudonym", "rotate"), "pseudonym rotate"),
    ],
)
PRELUDE = "import sys\nfrom pathlib import Path\nfrom gateway.secrets import SecretStore\ndata = Path(sys.argv[1])\n"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory the gateway's user owns (0700), as the package makes /var/lib/edgegw."""
    # outside pytest's own temporary tree, which only root may enter
    with tempfile.TemporaryDirectory(prefix="edgegw-keyfile-") as name:
        top = Path(name)
        top.chmod(0o755)
        data = top / "data"
        data.mkdir(mode=0o700)
        os.chown(data, GATEWAY_USER, GATEWAY_USER)
        yield data


def _run(uid: int | None, argv: list[str], stdin: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
    switch = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return subprocess.run(
        [*switch, sys.executable, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def edgegw(*args: str, stdin: str = "", uid: int | None = None) -> subprocess.CompletedProcess[str]:
    """`edgegw <args>` in a process of its own, by `uid` (None: as this test)."""
    return _run(uid, ["-m", "gateway", *args], stdin, 60)


def by_root(
    python: str, *args: str, before: tuple[str, ...] = (), path: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """`python -m gateway <args>` started by root (through `before`: a setpriv), the gateway's account played by
    nobody (EDGEGW_USER), edgegw imported from `path`; expected to stop on its own."""
    return subprocess.run(
        [*before, python, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=path,  # `-m` imports from the working directory first
        env={**os.environ, "PYTHONPATH": str(path), "EDGEGW_USER": "nobody"},
        timeout=60,
        check=False,
    )


def run_as(uid: int | None, data_dir: Path, code: str) -> subprocess.CompletedProcess[str]:
    """`code` run in a process of its own, by `uid` (None: root, as this test), with `data` and `SecretStore`."""
    return _run(uid, ["-c", PRELUDE + textwrap.dedent(code), str(data_dir)], None, 30)


def owner(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def write_config(config: Path, data_dir: Path) -> Path:
    """A gateway config at `config` with `data_dir`, a simulated adapter and an Orion uplink."""
    config.write_text(
        f'[gateway]\nid = "gw-key"\ndata_dir = "{data_dir}"\n\n'
        '[[adapters]]\nname = "gauges"\ntype = "simulated"\nrate = 0.001\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
    )
    return config


def store_box(tmp_path: Path) -> Path:
    """The config of a gateway whose data directory, `tmp_path / "data"`, holds a store with one secret."""
    config = write_config(tmp_path / "gw.toml", tmp_path / "data")
    SecretStore(tmp_path / "data").set("orion_token", "tok-1")
    return config


def gateway_box(data_dir: Path) -> Path:
    """The config of a gateway whose data directory holds a store with one secret, all of it the gateway's."""
    config = write_config(data_dir.parent / "gw.toml", data_dir)
    made = run_as(GATEWAY_USER, data_dir, 'SecretStore(data).set("orion_token", "tok-1")')
    assert made.returncode == 0, made.stderr
    return config


def ways_into(store: SecretStore) -> dict[str, Callable[[], object]]:
    """Every call that opens the store's files, by name."""
    return {
        "names": store.names,
        "migrate": store.migrate,
        "schema_version": store.schema_version,
        "get": lambda: store.get("a"),
        "set": lambda: store.set("b", "2"),
        "get_or_create": lambda: store.get_or_create("c", lambda: "3"),
    }


@pytest.fixture(scope="session")
def python_both_may_run() -> Iterator[str]:
    """A Python for a server root starts and the gateway's user goes on running (gateway.privileges): every file it
    imports later must be one that user may read, as on the box (/usr/bin/python3, /opt/edgegw/.venv).

    This test's own interpreter may live where only root may look (pyenv under /root): then a venv of the system's
    Python of the same version, seeing this one's packages, takes its place.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    readable = _run(GATEWAY_USER, ["-c", f"open({str(stdlib / 'codecs.py')!r}).close()"], None, 30)
    if readable.returncode == 0:
        yield sys.executable
        return
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip(f"this Python's files are root's only ({stdlib}), and there is no system {version}")
    # outside pytest's own temporary tree, which only root may enter
    with tempfile.TemporaryDirectory(prefix="edgegw-python-") as name:
        venv = Path(name) / "venv"
        Path(name).chmod(0o755)
        subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
        (venv / "lib" / version / "site-packages" / "edgegw-tests.pth").write_text(
            f"{sysconfig.get_paths()['purelib']}\n{sysconfig.get_paths()['platlib']}\n"
        )
        yield str(venv / "bin" / "python")
