"""A configuration that cannot be read is said in words, with what to do: it was "cannot read: [Errno 21] Is a
directory: '/etc/edgegw'", the path said twice and no fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.configbase import MAX_CONFIG_BYTES
from tests.cli.edgegw import config, edgegw
from tests.gateway.secret_files import GATEWAY_USER, ROOT, needs_root


def test_a_directory_named_as_the_config_is_one_line_with_the_fix(tmp_path: Path) -> None:
    run = edgegw("check-config", str(tmp_path))
    assert run.returncode == 2
    assert run.stderr.strip().endswith(f"{tmp_path}: cannot read, got a directory; name the configuration file in it")
    assert "Errno" not in run.stderr


@needs_root
def test_a_config_the_user_may_not_read_says_whom_to_run_as(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.chmod(0o600)  # root's; the service user may not read it
    run = edgegw("check-config", str(cfg), uid=GATEWAY_USER)
    assert run.returncode == 2
    assert "cannot read, got permission denied; run it as the gateway's user or with sudo" in run.stderr
    assert "Errno" not in run.stderr


def test_a_named_pipe_in_place_of_the_config_is_refused_at_once(tmp_path: Path) -> None:
    """The gateway's account may replace the config root reads (`check-config` runs in the package's postinst):
    a named pipe hung it, and an apt upgrade with it."""
    fifo = tmp_path / "gateway.toml"
    os.mkfifo(fifo)
    run = edgegw("check-config", str(fifo), timeout=20)  # the hang failed here
    assert run.returncode == 2
    assert run.stderr.strip().endswith(f"{fifo}: cannot read, got a named pipe; name the configuration file")


def test_a_device_in_place_of_the_config_is_never_opened(tmp_path: Path) -> None:
    """Through a link to /dev/zero root read until memory ran out; a serial port or a watchdog is changed by the
    open itself. Refused before any device is opened."""
    link = tmp_path / "gateway.toml"
    link.symlink_to("/dev/zero")
    run = edgegw("check-config", str(link))
    assert run.returncode == 2
    assert run.stderr.strip().endswith(f"{link}: cannot read, got a character device; name the configuration file")


def test_a_config_over_the_bound_is_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "gateway.toml"
    with huge.open("wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: nothing written
    run = edgegw("check-config", str(huge))
    assert run.returncode == 2
    assert f"{huge}: cannot read, got a file over 16 MiB; a configuration is a few KiB of text" in run.stderr


def test_a_config_reached_through_a_link_is_read_as_ever(tmp_path: Path) -> None:
    link = tmp_path / "gateway.toml"
    link.symlink_to(config(tmp_path))
    run = edgegw("check-config", str(link))
    assert run.returncode == 0, run.stderr


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_a_config_is_read_where_proc_is_not_mounted(tmp_path: Path) -> None:
    """A chroot or an image build without /proc: the file is opened by its name again and checked to be the one
    looked at. It read as "file not found" there."""
    cfg = config(tmp_path)
    run = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-ec",
            f'mount -t tmpfs none /proc && exec "$0" -m gateway check-config "{cfg}"',
            sys.executable,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{cfg}: OK — gateway gw1, 0 adapter(s), 1 uplink(s)\n"
