"""When tonight's backup runs, and running it: create, rotate to N generations, copy off the box, record the outcome.

The time is drawn inside the window from the gateway id and the date: the same box backs up at the
same minute if restarted, and a fleet's boxes spread over the window instead of all writing to the
file server at 02:00. `edgegw backup scheduler` runs it: with `--once` from the systemd timer
(edgegw-backup.timer starts it at local midnight; it sleeps until the drawn time), without it as a
long-running supervisor program on boxes without systemd.

A backup run, from the snapshot to the rotation, holds the backup lock (archive.box_locked, an flock
on the data directory), as a restore does: the nightly one that finds a restore running waits for it
(NIGHTLY_LOCK_WAIT_S), then skips the night with a warning, rather than keep a generation that mixes
files from before and after the restore.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.backup import archive
from gateway.backup.config import BackupConfig, parse_hhmm
from gateway.cliopts import os_error_words

log = logging.getLogger("gateway.backup")

STATUS_FILE = "backup-status.json"
# A restore holds the backup lock while it checks its file and while the services stop and start (the gateway's
# start checks the buffer: minutes for millions of rows): the nightly backup waits this long, then skips the night
NIGHTLY_LOCK_WAIT_S = 900.0


def drawn_time(config: BackupConfig, gateway_id: str, day: date) -> datetime:
    """The night's backup time: a minute inside the window, the same for a box and a date every time."""
    start, end = parse_hhmm(config.window_start), parse_hhmm(config.window_end)
    digest = hashlib.sha256(f"{gateway_id}/{day.isoformat()}".encode()).digest()
    minute = start + int.from_bytes(digest[:4], "big") % (end - start)
    midnight = datetime(day.year, day.month, day.day, tzinfo=config.zone)
    return midnight + timedelta(minutes=minute)


def next_run(config: BackupConfig, gateway_id: str, now: datetime) -> datetime:
    """The first drawn time after `now` (tonight's, or tomorrow night's once tonight's has passed)."""
    today = now.astimezone(config.zone).date()
    for day in (today, today + timedelta(days=1)):
        at = drawn_time(config, gateway_id, day)
        if at > now:
            return at
    return drawn_time(config, gateway_id, today + timedelta(days=2))  # unreachable: a window is within a day


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """What a backup needs from the gateway's configuration."""

    gateway_id: str
    data_dir: Path
    config_path: Path
    config: BackupConfig
    # `[gateway] control_socket` (GatewaySection.control_path()): where a restore asks whether a gateway runs
    control_socket: Path | None = None

    @property
    def out_dir(self) -> Path:
        return self.config.backup_dir(self.data_dir)

    @property
    def control_path(self) -> Path:
        return self.control_socket if self.control_socket is not None else self.data_dir / "control.sock"


def read_status(data_dir: Path) -> dict[str, Any]:
    path = data_dir / STATUS_FILE
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    except OSError as exc:  # root's after a root run, or something else in its place: the backup goes on
        log.warning("backup: the last outcomes in %s cannot be read, got %s", path, exc.strerror or exc)
        return {}
    return doc


def status_line(data_dir: Path) -> str | None:
    """`edgegw status`'s backup line: a restore that did not finish (no backup is taken until it is put right),
    else the last outcome, a failure first (None before any backup)."""
    if marks := archive.unfinished_restores(data_dir):
        return (
            f"backup: REFUSED until a restore that did not finish is put right: {marks[0]} says where each part of "
            f"the data directory is; then delete {marks[0].parent}"
        )
    doc = read_status(data_dir)
    if doc.get("ok") is False and "last_failure" in doc:
        return f"backup: FAILED at {doc['last_failure']['at']}: {doc['last_failure']['error']}"
    if "last_success" in doc:
        return f"backup: ok at {doc['last_success']['at']} ({doc['last_success']['file']})"
    return None


def _write_status(data_dir: Path, doc: dict[str, Any]) -> None:
    """The outcome recorded for `edgegw status` and the alarms; never raised: a status that cannot be written
    must not turn a good backup into a failed night, nor hide a failure's own error behind its own."""
    path = data_dir / STATUS_FILE
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.error(
            "backup: outcome not recorded in %s, got %s; edgegw status and the backup alarm still show the run "
            "before: give the data directory back to the gateway's user (a root run may have left it root's)",
            path,
            exc.strerror or type(exc).__name__,
        )


def run_backup(job: Job, now: datetime, *, lock_wait_s: float = archive.BOX_LOCK_WAIT_S) -> Path:
    """Take one backup now, rotate, copy it off the box if configured; the outcome goes to the status file.

    All of it under the backup lock (archive.box_locked): archive.Busy after `lock_wait_s` if a restore
    or another backup holds it, with nothing taken and nothing recorded. A failure, whatever raised it, is
    logged at ERROR, recorded as `last_failure` (what `edgegw status` and the alarms read), and raised as
    BackupError.
    """
    with archive.box_locked(
        job.data_dir, within_s=lock_wait_s, where="backup", fix="no backup taken: let it end and take the backup again"
    ):
        return _run_backup_locked(job, now)


