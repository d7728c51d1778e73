"""`edgegw run` as the gateway's user on a data directory left root's (`sudo mkdir`, a root `edgegw run`): one line
naming the directory and the command that gives it back, exit 2; `check-config` says the same. Before, both ended
in a PermissionError traceback from a stat inside the directory (Python 3.11's Path.is_dir and exists raise EACCES).
The gateway's user is played by uid 65534 with a real switch of user (setpriv)."""

from __future__ import annotations

from pathlib import Path

from tests.buffer.test_open_errors import FIX, give
from tests.gateway.secret_files import GATEWAY_USER, data_dir, edgegw, gateway_box, needs_root
from tests.gateway.test_secret_data_dir_root import give_to_root

__all__ = ["data_dir"]  # the fixture
pytestmark = needs_root


def unusable(data: Path) -> str:
    return f"buffer: cannot open {data / 'buffer.db'}, got Permission denied (EACCES) at {data}; {give(data)} or {FIX}"


def test_run_names_the_directory_and_the_chown_in_one_line(data_dir: Path) -> None:
    # 0755: the gateway's user sees that it holds nothing but the gateway's files; closed (0700), it gets no chown
    # (test_data_dir_not_theirs.py)
    config = gateway_box(data_dir)
    give_to_root(data_dir, 0o755)
    run = edgegw("run", "-c", str(config), uid=GATEWAY_USER)
    assert "Traceback" not in run.stderr
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith(unusable(data_dir)), run.stderr


def test_check_config_names_a_data_directory_it_may_not_enter(data_dir: Path) -> None:
    config = gateway_box(data_dir)
    give_to_root(data_dir)
    run = edgegw("check-config", "-c", str(config), uid=GATEWAY_USER)
    assert "Traceback" not in run.stderr
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "gateway.data_dir: is not writable, got Permission denied (EACCES) at " in run.stdout + run.stderr


def test_a_lock_file_left_roots_is_named_with_a_chown_that_follows_no_link(data_dir: Path) -> None:
    # a root `edgegw run` made gateway.lock (0600): the gateway's user may write the directory, not open the lock
    config = gateway_box(data_dir)
    lock = data_dir / "gateway.lock"
    lock.write_bytes(b"")
    lock.chmod(0o600)
    run = edgegw("run", "-c", str(config), uid=GATEWAY_USER)
    assert "Traceback" not in run.stderr
    assert run.returncode == 2, run.stderr
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"data directory {data_dir}: cannot lock {lock}, got Permission denied (EACCES) at {lock}; give it to the "
            f"gateway's user: run `sudo chown -h edgegw:edgegw {lock}` (with the units' User= and Group= if they are not "
            "edgegw; a root `edgegw run` may have made it)"
        )
    ), run.stderr


def test_a_data_directory_the_gateways_user_may_not_make_is_named_with_the_install_that_makes_it(
    data_dir: Path,
) -> None:
    # gateway.data_dir names a directory not made yet, in root's /var/lib: never a chown of the parent
    config = gateway_box(data_dir)
    missing = data_dir.parent / "lib" / "edgegw"
    missing.parent.mkdir(mode=0o755)
    config.write_text(config.read_text(encoding="utf-8").replace(str(data_dir), str(missing)), encoding="utf-8")
    make = (
        f"got Permission denied (EACCES) at {missing}; make it for the gateway's user: run `sudo install -d -o "
        f"edgegw -g edgegw -m 0700 {missing}` (with the units' User= and Group= if they are not edgegw) or {FIX}"
    )
    run = edgegw("run", "-c", str(config), uid=GATEWAY_USER)
    assert (run.returncode, run.stderr.strip().splitlines()[-1]) == (
        2,
        f"buffer: cannot open {missing / 'buffer.db'}, {make}",
    ), run.stderr
    check = edgegw("check-config", "-c", str(config), uid=GATEWAY_USER)
    assert (check.returncode, f"gateway.data_dir: cannot be created, {make}" in check.stderr) == (2, True), check
