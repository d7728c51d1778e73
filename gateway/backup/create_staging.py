"""The directory `create` copies the stores into before it writes the tar, and the sweep of those killed creates left.

A create makes `.staging-<gateway id>-<random>` beside the backups (the disk the backup must fit on anyway) and
holds an flock on its `CREATE_LOCK` file from before the first copy until the directory is gone; the kernel lets
go of it however the create ends. The next create of the same gateway id (`backup now`, the nightly run) removes
every one of its own whose lock it gets: a killed create's (kill -9, a power cut), a full copy of the box's data
that nothing else would ever delete. One whose lock is held belongs to a create that runs, however long it takes.
The lock is a file, opened for writing, rather than the directory: an NFS share takes flocks as its own locks only
on such a file, so another box's create holds it on the server too. The gateway id in the name keeps the sweep to
this box's directories all the same, where a share's locks stay on each client (NFS `nolock`, `local_lock=`).

Where the lock cannot be taken at all (a file system without locks), and for one without its lock file (a create
killed before it made it, or one that made its directory a moment ago), the age decides: `stale_after_s` since
it was last written. A release before the lock named the directory `.staging-<random>`: one of those goes only
once that old and if the config copied first into it names this gateway id, since its name says nothing of whose
it is and another box may share the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import stat
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("gateway.backup")

PREFIX = ".staging-"
CREATE_LOCK = "CREATE-UNDER-WAY"
_SUFFIX = re.compile(r"[0-9a-f]{8}")  # secrets.token_hex(4): no "-", so no gateway id's tail looks like it
_LEGACY = re.compile(r"[a-z0-9_]{8}")  # tempfile.mkdtemp's name, which the releases before the lock used
_LEGACY_CONFIG = "config"
# a gateway config is a few KiB; more is no config a create copied, and is not read
_CONFIG_MAX_BYTES = 1 << 20
_ATTEMPTS = 100


def staging_name(gateway_id: str, token: str) -> str:
    """The name of a create's staging directory; `token` is 8 hex digits."""
    return f"{PREFIX}{gateway_id}-{token}"


def made_by(name: str, gateway_id: str) -> bool:
    """Whether `name` is that of a staging directory a create of `gateway_id` made (`staging_name`)."""
    head = f"{PREFIX}{gateway_id}-"
    return name.startswith(head) and _SUFFIX.fullmatch(name[len(head) :]) is not None


@contextlib.contextmanager
def held(out_dir: Path, gateway_id: str) -> Iterator[Path]:
    """A new staging directory in `out_dir` (0700), its lock held until it is removed on leaving."""
    staging, fd = _made(out_dir, gateway_id)
    try:
        yield staging
    finally:
        try:
            shutil.rmtree(staging)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning(
                "backup: cannot remove the staging directory %s, got %s; the next backup removes it",
                staging,
                exc.strerror or exc,
            )
        if fd is not None:
            os.close(fd)  # after the removal: until then no sweep takes the directory for a killed create's


def _made(out_dir: Path, gateway_id: str) -> tuple[Path, int | None]:
    for _ in range(_ATTEMPTS):
        staging = out_dir / staging_name(gateway_id, secrets.token_hex(4))
        try:
            os.mkdir(staging, 0o700)
        except FileExistsError:
            continue
        try:
            fd = os.open(staging / CREATE_LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(staging)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a sweep opened it between our open and our lock: it removes the directory
            continue
        except OSError:  # a file system without locks: the sweep there goes by age
            os.close(fd)
            return staging, None
        if os.fstat(fd).st_nlink == 0:
            os.close(fd)  # a sweep held it first and removed it meanwhile
            continue
        return staging, fd
    raise OSError(f"cannot make a staging directory in {out_dir}: {_ATTEMPTS} tries were each swept at once")


def remove_dead(out_dir: Path, gateway_id: str, *, stale_after_s: float) -> None:
    """`gateway_id`'s staging directories in `out_dir` that no create runs in removed, each logged with its size."""
    try:
        entries = [e for e in os.scandir(out_dir) if e.name.startswith(PREFIX)]
    except OSError:
        return  # not there yet: create makes it, or says why it cannot
    for entry in entries:
        legacy = _LEGACY.fullmatch(entry.name[len(PREFIX) :]) is not None
        if not (legacy or made_by(entry.name, gateway_id)):
            continue  # another box's, or no create's
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        old = time.time() - st.st_mtime >= stale_after_s
        if legacy:
            if old and _legacy_gateway_id(entry.path) == gateway_id:
                _remove(entry.path, st)
            continue
        try:
            fd: int | None = os.open(os.path.join(entry.path, CREATE_LOCK), os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            fd = None
        except OSError as exc:
            # not ours to open (a `sudo edgegw backup now`'s, root's): whether its create runs is not known here
            if old:
                log.warning(
                    "backup: cannot tell whether %s (last written %s) is a running backup's, got %s; if no backup "
                    "runs as root now, it was left by one that did not finish: as root: sudo rm -rf %s",
                    entry.path,
                    datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
                    exc.strerror or exc,
                    entry.path,
                )
            continue
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a create runs in it
                except OSError:  # no locks on this file system
                    if not old:
                        continue
            elif not old:
                continue
            _remove(entry.path, st)
        finally:
            if fd is not None:
                os.close(fd)  # after the removal: a create that opened the lock meanwhile sees it unlinked


def _legacy_gateway_id(directory: str) -> str | None:
    """The gateway id in the config an older create copied first into `directory`, or None if it is not there or
    names none. Nothing in it is trusted beyond that: the directory may be another box's on a share."""
    try:
        fd = os.open(os.path.join(directory, _LEGACY_CONFIG), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = f.read(_CONFIG_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > _CONFIG_MAX_BYTES:
        return None
    try:
        doc = tomllib.loads(data.decode("utf-8").removeprefix("\ufeff"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    gateway = doc.get("gateway")
    found = gateway.get("id") if isinstance(gateway, dict) else None
    return found if isinstance(found, str) else None


def _remove(path: str, st: os.stat_result) -> None:
    size = _size(path)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return  # another run removed it first
    except OSError as exc:
        log.warning(
            "backup: cannot remove %s (%d bytes), left by a backup that did not finish, got %s; delete it by hand",
            path,
            size,
            exc.strerror or exc,
        )
        return
    log.info(
        "backup: removed %s (%d bytes), left by a backup that did not finish (killed, or a power cut); last written %s",
        path,
        size,
        datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
    )


def _size(path: str) -> int:
    """The bytes the files under `path` take, as far as they can be read."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
