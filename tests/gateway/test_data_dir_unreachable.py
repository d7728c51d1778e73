"""A gateway.data_dir below a directory the gateway's user may not enter: one line naming that directory, and the
search permission (+x) it needs, from `check-config`, `edgegw run` and a config apply's check.

Before, `check-config` (and the check a config apply runs in the gateway) ended in a PermissionError traceback:
Python 3.11's Path.exists raises EACCES for a path below a directory this user may not enter. `edgegw run` gave one
line, but advised an `install -d`, which cannot help while the parent refuses entry. The gateway's user is played
by uid 65534 with a real switch of user (setpriv).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.secret_files import GATEWAY_USER, edgegw, needs_root, run_as, write_config

pytestmark = needs_root
USE_ANOTHER = "set gateway.data_dir to a directory the gateway's user can create or write, e.g. /var/lib/edgegw"


def unreachable(closed: Path) -> str:
    return (
        f"got Permission denied (EACCES) at {closed}, which user nobody may not enter; give the gateway's user search "
        f"permission (+x) on {closed} (e.g. `sudo setfacl -m u:edgegw:x {closed}`, with the units' User= if it is "
        f"not edgegw) or {USE_ANOTHER}"
    )


@pytest.fixture
def top() -> Iterator[Path]:
    # outside pytest's own temporary tree, which only root may enter
    with tempfile.TemporaryDirectory(prefix="edgegw-unreachable-") as name:
        Path(name).chmod(0o755)
        yield Path(name)


# the data directory, and the first directory on the way to it closed to the gateway's user (root's, 0700)
PLACES = pytest.mark.parametrize(
    ("below", "closed"),
    [("locked/edgegw", "locked"), ("open/locked/a/edgegw", "open/locked")],
    ids=["parent", "grandparent-of-a-deeper-one"],
)


def lay_out(top: Path, below: str, closed: str) -> Path:
    data = top / below
    data.parent.mkdir(parents=True)
    (top / closed).chmod(0o700)
    return data


@PLACES
def test_check_config_names_the_directory_it_may_not_enter(top: Path, below: str, closed: str) -> None:
    config = write_config(top / "gw.toml", lay_out(top, below, closed))
    done = edgegw("check-config", "-c", str(config), uid=GATEWAY_USER)
    assert "Traceback" not in done.stderr
    assert (done.returncode, done.stderr) == (
        2,
        f"{config}: gateway.data_dir: cannot be reached, {unreachable(top / closed)}\n",
    )


@PLACES
def test_run_names_the_directory_it_may_not_enter_and_no_install(top: Path, below: str, closed: str) -> None:
    data = lay_out(top, below, closed)
    done = edgegw("run", "-c", str(write_config(top / "gw.toml", data)), uid=GATEWAY_USER)
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (
        2,
        f"buffer: cannot open {data / 'buffer.db'}, {unreachable(top / closed)}",
    ), done.stderr
    assert "install -d" not in done.stderr


def test_run_says_so_for_a_data_directory_that_is_there_too(top: Path) -> None:
    # made by root before the parent was closed: its mkdir (exist_ok) is refused the same way
    data = lay_out(top, "locked/edgegw", "locked")
    data.mkdir()
    done = edgegw("run", "-c", str(write_config(top / "gw.toml", data)), uid=GATEWAY_USER)
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (
        2,
        f"buffer: cannot open {data / 'buffer.db'}, {unreachable(top / 'locked')}",
    ), done.stderr


def test_a_config_apply_moving_it_there_is_refused_with_the_same_line(top: Path) -> None:
    # app.reload_problem is what config.check, config.apply, rollback and SIGHUP ask, in the gateway's process
    running = write_config(top / "running.toml", top / "data")
    moved = write_config(top / "moved.toml", lay_out(top, "locked/edgegw", "locked"))
    asked = (
        "from gateway.app import reload_problem\n"
        "from gateway.config import load_config\n"
        f"print(reload_problem(load_config({str(running)!r}), load_config({str(moved)!r})))\n"
    )
    done = run_as(GATEWAY_USER, top, asked)
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"gateway.data_dir: cannot be reached, {unreachable(top / 'locked')}\n",
        "",
    )
