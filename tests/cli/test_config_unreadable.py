"""A configuration that cannot be read is said in words, with what to do: it was "cannot read: [Errno 21] Is a
directory: '/etc/edgegw'", the path said twice and no fix."""

from __future__ import annotations

from pathlib import Path

from tests.cli.edgegw import config, edgegw
from tests.gateway.secret_files import GATEWAY_USER, needs_root


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
