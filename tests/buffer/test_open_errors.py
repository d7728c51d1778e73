"""A data directory or buffer file the gateway cannot use: one clear message with the path and the fix, exit 2.

Through the real command line (`python -m gateway run` and `check-config`), as a technician or
systemd runs it: no traceback, the exact text asserted.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.buffer.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
FIX = "set gateway.data_dir to a directory the gateway's user can create or write, e.g. /var/lib/edgegw"


def give(data: Path) -> str:
    """The advice for a data directory the gateway's user may not write: the chown, never through a link."""
    return (
        f"give it to the gateway's user: run `sudo chown -hR edgegw:edgegw {os.path.realpath(data)}` (with the "
        "units' User= and Group= if they are not edgegw)"
    )


def write_config(tmp_path: Path, data_dir: Path | str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f"""
[gateway]
id = "gw1"
data_dir = "{data_dir}"

[[uplinks]]
name = "orion"
type = "orion"
url = "http://127.0.0.1:9"
""")
    path.chmod(0o644)
    return path


def edgegw(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user is not None else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def assert_refused(config: Path, run_message: str, check_line: str, user: int | None = None) -> None:
    run = edgegw("run", "-c", str(config), user=user)
    assert (run.returncode, run.stderr, run.stdout) == (2, run_message + "\n", "")
    check = edgegw("check-config", str(config), user=user)
    assert (check.returncode, check.stderr) == (2, f"{config}: {check_line}\n")


def test_read_only_data_directory(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    ro = tmpfs("1m", read_only=True)
    assert_refused(
        write_config(tmp_path, ro),
        f"buffer: cannot open {ro}/buffer.db, got Read-only file system (EROFS) at {ro}; "
        f"remount it read-write or {FIX}",
        f"gateway.data_dir: is not writable, got Read-only file system (EROFS) at {ro}; remount it read-write or {FIX}",
    )
    # a data directory still to be made on a read-only disk
    sub = ro / "edgegw"
    assert_refused(
        write_config(tmp_path, sub),
        f"buffer: cannot open {sub}/buffer.db, got Read-only file system (EROFS) at {sub}; "
        f"remount it read-write or {FIX}",
        f"gateway.data_dir: cannot be created, got Read-only file system (EROFS) at {sub}; "
        f"remount it read-write or {FIX}",
    )


def test_a_directory_where_the_buffer_file_should_be(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "buffer.db").mkdir(parents=True)
    assert_refused(
        write_config(tmp_path, data),
        f"buffer: cannot open {data}/buffer.db, got a directory at that path; "
        f"move it away (the buffer is a file) or {FIX}",
        f"gateway.data_dir: cannot hold the buffer, got a directory at {data}/buffer.db; move it away (the buffer is a "
        f"file) or {FIX}",
    )


def test_a_data_directory_under_proc_cannot_be_created(tmp_path: Path) -> None:
    assert_refused(
        write_config(tmp_path, "/proc/edgegw"),
        f"buffer: cannot open /proc/edgegw/buffer.db, got No such file or directory (ENOENT) at /proc/edgegw; {FIX}",
        f"gateway.data_dir: cannot be created, got No such file or directory (ENOENT) at /proc/edgegw; {FIX}",
    )


def test_a_file_where_the_data_directory_should_be(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a directory")
    assert_refused(
        write_config(tmp_path, data),
        f"buffer: cannot open {data}/buffer.db, got a file at {data} where a directory should be; move the file "
        f"away or {FIX}",
        f"gateway.data_dir: is not a directory, got a file at {data}; move the file away or {FIX}",
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="running as another user needs root and setpriv (util-linux)",
)
def test_a_data_directory_the_gateways_user_may_not_write() -> None:
    # outside pytest's own temporary tree, which only root may enter
    with tempfile.TemporaryDirectory(prefix="edgegw-perm-") as name:
        top = Path(name)
        top.chmod(0o755)
        data = top / "data"
        data.mkdir(mode=0o755)  # root's: user nobody may enter it, not write it
        assert_refused(
            write_config(top, data),
            f"buffer: cannot open {data}/buffer.db, got Permission denied (EACCES) at {data}; {give(data)} or {FIX}",
            f"gateway.data_dir: is not writable, got Permission denied (EACCES) at {data}; {give(data)} or {FIX}",
            user=65534,
        )


def test_a_buffer_written_by_a_newer_gateway_is_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / "buffer.db")
    conn.execute("PRAGMA journal_mode = WAL")  # as every edgegw buffer is
    conn.execute("CREATE TABLE future (x)")
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    before = (data / "buffer.db").read_bytes()
    run = edgegw("run", "-c", str(write_config(tmp_path, data)))
    assert (run.returncode, run.stderr) == (
        2,
        (
            f"buffer: cannot open {data}/buffer.db, got schema version 7 written by a newer edgegw "
            f"(this one knows {SCHEMA_VERSION}); "
            "run that version, or move the file away to start an empty buffer\n"
        ),
    )
    assert (data / "buffer.db").read_bytes() == before


def test_check_config_lists_the_data_directory_with_every_other_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "/proc/edgegw")
    config.write_text(config.read_text().replace('id = "gw1"', 'id = "Bad ID"'))
    check = edgegw("check-config", str(config))
    assert check.returncode == 2
    assert check.stderr.splitlines() == [
        f"{config}: 2 error(s)",
        '  gateway.id: must be 1-64 characters of a-z 0-9 _ - starting with a letter or digit, got "Bad ID"',
        f"  gateway.data_dir: cannot be created, got No such file or directory (ENOENT) at /proc/edgegw; {FIX}",
    ]
