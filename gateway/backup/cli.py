"""`edgegw backup now|list|verify|restore FILE|scheduler`: the nightly backup by hand, its files, and getting a night back."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import cliopts
from gateway.backup import archive, schedule
from gateway.backup.gateway_lock import GatewayLock
from gateway.cliopts import add_config_option, os_error_words
from gateway.errors import ConfigError

__all__ = ["EXIT_FAILURE", "EXIT_INVALID", "EXIT_OK", "add_parser", "run"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
# What restore stops and starts again, per service manager (the web UI reads the stores too).
# stopped in this order (the kiosk and the web UI write web/audit.db, the gateway everything), started
# again in the reverse one, and only those that were running: the kiosk runs only where lockers are
SYSTEMD_UNITS = ("edgegw-kiosk.service", "edgegw-web.service", "edgegw.service")
SUPERVISOR_PROGRAMS = ("edgegw-kiosk", "edgegw-web", "edgegw")
# the gateway's own unit (program), per service manager: while it runs, the gateway's lock on the data directory is its
_GATEWAY = {"systemd": SYSTEMD_UNITS[-1], "supervisor": SUPERVISOR_PROGRAMS[-1]}
# What a technician's Ctrl-C, a dropped ssh session and a `kill` send: held from the services' stop to their
# start (`_HeldSignals`)
HELD_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser("backup", help="take, list, verify and restore backups")
    sub = p.add_subparsers(dest="backup_command", required=True, metavar="{now,list,verify,restore,scheduler}")
    sub.add_parser("now", help="take a backup now (rotated and copied like the nightly one)")
    sub.add_parser("list", help="the backup files kept, oldest first, and the last outcome")
    v = sub.add_parser("verify", help="check a backup file completely (checksums, sqlite snapshots)")
    v.add_argument("file", type=Path)
    r = sub.add_parser("restore", help="stop the gateway, put a backup's files in place, start it again")
    r.add_argument("file", type=Path)
    r.add_argument(
        "--force",
        action="store_true",
        help="restore a backup taken by another gateway id, keeping this box's gateway.id "
        "(a config naming another data_dir stays refused)",
    )
    r.add_argument(
        "--take-id",
        action="store_true",
        help="restore a backup taken by another gateway id and take that id too (this box replaces that one)",
    )
    r.add_argument(
        "--service-manager",
        choices=("auto", "systemd", "supervisor", "none"),
        default="auto",
        help="how to stop and start the gateway (none: it must be stopped already)",
    )
    s = sub.add_parser("scheduler", help="sleep until the drawn time in the window and back up (the timer's job)")
    s.add_argument("--once", action="store_true", help="only tonight's backup, then exit (systemd timer)")
    for c in sub.choices.values():
        add_config_option(c)
    return p


def _job(config_path: Path) -> schedule.Job:
    from gateway.config import load_config

    cfg = load_config(config_path)
    return schedule.Job(
        gateway_id=cfg.gateway.id,
        data_dir=Path(cfg.gateway.data_dir),
        config_path=config_path,
        config=cfg.backup,
        control_socket=cfg.gateway.control_path(),
    )


def run(
    args: argparse.Namespace,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    lock_wait_s: float = archive.BOX_LOCK_WAIT_S,
) -> int:
    """One `edgegw backup` subcommand; `lock_wait_s` is how long `now` and `restore` wait for the backup lock."""
    config_path = cliopts.config_path(args.config)
    try:
        job = _job(config_path)
    except ConfigError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.backup_command in ("verify", "restore") and (missing := _not_a_file(args.file)):
        print(f"backup {args.backup_command}: {args.file}: {missing}", file=sys.stderr)
        return EXIT_INVALID
    try:
        match args.backup_command:
            case "now":
                print(schedule.run_backup(job, now(), lock_wait_s=lock_wait_s))
            case "list":
                _list(job)
            case "verify":
                m = archive.verify(args.file, data_dir=archive.scratch_room(job.data_dir))
                print(
                    f"{args.file}: ok, gateway {m.gateway_id}, edgegw {m.edgegw_version}, "
                    f"taken {m.created_at.isoformat()}, {len(m.members)} files"
                )
            case "restore":
                return _restore(
                    job,
                    args.file,
                    force=args.force,
                    take_id=args.take_id,
                    manager=args.service_manager,
                    now=now(),
                    lock_wait_s=lock_wait_s,
                )
            case "scheduler":
                if not job.config.enabled:
                    print("backup: [backup] enabled = false; nothing to schedule")
                    return EXIT_OK
                return EXIT_FAILURE if schedule.scheduler(job, once=args.once, clock=now) else EXIT_OK
    except archive.BackupError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        raise  # the reader went away (`| head`): gateway.cli.main ends quietly
    except OSError as exc:  # a data directory this user may not write (its status file, after a failure too)
        print(f"backup {args.backup_command}: {schedule.cannot_write(exc, job.data_dir)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _not_a_file(path: Path) -> str | None:
    """Why `path` cannot be a backup file before it is opened: a typo was said to be a damaged backup."""
    try:
        if path.is_file():
            return None
        return (
            "not a file, got a directory" if path.is_dir() else "no such file; `edgegw backup list` shows the kept ones"
        )
    except OSError as exc:
        return os_error_words(exc)


def _list(job: schedule.Job) -> None:
    for path, size in archive.backup_sizes(job.out_dir):
        print(f"{path}  {size} bytes")
    status = schedule.read_status(job.data_dir)
    if "last_success" in status:
        print(f"last success: {status['last_success']['at']}")
    if "last_failure" in status:
        print(f"last failure: {status['last_failure']['at']}: {status['last_failure']['error']}")


def _manager(choice: str) -> str:
    if choice != "auto":
        return choice
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        return "systemd"
    conf = Path("/etc/supervisor/conf.d/edgegw.conf")
    if shutil.which("supervisorctl") and (os.environ.get("SUPERVISOR_ENABLED") or conf.exists()):
        return "supervisor"
    return "none"


def _running_services(manager: str) -> list[str]:
    """The units (programs) of SYSTEMD_UNITS (SUPERVISOR_PROGRAMS) that run now, in that order."""
    if manager == "systemd":
        return [
            u
            for u in SYSTEMD_UNITS
            if subprocess.run(["systemctl", "is-active", "--quiet", u], check=False).returncode == 0
        ]
    out = subprocess.run(["supervisorctl", "status", *SUPERVISOR_PROGRAMS], check=False, capture_output=True, text=True)
    running = {line.split()[0] for line in out.stdout.splitlines() if "RUNNING" in line.split()[1:2]}
    return [p for p in SUPERVISOR_PROGRAMS if p in running]


def _control(manager: str, verb: str, names: Sequence[str]) -> None:
    if not names:
        return
    tool = "systemctl" if manager == "systemd" else "supervisorctl"
    cmd = [tool, verb, *(names if verb == "stop" else reversed(names))]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0 and verb == "stop":
        raise archive.BackupError(
            f"backup restore: cannot stop the gateway, got `{' '.join(cmd)}` exit {done.returncode}: "
            f"{done.stderr.strip()}; stop it by hand and run restore with --service-manager none"
        )


def _lock_before_stop(lock: GatewayLock, how: str, running: Sequence[str]) -> bool:
    """The gateway's lock taken now, unless the manager runs the gateway (which holds it until stopped): one no
    manager runs (started by hand) is refused before anything stops. Whether it was taken."""
    lock.make_room()
    if how == "none":
        lock.take("nothing was stopped or changed: stop it first, or pass --service-manager systemd|supervisor")
    elif _GATEWAY[how] not in running:
        lock.take(
            f"{how} does not run it (started by hand?): nothing was stopped or changed: end that process and "
            "restore again"
        )
    else:
        return False
    return True


@contextlib.contextmanager
def _locked(lock: GatewayLock, taken: bool, how: str, stopped: Sequence[str]) -> Iterator[None]:
    """The gateway's lock held for the `with` (taken now that `stopped` are, if not yet), let go on leaving: before
    the services start again, which would find it held."""
    try:
        if not taken:
            lock.take(
                f"{how} stopped {' '.join(stopped)} and it still runs, so {how} does not run it (started by hand?): "
                "nothing restored: end that process and restore again"
            )
        yield
    finally:
        lock.release()


class _HeldSignals:
    """HELD_SIGNALS kept pending from `hold` (the services' stop) to the end of the `with` (their start, the staging
    directory removed): a restore cut there leaves the gateway stopped, and its swap half taken back if the signal
    comes again while it is being taken back. Let go, they act as they would have (SIGHUP and SIGTERM end the
    process, SIGINT raises KeyboardInterrupt). systemctl and supervisorctl inherit the mask, as they should: their
    stop and start run to the end; the services they start are the manager's children, not ours, and do not."""

    def __init__(self) -> None:
        self._before: set[int | signal.Signals] | None = None

    def hold(self) -> None:
        if self._before is None and threading.current_thread() is threading.main_thread():
            self._before = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)

    def __enter__(self) -> _HeldSignals:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._before is None:
            return
        came = sorted(signal.sigpending() & set(HELD_SIGNALS))
        if came:
            with contextlib.suppress(OSError):  # a terminal gone with its ssh session
                names = ", ".join(signal.Signals(s).name for s in came)
                print(
                    f"backup restore: {names} came during the restore, held until it ended; acted on now",
                    file=sys.stderr,
                )
        before, self._before = self._before, None
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _restore(
    job: schedule.Job, file: Path, *, force: bool, take_id: bool, manager: str, now: datetime, lock_wait_s: float
) -> int:
    # the backup lock first, until the services run again: a backup taken meanwhile would keep files from before
    # and after the swap, and its rotation could delete the file being checked (then staged again, and refused,
    # with the services stopped). Then checked into the data directory before stopping anything: a bad file,
    # another box's, a config that fails or names another data directory, a disk without room cost no downtime,
    # and nothing is extracted again while the services are down
    with (
        _HeldSignals() as held,
        archive.box_locked(
            job.data_dir,
            within_s=lock_wait_s,
            where="backup restore",
            fix="nothing was stopped or changed: let it end and restore again",
        ),
        archive.stage(
            file,
            data_dir=job.data_dir,
            config_path=job.config_path,
            gateway_id=job.gateway_id,
            force=force,
            take_id=take_id,
        ) as staged,
    ):
        how = _manager(manager)
        running = _running_services(how) if how != "none" else []
        # held from here (or from the stop) until the files are in place (gateway_lock.py)
        lock = GatewayLock(job.data_dir, job.control_path)
        try:
            taken = _lock_before_stop(lock, how, running)
            held.hold()
            _control(how, "stop", running)
        except BaseException:
            lock.release()
            raise
        try:
            with _locked(lock, taken, how, running):
                aside = archive.install(staged, now=now, exclude=job.out_dir)
        except archive.RestoreIncomplete as exc:
            # started on a part-restored data directory, the gateway would take it for the truth
            print(str(exc), file=sys.stderr)
            if running:
                print(f"backup restore: {' '.join(running)} left stopped", file=sys.stderr)
            return EXIT_FAILURE
        except archive.BackupError as exc:
            _control(how, "start", running)
            print(str(exc), file=sys.stderr)
            if running:
                print(
                    f"backup restore: started {' '.join(reversed(running))} again, on the files as they were",
                    file=sys.stderr,
                )
            return EXIT_FAILURE
        except BaseException:
            _control(how, "start", running)  # every file was put back before this came up
            raise
        _control(how, "start", running)
        print(f"restored {file}; the files it replaced are in {aside}; {staged.identity_note()}")
    return EXIT_OK
