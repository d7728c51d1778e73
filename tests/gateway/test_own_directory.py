"""A `chown -R` is advised only for a data directory that is the gateway's own: never for /var/lib (a typo in
gateway.data_dir) or a shared directory holding other files, which the advice would hand to the service user."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.own_directory import gateways_own, not_own
from tests.gateway.secret_files import GATEWAY_USER, data_dir, edgegw, gateway_box, needs_root
from tests.gateway.test_secret_data_dir_root import give_to_root

__all__ = ["data_dir"]  # the fixture


@pytest.mark.parametrize("system", ["/", "/var/lib", "/etc", "/srv", "/usr/local", "/home", "/tmp"])
def test_a_system_directory_is_never_the_gateways(system: str) -> None:
    assert gateways_own(Path(system)) is False


def test_a_link_to_a_system_directory_is_judged_by_what_it_leads_to(tmp_path: Path) -> None:
    (tmp_path / "data").symlink_to("/var/lib")
    assert gateways_own(tmp_path / "data") is False


def test_an_empty_directory_or_one_holding_the_gateways_files_is_its_own(tmp_path: Path) -> None:
    assert gateways_own(tmp_path) is True
    (tmp_path / "buffer.db").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("a technician's")
    assert gateways_own(tmp_path) is True


def test_a_directory_holding_other_files_only_is_not(tmp_path: Path) -> None:
    (tmp_path / "dpkg").mkdir()
    (tmp_path / "passwd").write_text("")
    assert gateways_own(tmp_path) is False
    assert not_own(tmp_path).startswith(f"{tmp_path} is not the gateway's own directory")


@needs_root
def test_run_on_a_shared_directory_it_may_not_write_advises_a_directory_of_its_own(data_dir: Path) -> None:
    # gateway.data_dir names a directory of root's that holds other things (the parent by mistake): no chown
    config = gateway_box(data_dir)
    shared = data_dir.parent / "shared"
    shared.mkdir()
    (shared / "other-service.conf").write_text("")
    give_to_root(shared, 0o755)
    config.write_text(config.read_text(encoding="utf-8").replace(str(data_dir), str(shared)), encoding="utf-8")
    run = edgegw("run", "-c", str(config), uid=GATEWAY_USER)
    assert run.returncode == 2, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.endswith(
        f"got Permission denied (EACCES) at {shared}; {os.path.realpath(shared)} is not the gateway's own directory "
        "(it holds other files, or is one of the system's): do not give it to the gateway's user; give the gateway "
        "a directory of its own, e.g. `sudo install -d -o edgegw -g edgegw -m 0700 /var/lib/edgegw`, and set "
        "gateway.data_dir to it"
    ), run.stderr
    assert "chown" not in line
    stored = edgegw("secret", "set", "uplink.password", "--stdin", "-c", str(config), stdin="pw\n", uid=GATEWAY_USER)
    assert (stored.returncode, "chown" in stored.stderr, "not the gateway's own directory" in stored.stderr) == (
        2,
        False,
        True,
    ), stored.stderr
