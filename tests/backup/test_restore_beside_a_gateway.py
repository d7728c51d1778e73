"""A restore never swaps the files under a running gateway, whoever started it, nor lets one start half-way.

It used to look for a control socket at <data_dir>/control.sock only (not `[gateway] control_socket`), and with
--service-manager systemd not at all: a gateway started by hand kept running, wrote into the buffer moved
aside to `.pre-restore-*`, and everything it buffered after the swap was lost with it. Each gateway here holds
the data directory's lock through gateway/run_lock.py in a process of its own, as `edgegw run` does.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.control.ops_config import lock_path
from gateway.run_lock import LOCK_FILE, DataDirInUse, DataDirLock

# `edgegw run`'s first step, in a process of its own: the lock taken, its pid written
GATEWAY = """
import sys, time
from pathlib import Path
from gateway.run_lock import DataDirLock
DataDirLock.take(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""
# a config apply under way: restore's swap waits for its lock
APPLY = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def _start(script: str, arg: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(arg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


@pytest.fixture
def by_hand(box: tuple[Path, Path]) -> Iterator[subprocess.Popen[str]]:
    """A gateway started by hand on the box's data directory."""
    proc = _start(GATEWAY, box[1])
    yield proc
    proc.kill()
    proc.communicate()  # its pipes closed too


def _backup(config: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["backup", "now", "-c", str(config)]) == 0
    return Path(capsys.readouterr().out.strip())


def _files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir())


def _systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, active: tuple[str, ...]) -> Path:
    """A `systemctl` on PATH for which the units `active` run, recording what it is asked; returns the record."""
    calls = tmp_path / "systemctl.calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runs = " ".join(active)
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        f'if [ "$1" = is-active ]; then for u in {runs}; do [ "$3" = "$u" ] && exit 0; done; exit 3; fi\n'
    )
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return calls


def _asked(calls: Path) -> list[str]:
    return (
        [line for line in calls.read_text().splitlines() if not line.startswith("is-active")] if calls.exists() else []
    )


def test_a_gateway_started_by_hand_refuses_a_restore_without_a_service_manager(
    box: tuple[Path, Path], by_hand: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, data_dir = box
    path = _backup(config, capsys)
    before = _files(data_dir)
    assert main(["backup", "restore", str(path), "--service-manager", "none", "-c", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"backup restore: a gateway runs on the data directory {data_dir}, got {data_dir / LOCK_FILE} held by "
        f"pid {by_hand.pid} (`{sys.executable} -c "
    )
    assert err.endswith("; nothing was stopped or changed: stop it first, or pass --service-manager systemd|supervisor")
    assert _files(data_dir) == before  # no .pre-restore-*: the gateway's buffer stays where it writes


def test_under_systemd_a_gateway_systemd_does_not_run_is_refused_before_anything_stops(
    box: tuple[Path, Path],
    by_hand: subprocess.Popen[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, data_dir = box
    path = _backup(config, capsys)
    calls = _systemctl(tmp_path, monkeypatch, active=("edgegw-web.service",))
    before = _files(data_dir)
    assert main(["backup", "restore", str(path), "--service-manager", "systemd", "-c", str(config)]) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "; systemd does not run it (started by hand?): nothing was stopped or changed: end that process and "
            "restore again"
        )
    )
    assert _asked(calls) == []
    assert _files(data_dir) == before


def test_under_systemd_a_gateway_still_running_after_the_stop_is_refused_and_the_services_start_again(
    box: tuple[Path, Path],
    by_hand: subprocess.Popen[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """edgegw.service runs, and so does a gateway a technician started by hand (on another config naming this
    data directory): the stop ends the one, not the other."""
    config, data_dir = box
    path = _backup(config, capsys)
    calls = _systemctl(tmp_path, monkeypatch, active=("edgegw-web.service", "edgegw.service"))
    before = _files(data_dir)
    assert main(["backup", "restore", str(path), "--service-manager", "systemd", "-c", str(config)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"backup restore: a gateway runs on the data directory {data_dir}, got ")
    assert err[0].endswith(
        "; systemd stopped edgegw-web.service edgegw.service and it still runs, so systemd does not run it "
        "(started by hand?): nothing restored: end that process and restore again"
    )
    assert err[1:] == ["backup restore: started edgegw.service edgegw-web.service again, on the files as they were"]
    assert _asked(calls) == ["stop edgegw-web.service edgegw.service", "start edgegw.service edgegw-web.service"]
    assert _files(data_dir) == before


def test_the_control_socket_the_config_names_is_the_one_asked(
    box: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A gateway of a release before the data directory's lock holds none: its socket answers, where the config
    puts it (`[gateway] control_socket`), not in the data directory."""
    config, data_dir = box
    run = Path(tempfile.mkdtemp(prefix="edgegw-run-"))  # tmp_path can be too long for a socket's path
    try:
        sock_path = run / "control.sock"
        config.write_text(config.read_text().replace("[gateway]\n", f'[gateway]\ncontrol_socket = "{sock_path}"\n'))
        path = _backup(config, capsys)
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listening.bind(str(sock_path))
        listening.listen(1)
        try:
            assert main(["backup", "restore", str(path), "--service-manager", "none", "-c", str(config)]) == 1
        finally:
            listening.close()
    finally:
        for p in run.iterdir():
            p.unlink()
        run.rmdir()
    assert capsys.readouterr().err.strip() == (
        f"backup restore: a gateway runs on the data directory {data_dir}: the gateway is running (its control "
        f"socket {sock_path} answers); nothing was stopped or changed: stop it first, or pass --service-manager "
        "systemd|supervisor"
    )
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".pre-restore-")]


def _held_by_someone(lock: Path) -> bool:
    """Looked at without making the file, as DataDirLock.take would."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_no_gateway_starts_while_the_files_are_swapped_and_one_starts_after(
    box: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, data_dir = box
    path = _backup(config, capsys)
    apply = _start(APPLY, lock_path(config))  # holds the restore in its swap, the services stopped
    codes: list[int] = []
    restore = threading.Thread(
        target=lambda: codes.append(
            main(["backup", "restore", str(path), "--service-manager", "none", "-c", str(config)])
        )
    )
    restore.start()
    try:
        deadline = time.monotonic() + 10
        while not _held_by_someone(data_dir / LOCK_FILE):
            assert time.monotonic() < deadline, "the restore never took the gateway's lock"
            time.sleep(0.02)
        with pytest.raises(DataDirInUse):  # `edgegw run` started now stops before it opens the buffer
            DataDirLock.take(data_dir)
    finally:
        apply.communicate()  # stdin closed: the apply ends, its lock with it
        restore.join()
    assert codes == [0]
    assert not (data_dir / LOCK_FILE).exists()  # there was none before the restore: it leaves none
    DataDirLock.take(data_dir).release()  # let go: the gateway starts again