def _run_backup_locked(job: Job, now: datetime) -> Path:
    status = read_status(job.data_dir)
    try:
        # held from the backup's making to its copy: every step reads and rotates in that directory (held_backup.py)
        with archive.create_held(
            data_dir=job.data_dir,
            config_path=job.config_path,
            gateway_id=job.gateway_id,
            out_dir=job.out_dir,
            now=now,
            include_secret_key=job.config.include_secret_key,
        ) as made:
            scratch = archive.scratch_room(job.data_dir)
            not_copied = "" if job.config.copy_to is None else f"; not copied to {job.config.copy_to}"
            _verify_then_rotate(made, job.config.generations, job.gateway_id, scratch, not_copied)
            copy = None
            if job.config.copy_to is not None:
                archive.require_mounted(job.config.copy_to, job.data_dir)
                with archive.copy_held(made, job.config.copy_to) as copied:
                    _verify_then_rotate(copied, job.config.generations, job.gateway_id, scratch, "")
                copy = copied.path
        path, size = made.path, made.size
    except Exception as exc:  # a bug too is a failed night: recorded and alarmed, the scheduler goes on
        error = _as_backup_error(exc, job)
        log.error("backup failed: %s", error, exc_info=not isinstance(exc, (archive.BackupError, OSError)))
        status["last_failure"] = {"at": now.astimezone(UTC).isoformat(), "error": str(error)}
        status["ok"] = False
        _write_status(job.data_dir, status)
        raise error from exc
    status["last_success"] = {
        "at": now.astimezone(UTC).isoformat(),
        "file": str(path),
        "size": size,
        "copy": None if copy is None else str(copy),
    }
    status["ok"] = True
    _write_status(job.data_dir, status)
    return path


def _as_backup_error(exc: Exception, job: Job) -> archive.BackupError:
    if isinstance(exc, archive.BackupError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        # edgegw-backup.service's ProtectSystem=strict: only its StateDirectory and ReadWritePaths are writable
        where = Path(exc.filename) if exc.filename else job.out_dir
        targets = [d for d in (job.config.copy_to, job.out_dir) if d is not None]
        directory = next((d for d in targets if where == d or d in where.parents), where.parent)
        return archive.BackupError(
            f"backup: cannot write {where}: read-only here: the backup service may write only under "
            f"/srv/edgegw-backups and the data directory; add ReadWritePaths={directory} with "
            "systemctl edit edgegw-backup.service"
        )
    if isinstance(exc, PermissionError):  # run as a user the data directory is not: whom to run it as
        return archive.BackupError(f"backup: {cannot_write(exc, job.data_dir)}")
    if isinstance(exc, OSError):
        return archive.BackupError(f"backup: {exc}")
    return archive.BackupError(f"backup: failed unexpectedly, got {type(exc).__name__}: {exc}; see the journal")


def cannot_write(exc: OSError, data_dir: Path) -> str:
    """A refusal of the data directory in words, with whom to run as: the first refusal, not the last (writing the
    outcome into the same directory fails after it)."""
    while isinstance(exc.__context__, OSError) and exc.__context__.errno == exc.errno:
        exc = exc.__context__
    where = exc.filename if exc.filename is not None else data_dir
    try:
        uid = data_dir.stat().st_uid
        owner = pwd.getpwuid(uid).pw_name
    except (OSError, KeyError):
        return f"cannot use {where}, got {os_error_words(exc)}; run it as the gateway's user"
    how = "with sudo" if uid == 0 else f"as {owner} (sudo -u {owner} edgegw backup …)"
    return f"cannot use {where}, got {os_error_words(exc)}; {data_dir} belongs to {owner}: run it {how}"


def _verify_then_rotate(
    made: archive.HeldBackup, generations: int, gateway_id: str, scratch: Path | None, also: str
) -> None:
    """`made` verified, then the directory its run holds rotated: a bad new file never pushes out a good old one.

    A verify refused only for room (the data disk that holds the backups, short of the backup's size plus the
    margin) rotates all the same, then verifies in the room that freed: otherwise each night adds one more
    unrotated generation to that disk, which fills the sooner, until the gateway itself has none left. Still
    short, BackupError says the file was written unchecked and the old generations rotated out (then `also`).
    """
    path, out_dir = made.path, made.path.parent
    try:
        archive.verify(made, data_dir=scratch)
    except archive.NoRoom as exc:
        rotated = archive.rotate(out_dir, generations, gateway_id=gateway_id, keep=made, dir_fd=made.dir_fd)
        short = exc
        if rotated:
            try:
                archive.verify(made, data_dir=scratch)
            except archive.NoRoom as again:
                short = again
            else:
                log.warning("backup: %s checked once older backups were rotated out, for want of room before", path)
                return
        raise archive.BackupError(
            f"{short}; {path.name} was written but not checked (no room to check it, which says nothing against the "
            f"file): {len(rotated)} older backup(s) rotated out of {out_dir} all the same, the newest {generations} "
            f"kept{also}"
        ) from short
    archive.rotate(out_dir, generations, gateway_id=gateway_id, keep=made, dir_fd=made.dir_fd)


def scheduler(
    job: Job,
    *,
    once: bool,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    lock_wait_s: float = NIGHTLY_LOCK_WAIT_S,
) -> int:
    """Sleep until each drawn time and take the backup; with `once`, only tonight's. Returns how many failed
    (a night skipped for a restore under way is no failure: nothing is wrong with the box)."""
    failures = 0
    while True:
        at = next_run(job.config, job.gateway_id, clock())
        log.info("next backup at %s", at.isoformat())
        while (wait := (at - clock()).total_seconds()) > 0:
            sleep(min(wait, 300.0))  # wakes now and then: a suspended box or a moved clock is noticed
        try:
            run_backup(job, clock(), lock_wait_s=lock_wait_s)
        except archive.Busy as busy:
            log.warning(
                "backup: tonight's backup skipped: the backup lock on %s is held by %s, got no lock within %g s; a "
                "backup taken beside a restore would mix files from before and after it: the next night's runs as usual",
                busy.data_dir,
                busy.holder,
                busy.within_s,
            )
        except archive.BackupError:
            failures += 1  # logged and recorded; the next night tries again
        if once:
            return failures
