"""A Ctrl-C, a dropped ssh session or a `kill` during a restore loses no file and leaves no gateway stopped.

The swap recorded each rename only once it had returned: a KeyboardInterrupt landing as a rename
returned (CPython runs signal handlers right after the system call) left a move that undo did not know
of, and undo then removed the aside directory with the file in it (buffer.db, the readings not yet
delivered). And the CLI could be cut anywhere between the services' stop and their start: a SIGHUP
while `systemctl stop` ran ended the restore with the gateway stopped and its staging directory left.
Every restore here runs in a real process, and every signal is a real one sent to it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backup.test_restore_atomic import ROWS, STARTED, STOPPED, _asked, _backup, _next_day, _rows, _tree

REPO = Path(__file__).parents[2]

# archive.restore in a process of its own, SIGINT sent to itself at one rename of the swap: as the call starts
# (before the rename is made) or as it returns (the rename made); an audit hook sees the rename's arguments
_AT_A_RENAME = """
import os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from gateway.backup import archive
from tests.backup.audit_paths import renamed

backup, data_dir, config, target, end, when = sys.argv[1:]
index = 0 if end == "from" else 1
seen = []

def audit(event, args):
    if event == "os.rename" and not seen and renamed(args, index) == target:
        seen.append(args)
        if when == "before":
            os.kill(os.getpid(), signal.SIGINT)  # handled here, in the call: the rename is not made

def profile(frame, event, arg):
    if event == "c_return" and arg is os.rename and seen and when == "after":
        sys.setprofile(None)
        os.kill(os.getpid(), signal.SIGINT)  # handled as the call returns, as if it came during the rename

sys.addaudithook(audit)
sys.setprofile(profile)
archive.restore(Path(backup), data_dir=Path(data_dir), config_path=Path(config), gateway_id="fixture-gw",
                now=datetime(2026, 12, 4, tzinfo=UTC))
"""


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize(
    ("name", "end"),
    [
        ("buffer.db", "from"),  # the box's buffer moved aside
        ("web/audit.head", "to"),  # the backup's file put where the box has none
    ],
)
def test_a_sigint_at_a_rename_of_the_swap_puts_every_file_back(
    box: tuple[Path, Path], tmp_path: Path, name: str, end: str, when: str
) -> None:
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    _next_day(config, data_dir)
    if end == "to":
        (data_dir / name).unlink()
    before, config_before = _tree(data_dir), config.read_text()
    child = subprocess.run(
        [sys.executable, "-c", _AT_A_RENAME, str(path), str(data_dir), str(config), str(data_dir / name), end, when],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == -signal.SIGINT, child.stderr
    assert child.stderr.rstrip().endswith("KeyboardInterrupt")
    assert _tree(data_dir) == before  # the same files, inodes and modes, nothing hidden left
    assert config.read_text() == config_before


def _fake_systemctl(tmp_path: Path, on_stop: str) -> tuple[Path, dict[str, str]]:
    """A `systemctl` for which every unit runs, that records what it is asked and runs `on_stop` once asked to
    stop; returns its record and the environment that puts it first on PATH."""
    calls = tmp_path / "systemctl.calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nif [ "$1" = stop ]; then {on_stop}; fi\n')
    (bin_dir / "systemctl").chmod(0o755)
    return calls, dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_while_the_services_stop_waits_until_they_run_again_on_the_restored_files(
    box: tuple[Path, Path], tmp_path: Path, sig: signal.Signals
) -> None:
    """The technician's Ctrl-C, the ssh session dropping (SIGHUP) or a `kill`, while `systemctl stop` runs:
    the restore goes to its end, the services start, and only then does the signal end the restore."""
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    backed_up = config.read_text()
    _next_day(config, data_dir)
    calls, env = _fake_systemctl(tmp_path, f"kill -{sig.name.removeprefix('SIG')} $PPID")
    argv = ["backup", "restore", str(path), "-c", str(config), "--service-manager", "systemd"]
    cli = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    # Ctrl-C's is a KeyboardInterrupt edgegw's main says in one line, exit 130 (128 + SIGINT) as a shell reports it
    assert cli.returncode == (130 if sig is signal.SIGINT else -sig), cli.stderr
    assert _asked(calls) == [STOPPED, STARTED]
    assert cli.stdout.startswith(f"restored {path}; the files it replaced are in {data_dir}/.pre-restore-")
    assert (
        f"backup restore: {sig.name} came during the restore, held until it ended; acted on now"
        in cli.stderr.splitlines()
    )
    assert _rows(data_dir) == ROWS
    assert config.read_text() == backed_up
    assert not [p for p in data_dir.iterdir() if p.name.startswith((".restore-staging-", ".verify-"))]


def test_the_signals_are_held_no_longer_than_the_restore(box: tuple[Path, Path], tmp_path: Path) -> None:
    """After the restore the CLI's process takes signals again as before: none stays blocked."""
    config, data_dir = box
    path = _backup(config, data_dir, tmp_path / "share")
    probe = (
        "import signal, sys\n"
        "from gateway.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('blocked after:', sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), file=sys.stderr)\n"
        "raise SystemExit(code)\n"
    )
    calls, env = _fake_systemctl(tmp_path, ":")
    cli = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "backup",
            "restore",
            str(path),
            "-c",
            str(config),
            "--service-manager",
            "systemd",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stderr.splitlines()[-1] == "blocked after: []"
    assert _asked(calls) == [STOPPED, STARTED]
