"""One backup file: make it (sqlite stores through SQLite's online backup API), verify it, rotate, copy, restore.

A backup is a gzip'd tar named `edgegw-<gateway id>-<UTC stamp>.tar.gz` holding `MANIFEST.json`
(gateway id, edgegw version, time, each member's size, SHA-256 and schema version), the config file
under `config/` and the data directory under `data/`: every sqlite store as a consistent snapshot,
the secret store still encrypted (its key only when `include_secret_key`), the audit log's head.
Key material kept in files of its own stays on the box (`KEPT_ON_BOX`): a backup, and every copy of
it on the share, must not open this box's lockers or impersonate its web UI; a restore leaves those
files in place. It is written as `.part`, fsync'd and renamed, so a file with the final name is whole;
one that fails (a full disk, a full share) removes its `.part`, and a killed run's is removed by the
next run of the same gateway id (of any id, in a backup directory that is the box's own: `_boxs_own`), which tells
it from a running run's by its lock (part_file.py): nothing else would ever delete it. The stores'
copies are made first in a staging directory beside it, held by its create: one a killed create left is
removed by the next create of the same gateway id (create_staging.py).
Every file it makes there goes through the directory held open, never by a path, and that directory is reached
through no link the service user may have put on the way: run as root, in the service user's directory, a link that
user planted is never written or chowned through (held_dir.py). Root's snapshot reads each store confined to the data
directory (confined_snapshot.py). The run's verify, rotation and copy to the share then act in the directory the
backup was made in, held open from its making (`create_held`, `copy_held`): the backup read there by its name, no
link followed, and only while it is the file the run wrote (held_backup.py).
Every file and directory it makes is 0600/0700 whatever the umask (`sudo` from a root shell has 022).

A restore is all or nothing. `stage` verifies the backup, before the gateway is stopped, into a
hidden directory inside the data directory: the disk it must fit on anyway (/tmp is RAM on these
boxes), and the same file system, so that `install`, once the gateway is stopped, only renames: the
current files into `.pre-restore-<stamp>/`, the staged ones into their place, then the config last
(through a rename too, keeping its mode and owner). What takes room (directories, the config's copy)
comes before the first rename; any failure takes every rename back, so the data directory and the
config are as they were. Each rename is recorded before it is made, so that an exception landing as
one returns (KeyboardInterrupt) is taken back too; the CLI holds SIGINT, SIGHUP and SIGTERM meanwhile.
A store's sqlite side files go aside with it, a hot -journal too. `install` holds the lock every
config apply takes (gateway/control/ops_config.py), and stages again only if the backup file changed
since it was read. A power cut in the middle of the renames cannot be taken back: both sets of files
are then on the disk, and the staging directory's `UNDER_WAY_MARK`, written before the first rename,
says where each is. Staging and verify directories are flock'd while in use; those killed runs left
are removed once an hour old (`_remove_leftovers`), but for one a failed restore kept (`KEPT_MARK`)
or one cut short during its renames (`UNDER_WAY_MARK`). While either mark is found, no backup is
taken: it would keep a part-restored box as a good generation. A restore that puts every file in
place removes them. A backup run and a restore never overlap: each holds the backup lock, an flock
on the data directory (`box_locked`), throughout (`restore` too), and one that finds it held waits a
bounded time, then gives up (`Busy`).

The snapshot reads each store through its own read-only connection in one backup step: in WAL mode
a reader never blocks the writer, so readings keep being committed while the buffer is copied (a
stepped backup would restart each time the gateway commits, and never end at a high rate).

Verifying trusts nothing in the file (it comes back from a share, and root restores it). It reads
MANIFEST.json first (bounded) and checks it and its names (manifest.py), then where each data member
would land in the data directory (inside it, through no symbolic link, onto no directory), then that
the extraction directory has room for what the manifest declares. Only then does it stream the members, one at a time: a member the manifest does not list,
that is no regular file or whose tar size differs from the declared one is refused before a byte of
it is written, and no more than the declared size is ever read. The decompressed stream itself is
capped at what the manifest declares plus the tar headers' room, so neither a gzip bomb nor an
oversized tar header (tarfile reads pax and long-name headers into memory whole) gets past it. Every
member that is sqlite by its first bytes, its `.db` name or the manifest passes quick_check; before a
restore the backup's config passes check-config's rules too. Members are written under names of
verify's own, never under theirs.
The `.verify-*` and `.restore-staging-*` directories are made and worked through the data directory held open
(held_dir.py): under root a link the service user puts in place of one is never written, chmod'd or chown'd
through, and one whose name no longer leads to it fails the run before anything is stopped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from gateway import __version__
from gateway.audit.log import AUDIT_FILE
from gateway.audit.log import HEAD_FILE as AUDIT_HEAD
from gateway.backup import confined_snapshot, create_staging, held_backup, held_dir, held_tree, part_file
from gateway.backup.gateway_id import with_gateway_id
from gateway.backup.held_backup import HeldBackup as HeldBackup
from gateway.backup.manifest import (
    ALTERED,
    DATA_DIR,
    MANIFEST_MAX_BYTES,
    check_names,
    never_backed_up,
)
from gateway.backup.manifest import FORMAT as FORMAT
from gateway.backup.manifest import MANIFEST as MANIFEST
from gateway.backup.manifest import BackupError as BackupError
from gateway.backup.manifest import Manifest as Manifest
from gateway.backup.manifest import Member as Member
from gateway.config import GatewayConfig, parse_config
from gateway.configbase import read_toml
from gateway.errors import ConfigError
from gateway.secrets import KEY_FILE
from gateway.storage.files import fsync_dir, write_atomic

log = logging.getLogger("gateway.backup")

PREFIX = "edgegw-"
SUFFIX = ".tar.gz"
_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# `file_name`'s shape: the gateway id (which may hold "-" itself), then the UTC stamp
_NAME = re.compile(rf"{re.escape(PREFIX)}(?P<id>.+)-(?P<stamp>\d{{8}}T\d{{6}}Z){re.escape(SUFFIX)}")
_SQLITE_MAGIC = b"SQLite format 3\x00"
# a config apply holds the lock for a reload at most; one stuck longer is for someone to look at
CONFIG_LOCK_WAIT_S = 30.0
_LOCK_POLL_S = 0.05
# The backup lock, held by a backup run (nightly or `backup now`: take, verify, copy, rotate) and by a restore (from
# before it checks its file until the services run again): a backup beside a restore would keep files from before
# and after the swap, and its rotation could delete the file being restored. An flock on the data directory itself,
# the one place both reach (edgegw-backup.service's StateDirectory; root restores there): no lock file that root
# could leave unusable to the service user, none in the data directory for a backup or a restore to take along,
# and the kernel lets go of it however its holder ends (no pid file). A box's backup (snapshot, verify, the
# share's copy) takes well under a minute: one holding the lock longer is for someone to look at.
BOX_LOCK_WAIT_S = 120.0
# What verify reads and writes, beyond what the manifest declares: a member's tar headers (its own,
# and pax or long-name ones for a name of up to 4096 bytes), and the end of the archive with its
# padding. The extraction directory keeps FREE_MARGIN_BYTES free for the rest of the box.
_HEADER_ROOM = 16 << 10
_END_ROOM = 4 * tarfile.RECORDSIZE
FREE_MARGIN_BYTES = 16 << 20
_COPY_BLOCK = 1 << 20
_PATH_MAX_BYTES = 4095
# hidden names in the data directory: no backup holds them, nor moves them aside
STAGING_PREFIX = ".restore-staging-"
_ASIDE_PREFIX = ".pre-restore-"
_HELD_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
VERIFY_PREFIX = ".verify-"
_CHECK = "check it"
_RESTORE_FROM = "restore it from"
# A store and the files SQLite reads as its own at the next open: a hot -journal (a rollback-journal store such as
# config_versions.db, its writer killed mid-commit) or a -wal is played into whatever file then has the store's
# name, so each moves aside with its store, and without its store too when the backup brings one of that name.
_SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal")
# A .verify-* or .restore-staging-* directory no running verify or restore holds (each holds an flock on
# its own, which ends with its process however it ends) was left by a killed one. The age spares a
# directory made a moment ago whose run has not locked it yet.
STALE_AFTER_S = 3600.0
# In a .restore-staging-* directory a restore kept (RestoreIncomplete): the part of the backup not in place,
# which a technician needs; never removed by edgegw.
KEPT_MARK = "KEPT-BY-RESTORE"
# In a .restore-staging-* directory from its restore's first rename until every file is in place or back: one
# still there after its restore ended was cut short (a power cut, SIGKILL) and the data directory may be mixed.
# Like KEPT_MARK, it keeps the directory, and no backup is taken while either is found (`unfinished_restores`).
UNDER_WAY_MARK = "RESTORE-UNDER-WAY"
# Key files that never leave the box: not in a backup, and neither moved aside nor replaced by a
# restore of one (the box's own stay in force). (file-name pattern, why). Keys kept in the secret
# store (audit-hmac, the pseudonym ring, the Wi-Fi log's signing key and period keys, the mail
# queue's key, the lockers' address keys) travel in secrets.enc, encrypted under secrets.key.
# docs/backup.md says what each means for a restore onto a replacement box.
KEPT_ON_BOX: tuple[tuple[str, str], ...] = (
    (
        "*.key",
        "raw keys beside their store: locker-<adapter>.key hashes the lockers' pickup codes (with it and the "
        "store's hashes a 6-digit code falls to 10^6 tries); secrets.key opens the secret store "
        "(in the backup only with include_secret_key)",
    ),
    ("tls-key.pem", "the web UI's self-signed private key, unencrypted"),
    (
        "tls-cert.pem",
        "its certificate, which goes with its key: a backup's certificate restored beside another box's key "
        "would stop the web UI from starting",
    ),
)


def kept_on_box(name: str, *, include_secret_key: bool = False) -> bool:
    """Whether a file called `name` is key material that stays on the box (`KEPT_ON_BOX`)."""
    if name == KEY_FILE and include_secret_key:
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern, _ in KEPT_ON_BOX)


def data_files(data_dir: Path, *, exclude: Path | None = None, include_secret_key: bool = False) -> list[Path]:
    """The files of `data_dir` a backup holds (and a restore replaces), relative, sorted; no `KEPT_ON_BOX` file."""
    out: list[Path] = []
    skip_dir = exclude.resolve() if exclude is not None else None
    for root, dirs, files in os.walk(data_dir):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip_dir)
        for name in files:
            path = here / name
            if (
                never_backed_up(name)
                or kept_on_box(name, include_secret_key=include_secret_key)
                or not path.is_file()
                or path.is_symlink()
            ):
                continue
            out.append(path.relative_to(data_dir))
    return sorted(out)


def _snapshot(src: Path, dst: Path, data_fd: int, rel: Path) -> int:
    """A consistent copy of a live sqlite file (`rel` in the data directory held open as `data_fd`); returns its
    schema version.

    Under root, read by a process confined to the data directory and written into a staging directory held open
    (/proc/self/fd/<fd>/…) confined to that: SQLite opens the store, the copy and its -journal by name, following
    links (confined_snapshot.py). The service user's own run opens the store by name: it reads only what it may."""
    if os.geteuid() == 0 and confined_snapshot.held_fd(dst) is not None:
        return confined_snapshot.snapshot(src, dst, data_fd=data_fd, rel=rel)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30.0)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)  # one step: a read transaction, which in WAL mode blocks no writer
            target.execute("PRAGMA journal_mode = DELETE")  # self-contained: no -wal beside it on restore
            return int(target.execute("PRAGMA user_version").fetchone()[0])
        finally:
            target.close()
    finally:
        source.close()


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return _digest(f)


def _digest(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def file_name(gateway_id: str, now: datetime) -> str:
    return f"{PREFIX}{gateway_id}-{now.astimezone(UTC).strftime(_STAMP_FORMAT)}{SUFFIX}"


def _taken(name: str) -> tuple[str, datetime] | None:
    """(gateway id, UTC time) a backup file's name says, or None for a name `file_name` does not make."""
    if (match := _NAME.fullmatch(name)) is None:
        return None
    try:
        at = datetime.strptime(match["stamp"], _STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # 20261399T…: the shape, not a time
        return None
    return match["id"], at


def create(
    *,
    data_dir: Path,
    config_path: Path,
    gateway_id: str,
    out_dir: Path,
    now: datetime,
    include_secret_key: bool = False,
) -> Path:
    """Write one backup file into `out_dir` (mode 0600; the directories it makes 0700) and return its path.

    Refused (BackupError) while a restore into `data_dir` has not finished (`unfinished_restores`).
    """
    with create_held(
        data_dir=data_dir,
        config_path=config_path,
        gateway_id=gateway_id,
        out_dir=out_dir,
        now=now,
        include_secret_key=include_secret_key,
    ) as made:
        return made.path


@contextlib.contextmanager
def create_held(
    *,
    data_dir: Path,
    config_path: Path,
    gateway_id: str,
    out_dir: Path,
    now: datetime,
    include_secret_key: bool = False,
) -> Iterator[HeldBackup]:
    """`create`, the backup directory held open for the `with`: the run's verify, rotation and copy go through it
    (held_backup.py), whatever becomes of its name."""
    _refuse_unfinished_restore(data_dir)
    owner = data_dir.stat()
    out = held_dir.private_dirs(out_dir)  # every step below goes through it: the service user's (held_dir.py)
    try:
        final = out_dir / file_name(gateway_id, now)
        part = _part_of(final)
        own = _boxs_own(out.fd, data_dir)
        _remove_dead_parts(out.fd, out_dir, gateway_id, own=own)
        create_staging.remove_dead(out_dir, out.fd, gateway_id, stale_after_s=STALE_AFTER_S, own=own)
        with part_file.writing() as parts:  # the `.part` locked until renamed: no other run's sweep takes it
            try:
                members, written, size = _write(
                    out, parts, part, data_dir, config_path, gateway_id, owner, now, include_secret_key
                )
            except BaseException as exc:
                held_dir.discard(out.fd, part.name, part)  # a full disk stays full otherwise: no later run writes it
                if isinstance(exc, (OSError, sqlite3.Error)) and _is_full(exc):
                    raise BackupError(
                        f"backup: no room for {final.name} in {out_dir}, got {_why(exc)}; the partial file is removed, "
                        f"the backups kept there are as they were: free space in {out_dir} (`df -h {out_dir}`, `df -i` "
                        "for inodes), or point [backup] directory at a larger disk"
                    ) from None
                raise
            with held_dir.named(final):
                os.replace(part.name, final.name, src_dir_fd=out.fd, dst_dir_fd=out.fd)
        os.fsync(out.fd)
        out.give(owner, itself=True)
        log.info("backup written: %s (%d files, %d bytes)", final, len(members), size)
        yield HeldBackup(path=final, dir_fd=out.fd, written=written, size=size)
    finally:
        out.close()


def _write(
    out: held_dir.Dirs,
    parts: part_file.Writing,
    part: Path,
    data_dir: Path,
    config_path: Path,
    gateway_id: str,
    owner: os.stat_result,
    now: datetime,
    include_secret_key: bool,
) -> tuple[list[Member], tuple[int, int], int]:
    """The backup written into `part` in `out` (not yet renamed to its final name, but handed to `owner`); returns
    its members, the file it wrote (device, inode: the run's later steps read that one only, held_backup.py) and its
    size."""
    # Left root's under `sudo edgegw backup now`: handed to the service user while root still copies into it,
    # that user could plant a link for root to write through. A killed root run's is named, with the command
    # to remove it, by the nightly run that cannot. `staging` reaches it through its descriptor, whatever its name.
    with create_staging.held(out.path, out.fd, gateway_id) as staging:
        members: list[tuple[Member, Path]] = []
        with config_path.open("rb") as config:  # root's own, named by root
            _copy_into(config, staging / "config")
        members.append((_member(f"config/{config_path.name}", staging / "config", None), staging / "config"))
        files = _snapshot_order(data_files(data_dir, exclude=out.path, include_secret_key=include_secret_key))
        data_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for n, rel in enumerate(files):
                src = data_dir / rel
                copy = staging / f"{n}"
                try:
                    with open(_open_source(data_fd, data_dir, rel), "rb") as source:
                        if source.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC:
                            # SQLite opens it again by name: a link put there since it was checked is refused
                            try:
                                version: int | None = _snapshot(src, copy, data_fd, rel)
                            except (OSError, sqlite3.Error, BackupError):
                                _still_no_link(data_fd, data_dir, rel)  # the bigger news, if so
                                raise
                            _still_no_link(data_fd, data_dir, rel)
                        else:
                            source.seek(0)
                            _copy_into(source, copy)
                            version = None
                except FileNotFoundError:
                    continue  # removed while we walked (a temporary file): not part of the state
                except sqlite3.Error as exc:
                    if _is_full(exc):
                        raise
                    raise BackupError(
                        f"backup: cannot snapshot {src}, got {exc}; check the file with `edgegw buffer check`"
                    ) from exc
                members.append((_member(f"data/{rel.as_posix()}", copy, version), copy))
        finally:
            os.close(data_fd)
        manifest = Manifest(
            gateway_id=gateway_id,
            edgegw_version=__version__,
            created_at=now,
            members=tuple(m for m, _ in members),
        )
        # level 1: CPU is the data path's; the tar is closed (gzip trailer written) before the fsync
        with parts.new_file(out.fd, part.name, where=part, owner=owner) as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
                _add_bytes(tar, MANIFEST, manifest.to_json(), now)
                for member, copy in members:
                    tar.add(copy, arcname=member.name, recursive=False, filter=_plain)
            size = raw.tell()
            st = os.fstat(raw.fileno())
    return [m for m, _ in members], (st.st_dev, st.st_ino), size


def _copy_into(source: IO[bytes], copy: Path) -> None:
    """`source`'s bytes into `copy`, made anew (O_EXCL, O_NOFOLLOW, 0600) in the staging directory `copy.parent`."""
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, _COPY_BLOCK)


def _open_source(data_fd: int, data_dir: Path, rel: Path) -> int:
    """`rel` opened for reading through the data directory held open as `data_fd`, every step O_NOFOLLOW: run as
    root, a file the service user swapped for a link (to /etc/shadow) since the listing would put a root-only file
    into a backup that user owns. BackupError, naming what is there, for a link or anything but a regular file."""
    fd = data_fd
    parts = rel.parts
    try:
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            # O_NONBLOCK: a FIFO put there must not hang the backup before it is told from a file
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise _source_replaced(data_dir, data_dir.joinpath(*parts[: n + 1]), held_dir.kind(fd, part)) from None
            if fd != data_fd:
                os.close(fd)
            fd = child
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _source_replaced(data_dir, data_dir / rel, "no regular file")
    except BaseException:
        if fd != data_fd:
            os.close(fd)
        raise
    return fd


def _still_no_link(data_fd: int, data_dir: Path, rel: Path) -> None:
    """`_source_replaced` if `rel` is a link now: its snapshot may be of what the link names. One swapped in and out
    again is not seen, but the snapshot never reads beyond what the service user may read (`_snapshot`)."""
    what = held_dir.kind(data_fd, str(rel))
    if what.startswith("a symbolic link"):
        raise _source_replaced(data_dir, data_dir / rel, what)


def _source_replaced(data_dir: Path, path: Path, what: str) -> BackupError:
    return BackupError(
        f"backup: {path} was replaced while the backup ran, got {what}; no backup written, nothing read through "
        f"it: a process with the service user's rights changes the data directory {data_dir}: find it, put the "
        "file back and back up again"
    )


def _snapshot_order(files: list[Path]) -> list[Path]:
    """`files` with each audit log's head just before its database: written after each commit, the head copied
    first may lag the snapshot's entries (as after any crash) but never name one it lacks, which verify takes
    for entries deleted, in every restore of that backup."""
    return sorted(
        files, key=lambda rel: (rel.with_name(AUDIT_FILE) if rel.name == AUDIT_HEAD else rel, rel.name != AUDIT_HEAD)
    )


def _part_of(final: Path) -> Path:
    return final.with_name("." + final.name + ".part")


def _is_full(exc: OSError | sqlite3.Error) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _why(exc: OSError | sqlite3.Error) -> str:
    return (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)


def _boxs_own(dir_fd: int, data_dir: Path) -> bool:
    """Whether the directory held open as `dir_fd` is inside `data_dir` and on its disk: the box's own, where no
    other box writes, so that what a killed run left there under an earlier gateway id is this box's too."""
    try:
        here, data = os.fstat(dir_fd), os.stat(data_dir)
        real = Path(held_dir.where_now(dir_fd))
    except OSError:
        return False
    return here.st_dev == data.st_dev and real.is_relative_to(data_dir.resolve())


def _remove_dead_parts(dir_fd: int, directory: Path, gateway_id: str, *, own: bool = False) -> None:
    """This gateway's `.part` files in `directory` (held open as `dir_fd`) that no run writes removed (part_file.py);
    every gateway id's in a directory that is the box's `own` (`_boxs_own`). Another box's on a share stays."""
    try:
        names = [e.name for e in os.scandir(dir_fd) if e.name.startswith("." + PREFIX) and e.name.endswith(".part")]
    except OSError:
        return
    ours = [
        name
        for name in names
        if (taken := _taken(name[1 : -len(".part")])) is not None and (own or taken[0] == gateway_id)
    ]
    part_file.remove_dead(dir_fd, directory, ours, stale_after_s=STALE_AFTER_S)


def _member(name: str, path: Path, version: int | None) -> Member:
    return Member(
        name=name, size=path.stat().st_size, sha256=_sha256(path), sqlite=version is not None, schema_version=version
    )


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o600
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, now: datetime) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(now.timestamp())
    tar.addfile(info, io.BytesIO(data))


def give_to(owner: os.stat_result, paths: list[Path]) -> None:
    """Root made `paths` for the service user (`sudo edgegw backup now`): the nightly run must rotate them.

    lchown: a link put in place of one of them, in a directory the service user may write, keeps its target root's
    (a backup's own files are handed over on their descriptors instead: held_dir.py)."""
    if os.geteuid() != 0:
        return
    for path in paths:
        try:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
        except PermissionError as exc:  # a share that maps root (NFS root_squash, SMB): its owner is the server's
            log.warning(
                "backup: cannot hand %s to uid %d, got %s; the nightly run may not rotate it", path, owner.st_uid, exc
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Unpacked:
    manifest: Manifest
    files: dict[str, Path]  # member name -> its checked copy, under a name of verify's own
    config: GatewayConfig | None  # the backup's config, parsed: only when verified for a restore
    identity: tuple[int, ...]  # the backup file's, as it was read (`_identity`)


class _Capped(io.RawIOBase):
    """The decompressed tar stream, handing out at most `limit` bytes; BackupError when asked for more.

    `limit` starts at what the manifest may take and grows by what the manifest declares, once read.
    """

    def __init__(self, raw: io.BufferedIOBase, where: str, limit: int) -> None:
        super().__init__()
        self._raw = raw
        self._where = where
        self.limit = limit
        self.consumed = 0
        self.after = "its start"  # where in the archive the last whole member ended, for the message

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        room = self.limit - self.consumed
        if room <= 0:
            raise BackupError(
                f"{self._where}: holds more than its {MANIFEST} declares, got over {self.limit} bytes of tar after "
                f"{self.after}; nothing more was read: {ALTERED}"
            )
        with memoryview(buffer) as view:
            n = self._raw.readinto(view[:room])
        self.consumed += n
        return n


@dataclass(frozen=True, slots=True, kw_only=True)
class _Scratch:
    """Where verify extracts a backup's members, and what its refusals say about that place."""

    work: Path  # a directory of verify's own, removed by whoever made it
    place: str  # the directory whose room counts, as the messages name it
    purpose: str  # "checked", or "restored" when the members are renamed into place afterwards
    refused: str  # what a refusal for room did and what to do, before any member is extracted
    failed: str  # the same, when the disk fills while members are extracted
    durable: bool  # members synced to disk: a restore renames them into the data directory


def _in_tmpdir(work: Path) -> _Scratch:
    fix = "free space there or point TMPDIR at a larger directory"
    return _Scratch(
        work=work,
        place=str(work.parent),
        purpose="checked",
        refused=f"nothing was extracted: {fix}",
        failed=f"nothing was restored: {fix}",
        durable=False,
    )


def _verify_into(path: Path | HeldBackup, scratch: _Scratch, *, into: Path | None) -> _Unpacked:
    """Verify `path` completely (module docstring) into `scratch.work`: its manifest and its members' checked copies.

    With `into`, the data directory a restore writes to: also where each data member lands there, and
    the backup's config through check-config's rules. A HeldBackup is read through its run's directory.
    """
    where = f"backup {_shown(path)}"
    try:
        with _read(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            identity = _identity(os.fstat(raw.fileno()))
            stream = _Capped(gz, where, _HEADER_ROOM + MANIFEST_MAX_BYTES + _END_ROOM)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                manifest = _read_manifest(where, tar)
                stream.after = MANIFEST
                check_names(where, manifest)
                if into is not None:
                    _check_targets(where, manifest, into)
                _check_room(where, manifest, scratch)
                stream.limit = (
                    stream.consumed + sum(_HEADER_ROOM + _blocks(m.size) for m in manifest.members) + _END_ROOM
                )
                files = _unpack(where, tar, stream, manifest, scratch)
            while stream.read(_COPY_BLOCK):  # to gzip's end: its checksum and length, and nothing after
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BackupError(
            f"{where}: the file is damaged or truncated, got {_damage(exc)}; use another generation"
        ) from None
    config = None if into is None else _check_config(where, manifest.config.name, files[manifest.config.name])
    return _Unpacked(manifest=manifest, files=files, config=config, identity=identity)


def _shown(path: Path | HeldBackup) -> Path:
    return path.path if isinstance(path, HeldBackup) else path


@contextlib.contextmanager
def _read(path: Path | HeldBackup) -> Iterator[BinaryIO]:
    """The backup opened for reading: a run's own in the directory the run holds, one the caller named as `held_backup.named`
    reaches it."""
    with (
        held_backup.named(path) if isinstance(path, Path) else contextlib.nullcontext(path) as held,
        held.open() as raw,
    ):
        yield raw


def _damage(exc: BaseException) -> str:
    if isinstance(exc, gzip.BadGzipFile) and str(exc).startswith("Not a gzipped file"):
        # gzip quotes the bytes it found: those of a file that is no backup (a key, a password file) are not shown
        return "BadGzipFile: no gzip data where a backup's must be"
    return f"{type(exc).__name__}: {exc}"


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What tells one backup file from another at the same path: rewritten, replaced or touched, it differs."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _blocks(size: int) -> int:
    """The bytes a member of `size` bytes takes in a tar: whole 512-byte blocks."""
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _regular(info: tarfile.TarInfo) -> bool:
    return info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and info.sparse is None


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "a directory"
    if info.issym():
        return f"a symbolic link to {info.linkname!r}"
    if info.islnk():
        return f"a hard link to {info.linkname!r}"
    if info.isdev():
        return "a device or FIFO"
    if info.sparse is not None or info.issparse():
        return "a sparse file"
    return f"a tar entry of type {info.type!r}"


def _read_manifest(where: str, tar: tarfile.TarFile) -> Manifest:
    first = tar.next()
    if first is None or first.name != MANIFEST:
        raise BackupError(
            f"{where}: not an edgegw backup, got no {MANIFEST} first; pick a file `edgegw backup list` shows"
        )
    if not _regular(first):
        raise BackupError(f"{where}: {MANIFEST} must be a regular file, got {_tar_kind(first)}; {ALTERED}")
    if first.size > MANIFEST_MAX_BYTES:
        raise BackupError(
            f"{where}: {MANIFEST} must be at most {MANIFEST_MAX_BYTES} bytes, got {first.size}; nothing of it was "
            f"read: {ALTERED}"
        )
    data = tar.extractfile(first)
    if data is None:  # a regular file always has its data: tarfile's typing does not know
        raise BackupError(f"{where}: {MANIFEST} must be a regular file, got {_tar_kind(first)}; {ALTERED}")
    return Manifest.from_json(where, data.read())


def _check_targets(where: str, manifest: Manifest, data_dir: Path) -> None:
    """Each data member lands inside `data_dir`, onto no directory nor special file, under directories only."""
    try:
        base = data_dir.resolve()
    except (OSError, RuntimeError) as exc:
        raise BackupError(f"{where}: cannot resolve the data directory {data_dir}, got {exc}") from None
    for m in manifest.members:
        if not m.name.startswith(f"{DATA_DIR}/"):
            continue
        problem = _target_problem(data_dir, base, PurePosixPath(m.name).relative_to(DATA_DIR).parts)
        if problem is not None:
            raise BackupError(f"{where}: member {m.name!r} {problem}; nothing was stopped or changed")


def _target_problem(data_dir: Path, base: Path, parts: tuple[str, ...]) -> str | None:
    target = data_dir.joinpath(*parts)
    if len(os.fsencode(target)) > _PATH_MAX_BYTES:
        return f"would be written to a path longer than Linux allows ({_PATH_MAX_BYTES} bytes), got {target}"
    try:
        resolved = target.resolve()
        if resolved == base or not resolved.is_relative_to(base):
            link = next(
                (p for p in (data_dir.joinpath(*parts[:n]) for n in range(1, len(parts) + 1)) if p.is_symlink()),
                target,
            )
            return (
                f"would be written outside the data directory {data_dir}, got {resolved} through the symbolic link "
                f"{link}: a data directory holds no link out of it; replace the link by what it points to"
            )
        for n in range(1, len(parts)):
            above = data_dir.joinpath(*parts[:n])
            if above.exists() and not above.is_dir():
                return f"needs {above} to be a directory, got a file there on this box; move the file away"
        if target.is_dir():
            return f"would replace the directory {target} with a file; move the directory away"
        if target.exists() and not target.is_file():
            return f"would replace {target}, which is not a regular file (a socket, a FIFO, a device); move it away"
    except (OSError, RuntimeError) as exc:  # a link loop, a directory root cannot search (a FUSE mount)
        return f"cannot be placed in {data_dir}, got {exc}"
    return None


class NoRoom(BackupError):
    """The directory a backup is checked or staged in lacks room for it: the file itself may be good."""

    code = "backup_no_room"


def _check_room(where: str, manifest: Manifest, scratch: _Scratch) -> None:
    """The extraction directory holds every declared byte with FREE_MARGIN_BYTES to spare, or nothing is extracted."""
    declared = sum(m.size for m in manifest.members)
    st = os.statvfs(scratch.work)
    free = st.f_bavail * st.f_frsize
    if declared + FREE_MARGIN_BYTES > free:
        raise NoRoom(
            f"{where}: its {len(manifest.members)} files need {declared} bytes ({_mib(declared)}) and a "
            f"{_mib(FREE_MARGIN_BYTES)} margin in {scratch.place} to be {scratch.purpose}, got {free} bytes "
            f"({_mib(free)}) free there; {scratch.refused}"
        )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def _unpack(
    where: str, tar: tarfile.TarFile, stream: _Capped, manifest: Manifest, scratch: _Scratch
) -> dict[str, Path]:
    """Each member checked and copied into `scratch`: one for one with the manifest, never past its declared size."""
    declared = {m.name: m for m in manifest.members}
    files: dict[str, Path] = {}
    while (info := tar.next()) is not None:
        m = declared.get(info.name)
        if m is None:
            raise BackupError(f"{where}: member {info.name!r} is not in {MANIFEST}, got it in the tar; {ALTERED}")
        if info.name in files:
            raise BackupError(
                f"{where}: member {info.name!r} is in the tar twice, got it once in {MANIFEST}; {ALTERED}"
            )
        if not _regular(info):
            raise BackupError(f"{where}: member {info.name!r} must be a regular file, got {_tar_kind(info)}; {ALTERED}")
        if info.size != m.size:
            raise BackupError(
                f"{where}: member {info.name!r} is declared {m.size} bytes in {MANIFEST}, got {info.size} in the tar; "
                f"nothing of it was extracted: {ALTERED}"
            )
        data = tar.extractfile(info)
        if data is None:  # a regular file always has its data: tarfile's typing does not know
            raise BackupError(f"{where}: member {info.name!r} must be a regular file, got {_tar_kind(info)}; {ALTERED}")
        files[info.name] = _extract(where, m, data, scratch, scratch.work / f"{len(files):05d}")
        stream.after = f"member {info.name!r}"
    for m in manifest.members:
        if m.name not in files:
            raise BackupError(f"{where}: {m.name} is missing; the file is incomplete, use another generation")
    return files


def _extract(where: str, m: Member, data: IO[bytes], scratch: _Scratch, file: Path) -> Path:
    """`m`'s bytes into `file` (0600), at most its declared size, checked against its checksum and, if sqlite,
    quick_check."""
    digest = hashlib.sha256()
    head = b""
    left = m.size
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _no_room(where, m, scratch, exc) from None
    # unbuffered: each write must tell a full disk from damage
    with open(fd, "wb", buffering=0) as out:
        while left:
            block = data.read(min(_COPY_BLOCK, left))
            if not block:
                raise tarfile.ReadError("unexpected end of data")
            left -= len(block)
            digest.update(block)
            if len(head) < len(_SQLITE_MAGIC):
                head += block[: len(_SQLITE_MAGIC) - len(head)]
            try:
                out.write(block)  # unbuffered FileIO on a regular file writes it whole or raises
            except OSError as exc:
                raise _no_room(where, m, scratch, exc) from None
        if scratch.durable:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise _no_room(where, m, scratch, exc) from None
    if digest.hexdigest() != m.sha256:
        raise BackupError(f"{where}: {m.name} does not match its checksum; the file is damaged, use another generation")
    # whatever the manifest says: a store it calls no sqlite would otherwise restore unchecked
    if m.sqlite or head == _SQLITE_MAGIC or m.name.endswith(".db"):
        _check_sqlite(where, m.name, file)
    return file


def _no_room(where: str, m: Member, scratch: _Scratch, exc: OSError) -> BackupError:
    kind = NoRoom if exc.errno in (errno.ENOSPC, errno.EDQUOT) else BackupError
    return kind(
        f"{where}: cannot extract {m.name} into {scratch.place} to check it, got {exc.strerror or exc}; {scratch.failed}"
    )


def _check_sqlite(where: str, name: str, file: Path) -> None:
    try:
        db = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True)  # a data_dir given relative too
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{where}: {name} is not a usable sqlite file, got {exc}; use another generation") from None
    if rows != [("ok",)]:
        raise BackupError(f"{where}: {name} fails sqlite's quick_check, got {rows[0][0]}; use another generation")


def _check_config(where: str, name: str, file: Path) -> GatewayConfig:
    """The backup's config through `edgegw check-config`'s rules: a restore must not install one the gateway refuses."""
    try:
        return parse_config(read_toml(file), name)
    except ConfigError as exc:
        errors = exc.errors
    except RecursionError:
        errors = ["not valid TOML: arrays or tables nested too deep"]
    raise BackupError(
        f"{where}: {name} fails check-config, got {len(errors)} error(s): {'; '.join(errors)}; nothing was stopped or "
        "changed: use another generation, or make this box able to run that config (the errors say what it lacks) "
        "and restore again"
    )


def verify(path: Path | HeldBackup, *, data_dir: Path | None = None) -> Manifest:
    """Read the whole file, check every name, size, checksum and sqlite member; BackupError saying what is wrong.
    A run's own backup (HeldBackup) is read in the directory the run holds, and only if it is the file it wrote.

    The members are extracted into a directory of verify's own in `data_dir` (hidden, removed after):
    /tmp is RAM on these boxes, and the data disk is where a backup must fit anyway. Without it, TMPDIR.
    The `.verify-*` and `.restore-staging-*` directories killed runs left there go first (`STALE_AFTER_S`).
    """
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="edgegw-verify-") as tmp:
            return _verify_into(path, _in_tmpdir(Path(tmp)), into=None).manifest
    _remove_leftovers(data_dir)
    where = f"backup {_shown(path)}"
    work = _held_work_dir(where, data_dir, VERIFY_PREFIX, _CHECK)
    fix = "free space there or verify the file on another box"
    scratch = _Scratch(
        work=work.reach,
        place=f"the data directory {data_dir}",
        purpose="checked",
        refused=f"nothing was extracted: {fix}",
        failed=f"what was extracted is removed: {fix}",
        durable=False,
    )
    with work.left_on_failure(where, _CHECK):
        manifest = _verify_into(path, scratch, into=None).manifest
    if (replaced := work.leave()) is not None:
        raise _work_replaced(where, work.path, replaced, _CHECK)
    return manifest


@dataclass(slots=True, kw_only=True)
class _HeldWork:
    """A directory of verify's own in the data directory, held open (and flock'd: `_lock`) from the moment it was
    made: under root, in the service user's directory, it is reached through `reach` whatever becomes of its name."""

    path: Path  # its name in the data directory, for messages
    parent_fd: int
    fd: int

    @property
    def reach(self) -> Path:
        return Path(f"/proc/self/fd/{self.fd}")

    def replaced(self) -> str | None:
        """None while its name in the data directory is still it, else what has the name now."""
        return held_dir.still_named(self.parent_fd, self.path.name, self.fd)

    def leave(self) -> str | None:
        """The directory removed, both descriptors closed (the flock let go last); what took its name, if any."""
        try:
            return held_dir.remove_dir(self.parent_fd, self.path.parent, self.path.name, self.fd)
        finally:
            os.close(self.parent_fd)

    @contextlib.contextmanager
    def left_on_failure(self, where: str, purpose: str) -> Iterator[None]:
        """Left (`leave`) when the block fails; if its name led elsewhere by then, that is the error raised (the
        bigger news), the block's own its cause."""
        try:
            yield
        except Exception as exc:
            if (replaced := self.leave()) is not None:
                raise _work_replaced(where, self.path, replaced, purpose) from exc
            raise
        except BaseException:
            self.leave()
            raise

    def keep(self) -> None:
        """Both descriptors closed, the directory left as it is (`KEPT_MARK`): the flock let go."""
        os.close(self.fd)
        os.close(self.parent_fd)


def _held_work_dir(where: str, data_dir: Path, prefix: str, purpose: str) -> _HeldWork:
    """A new hidden directory in `data_dir`, 0700, held open (a backup never holds a hidden name, and a backup taken
    meanwhile leaves it out): made through the data directory's descriptor, so that a link the service user puts in
    its place is never followed (held_dir.py)."""
    try:
        parent_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # named by root's own config
        try:
            name, fd = held_dir.new_dir(parent_fd, data_dir, prefix)
        except BaseException:
            os.close(parent_fd)
            raise
    except held_dir.Replaced as exc:
        raise _work_replaced(where, exc.path, exc.what, purpose) from None
    except OSError as exc:
        raise BackupError(
            f"{where}: cannot make a directory to {purpose} in the data directory {data_dir}, got "
            f"{exc.strerror or exc}; nothing was stopped or changed: check that {data_dir} exists and that this user "
            "may write there (run as root or as the service user)"
        ) from None
    _lock(fd)
    return _HeldWork(path=data_dir / name, parent_fd=parent_fd, fd=fd)


def _work_replaced(where: str, path: Path, what: str, purpose: str) -> BackupError:
    """What a technician reads when the service user's side swapped a verify's or a restore's directory."""
    if purpose == _RESTORE_FROM:
        outcome, again = "nothing was stopped or changed", "restore again"
    else:
        outcome, again = "the file is not verified", "verify again"
    return BackupError(
        f"{where}: the directory {path} made to {purpose} was replaced while it ran, got {what}; nothing written "
        f"through it, {outcome}: a process with the service user's rights changes the data directory "
        f"{path.parent}: find it, then remove {path} and {again}"
    )


def _lock(fd: int) -> None:
    """An flock on the directory open as `fd` while it stays open: the mark of a verify or restore that runs. A file
    system without locks: then no other run removes it either."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _remove_leftovers(data_dir: Path) -> None:
    """The `.verify-*` and `.restore-staging-*` directories that killed verifies and restores left in `data_dir`
    removed (`STALE_AFTER_S`), each logged: each holds a copy of the stores, and nobody looks in a hidden
    directory until the data disk is full. A staging directory a restore kept (`KEPT_MARK`) stays."""
    try:
        entries = [e for e in os.scandir(data_dir) if e.name.startswith((VERIFY_PREFIX, STAGING_PREFIX))]
    except OSError:
        return  # no data directory: `_held_work_dir` says so
    for entry in entries:
        run = "verify" if entry.name.startswith(VERIFY_PREFIX) else "restore"
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or time.time() - st.st_mtime < STALE_AFTER_S:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, or not ours to open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a run holds it, however long it takes (a share that hangs, a restore waiting for the lock)
        try:
            # looked for under the lock: a restore marks what it keeps before it lets go of the directory
            if _marked(entry.path):
                continue
            shutil.rmtree(entry.path)
        except FileNotFoundError:
            pass  # another run removed it first
        except OSError as exc:
            log.warning("backup: cannot remove %s, left by a %s that did not finish, got %s", entry.path, run, exc)
        else:
            when = datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds")
            log.warning(
                "backup: removed %s, left by a %s that did not finish (killed, or a power cut); last written %s",
                entry.path,
                run,
                when,
            )
        finally:
            os.close(fd)


def _marked(directory: str) -> str | None:
    """The mark of a staging directory that must stay, if it has one: `KEPT_MARK` first, the one that says most
    (a restore that kept its directory also leaves its `UNDER_WAY_MARK`, in case `KEPT_MARK` cannot be written)."""
    for mark in (KEPT_MARK, UNDER_WAY_MARK):
        if os.path.lexists(os.path.join(directory, mark)):
            return mark
    return None


def unfinished_restores(data_dir: Path) -> list[Path]:
    """The marks of restores into `data_dir` that did not finish (one kept its staging directory, or was cut short
    during its renames): while there is one, the data directory may hold files from before and after a restore."""
    try:
        entries = sorted(e.path for e in os.scandir(data_dir) if e.name.startswith(STAGING_PREFIX))
    except OSError:
        return []  # no data directory: whoever needs it says so
    return [Path(path, mark) for path in entries if (mark := _marked(path)) is not None]


def _refuse_unfinished_restore(data_dir: Path) -> None:
    """BackupError while a restore into `data_dir` has not finished: its data directory may be part restored, and
    a backup of it kept as a good generation would rotate out one taken before the restore, a whole one."""
    marks = unfinished_restores(data_dir)
    if marks:
        raise BackupError(
            f"backup: no backup taken: a restore into {data_dir} did not finish, and the data directory may hold "
            f"files from before and after it; {marks[0]} says where each part is"
            + (f" ({len(marks)} such directories)" if len(marks) > 1 else "")
            + f": put the data directory right (or restore again), then delete {marks[0].parent} and back up again",
            data_dir=str(data_dir),
            mark=str(marks[0]),
        )


def scratch_room(data_dir: Path) -> Path | None:
    """Where verify extracts (its `data_dir`): the data disk (/tmp is RAM on these boxes), if this user may write
    there; else None, TMPDIR."""
    return data_dir if os.access(data_dir, os.W_OK | os.X_OK) else None


def list_backups(out_dir: Path, gateway_id: str | None = None, *, dir_fd: int | None = None) -> list[Path]:
    """The backup files in `out_dir`, oldest first by the time in their names; only `gateway_id`'s if given.

    Ordered by time, not by name: the names start with the gateway id, and a share (or a box renamed) holds
    several ids' files. A name `file_name` does not make, or anything but a regular file, is left out. Listed in
    `dir_fd` if given (the directory a run holds: held_backup.py), else in `out_dir` reached as `_reached` says.
    """
    with _reached(out_dir, dir_fd) as fd:
        return [] if fd is None else [out_dir / name for name, _ in _listed(fd, gateway_id)]


def backup_sizes(out_dir: Path) -> list[tuple[Path, int]]:
    """`list_backups(out_dir)` with each file's size (`edgegw backup list`)."""
    with _reached(out_dir, None) as fd:
        return [] if fd is None else [(out_dir / name, st.st_size) for name, st in _listed(fd, None)]


@contextlib.contextmanager
def _reached(out_dir: Path, dir_fd: int | None) -> Iterator[int | None]:
    """`dir_fd` if given; else `out_dir` held open for the `with`, reached from / as held_dir.private_dirs reaches it,
    nothing made: under root, a link the service user put in place of `<data_dir>/backups` is refused by name, never
    listed or rotated through. None if `out_dir` is missing: no backups."""
    if dir_fd is not None:
        yield dir_fd
        return
    try:
        held = held_dir.private_dirs(out_dir, make=False)
    except FileNotFoundError:
        yield None
        return
    try:
        yield held.fd
    finally:
        held.close()


def _listed(dir_fd: int, gateway_id: str | None) -> list[tuple[str, os.stat_result]]:
    """The backup files in the directory open as `dir_fd` (`list_backups`), each with what lstat says of it."""
    found: list[tuple[datetime, str, os.stat_result]] = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if (taken := _taken(entry.name)) is None or gateway_id not in (None, taken[0]):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # rotated out by hand meanwhile
            if stat.S_ISREG(st.st_mode):
                found.append((taken[1], entry.name, st))
    return [(name, st) for _, name, st in sorted(found, key=lambda f: f[:2])]


def rotate(
    out_dir: Path, generations: int, *, gateway_id: str, keep: Path | HeldBackup, dir_fd: int | None = None
) -> list[Path]:
    """Delete all but the newest `generations` of `gateway_id`'s backup files, `keep` (just written) always
    among those kept; returns what it deleted. In `dir_fd` if given (the directory the run that wrote `keep` holds,
    whatever its name has become), else in `out_dir` reached as `_reached` says.

    Only this gateway id's files go: a share takes other boxes' backups, and this box's own under an
    id it had before are another id's (docs/backup.md says how to remove them). Neither, nor a file of
    another shape, is ever touched.
    """
    with _reached(out_dir, dir_fd) as fd:
        if fd is None:
            return []
        mine = [name for name, _ in _listed(fd, gateway_id) if name != keep.name]
        old = mine[: max(0, len(mine) - (generations - 1))]
        for name in old:
            with held_dir.named(out_dir / name):
                os.unlink(name, dir_fd=fd)
            log.info("backup rotated out: %s", out_dir / name)
        if log.isEnabledFor(logging.DEBUG):
            with os.scandir(fd) as entries:
                names = sorted(e.name for e in entries)
            others = [
                name
                for name in names
                if name.startswith(PREFIX)
                and name.endswith(SUFFIX)
                and ((taken := _taken(name)) is None or taken[0] != gateway_id)
            ]
            if others:
                log.debug(
                    "backup rotation of %s left alone, of another gateway id or name: %s", out_dir, ", ".join(others)
                )
    return [out_dir / name for name in old]


def copy_verified(path: Path | HeldBackup, dest_dir: Path, *, data_dir: Path | None = None) -> Path:
    """Copy a backup to another directory (a mounted share, `copy`) and verify the copy there, not the source.

    `data_dir` is `verify`'s.
    """
    with _held(path) as source, copy_held(source, dest_dir) as copied:
        verify(copied, data_dir=data_dir)
        return copied.path


def require_mounted(share: Path, data_dir: Path) -> None:
    """BackupError unless `share` (not there yet: its nearest existing parent) is on another file system than the
    data directory and /. A share that did not mount (the file server down at boot, an automount that failed)
    leaves its bare mount point on the local disk: a copy made there would be reported off the box, and lost
    with it. Nothing is created on the way: `copy` makes the missing directories only once this passed."""
    anchor = share
    while not os.path.lexists(anchor) and anchor != anchor.parent:
        anchor = anchor.parent
    try:
        here = os.stat(anchor).st_dev
        local = {os.stat("/").st_dev: "/", os.stat(data_dir).st_dev: f"the data directory {data_dir}"}
    except OSError as exc:
        raise BackupError(
            f"backup: cannot tell whether the share {share} is mounted, got {exc.strerror or exc} for "
            f"{exc.filename}; no copy made, the backup is on the box only"
        ) from None
    if here in local:
        raise BackupError(
            f"backup: share {share} is not mounted: {anchor} is on the same file system as {local[here]}; no copy "
            f"made, nothing created there, the backup is on the box only: mount the share (`findmnt -T {anchor}` "
            "shows what is mounted there; /etc/fstab, the file server) or set [backup] copy_to to where it is mounted",
            share=str(share),
        )


def copy(path: Path | HeldBackup, dest_dir: Path) -> Path:
    """Copy a backup to another directory (a mounted share), byte for byte or BackupError; not verified.

    The copy is 0600 and the directories made for it 0700 whatever the umask; under root they are
    handed to the owner of `path` (the service user), as `create` does. A run's own backup (HeldBackup) is read
    in the directory the run holds; one named by its path is reached through no link (held_backup.at).
    """
    with _held(path) as source, copy_held(source, dest_dir) as copied:
        return copied.path


@contextlib.contextmanager
def _held(path: Path | HeldBackup) -> Iterator[HeldBackup]:
    if isinstance(path, HeldBackup):
        yield path
    else:
        with held_backup.at(path) as held:
            yield held


@contextlib.contextmanager
def copy_held(source: HeldBackup, dest_dir: Path) -> Iterator[HeldBackup]:
    """`copy`, the copy's directory held open for the `with`: its verify and rotation go through it (others may
    write to the share too)."""
    dest = held_dir.private_dirs(dest_dir)  # every step goes through it
    try:
        final = dest_dir / source.name
        part = _part_of(final)
        if (taken := _taken(source.name)) is not None:
            _remove_dead_parts(dest.fd, dest_dir, taken[0])
        # opened once the share is reached, however long that took: a link put at its name by then is refused
        with part_file.writing() as parts, source.open() as src:  # the `.part` locked until renamed
            owner = os.fstat(src.fileno())
            try:
                with parts.new_file(dest.fd, part.name, where=part, owner=owner) as dst:
                    shutil.copyfileobj(src, dst, _COPY_BLOCK)
                    dst.flush()
                    src.seek(0)
                    same = _sha256(Path(f"/proc/self/fd/{dst.fileno()}")) == _digest(src)  # read back, from the share
                    written = os.fstat(dst.fileno())
            except BaseException as exc:
                held_dir.discard(dest.fd, part.name, part)  # a full share stays full otherwise: no later run writes it
                if isinstance(exc, OSError) and _is_full(exc):
                    raise BackupError(
                        f"backup copy {final}: no room for its {owner.st_size} bytes in {dest_dir}, got "
                        f"{_why(exc)}; the partial copy is removed, the backup itself is kept on the box: free space on "
                        f"the share (`df -h {dest_dir}`)"
                    ) from None
                raise
            if not same:
                held_dir.discard(dest.fd, part.name, part)
                raise BackupError(
                    f"backup copy {final}: the copy differs from {source.path}; check the share {dest_dir}"
                )
            with held_dir.named(final):
                os.replace(part.name, final.name, src_dir_fd=dest.fd, dst_dir_fd=dest.fd)
        dest.give(owner, itself=False)
        yield HeldBackup(path=final, dir_fd=dest.fd, written=(written.st_dev, written.st_ino), size=owner.st_size)
    finally:
        dest.close()


def _version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@contextlib.contextmanager
def _config_locked(config_path: Path, owner: os.stat_result, within_s: float) -> Iterator[None]:
    """The config apply's exclusive flock beside `config_path`, waited for `within_s` at most; BackupError after."""
    from gateway.control.ops_config import lock_path  # here: ops_config imports the app, which imports this

    lock = lock_path(config_path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise BackupError(
            f"backup restore: cannot open the config lock {lock}, got {exc.strerror or exc}; nothing restored: "
            f"run the restore as root or as the owner of {config_path.parent}"
        ) from None
    try:
        give_to(owner, [lock])  # made by root, it must still open (O_RDWR) for the gateway's next apply
        deadline = time.monotonic() + within_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BackupError(
                        f"backup restore: the config lock {lock} is held by another process, got no lock within "
                        f"{within_s:g} s; nothing restored: a config apply is under way, let it end and restore "
                        f"again (`fuser -v {lock}` names the process)"
                    ) from None
            time.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


class Busy(BackupError):
    """The backup lock (`box_locked`) held by another backup or restore for longer than the wait: nothing was done."""

    code = "backup_busy"

    def __init__(self, *, where: str, data_dir: Path, holder: str, within_s: float, fix: str) -> None:
        super().__init__(
            f"{where}: the backup lock on {data_dir} is held by {holder}, got no lock within {within_s:g} s; {fix}",
            data_dir=str(data_dir),
            holder=holder,
            within_s=within_s,
        )
        self.data_dir = data_dir
        self.holder = holder
        self.within_s = within_s


@contextlib.contextmanager
def box_locked(data_dir: Path, *, within_s: float, where: str, fix: str) -> Iterator[None]:
    """The backup lock held for the `with`, waited for `within_s` at most: Busy after, naming its holder, with `fix`.

    An exclusive flock on the data directory itself (module docstring). The descriptor is not inherited by what
    the holder runs (systemctl), so the lock ends with the holder's own process.
    """
    try:
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise BackupError(
            f"{where}: cannot open the data directory {data_dir} to lock it, got {exc.strerror or exc}; nothing was "
            "done: check that it exists and that this user may read it (run as root or as the service user)"
        ) from None
    try:
        deadline = time.monotonic() + within_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = lock_holder(fd)
                if time.monotonic() >= deadline:
                    raise Busy(where=where, data_dir=data_dir, holder=holder, within_s=within_s, fix=fix) from None
                if not told:
                    told = True
                    log.warning(
                        "%s: waiting up to %g s for the backup lock on %s, held by %s",
                        where,
                        within_s,
                        data_dir,
                        holder,
                    )
            except OSError as exc:
                raise BackupError(
                    f"{where}: cannot lock the data directory {data_dir}, got {exc.strerror or exc}; nothing was done: "
                    "it must be on a file system with flock (a local disk)"
                ) from None
            time.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_holder(fd: int, unknown: str = "another backup or restore (`lslocks` names it)") -> str:
    """Who holds the flock on `fd`'s file, as the kernel says (/proc/locks, then the holder's command line); `unknown`
    where it does not (a holder in another pid namespace, a /proc hiding other users' processes)."""
    st = os.fstat(fd)
    here = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF"; a waiter's has "->" after the number
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == here and parts[4] != "0":
            return _process(parts[4])
    return unknown


def _process(pid: str) -> str:
    """`pid` and its command line, for a message: whole (a restore's names the file) but for a runaway one."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    text = "".join(c if c.isprintable() else "?" for c in " ".join(a.decode("utf-8", "replace") for a in argv if a))
    if not text:
        return f"pid {pid}"
    return f"pid {pid} (`{text if len(text) <= 1000 else text[:999] + '…'}`)"


def _replace_config(src: Path, config_path: Path) -> None:
    """`config_path` replaced by `src` through a rename, keeping its mode and, under root, its owner:
    a power cut leaves the old config or the new one, and never, even for a moment, one the gateway
    cannot read (root:edgegw 0660 made root:root by `sudo edgegw backup restore`)."""
    try:
        old = config_path.stat()
    except FileNotFoundError:
        owner = None
    else:
        owner = (old.st_uid, old.st_gid) if os.geteuid() == 0 else None
    write_atomic(config_path, src.read_bytes(), None, durable=True, owner=owner)


def _refuse_another_box(path: Path, manifest: Manifest, gateway_id: str, force: bool) -> None:
    if manifest.gateway_id != gateway_id and not force:
        raise BackupError(
            f"backup {path}: taken by gateway {manifest.gateway_id!r}, got this gateway {gateway_id!r}; nothing was "
            f"stopped or changed: pass --force to restore its data and config onto this box keeping the id "
            f"{gateway_id!r}, or --take-id to give this box the id {manifest.gateway_id!r} too (it replaces that box)"
        )
    if _version_tuple(manifest.edgegw_version) > _version_tuple(__version__):
        raise BackupError(
            f"backup {path}: written by edgegw {manifest.edgegw_version}, newer than this {__version__}; "
            "a downgrade is refused: install that version first"
        )


class RestoreIncomplete(BackupError):
    """A restore failed half-way and some previous files did not go back: the data directory is mixed, and the
    services must stay stopped until a technician puts it right (the message says where each part is)."""

    code = "restore_incomplete"


@dataclass(slots=True, kw_only=True)
class Staged:
    """A backup checked into a directory of its own inside the data directory (`stage`), put in place by
    `install` with renames only: the same file system, so nothing is extracted or copied once the services
    are stopped. `identity` is the backup file's as it was read: `install` reads it again only if it changed."""

    path: Path
    data_dir: Path
    config_path: Path
    gateway_id: str
    force: bool
    take_id: bool
    check_data_dir: bool
    directory: Path
    manifest: Manifest
    files: dict[str, Path]  # member name -> its checked copy in `directory`
    identity: tuple[int, ...]
    backup_gateway_id: str  # gateway.id in the backup's config as it was taken
    keep: bool = False  # an install that could not put every file back needs what is left here (`KEPT_MARK`)
    # `directory` held open and flock'd: no other run takes it for a killed restore's, and every step reaches it
    # through its descriptor (`reach`), whatever the service user makes of its name
    held: _HeldWork | None = None

    @property
    def reach(self) -> Path:
        """`directory` through its descriptor while held (`directory` itself once released)."""
        return self.held.reach if self.held is not None else self.directory

    def shown(self, path: Path) -> Path:
        """`path` as a technician finds it: under `directory`, not /proc/self/fd/<n>."""
        if self.held is not None and path.is_relative_to(self.held.reach):
            return self.directory / path.relative_to(self.held.reach)
        return path

    def identity_note(self) -> str:
        """Which gateway id the box has once this backup is in place, for the technician to see."""
        if self.backup_gateway_id == self.gateway_id:
            return f"this box's gateway id is {self.gateway_id!r}"
        if self.take_id:
            return f"this box's gateway id is now {self.backup_gateway_id!r}, the backup's (it was {self.gateway_id!r})"
        return f"this box's gateway id stays {self.gateway_id!r} (the backup's config had {self.backup_gateway_id!r})"

    def release(self) -> None:
        """`directory` removed, unless kept (`keep`), then the flock let go. One whose name led elsewhere since is
        logged: every step went through its descriptor, so nothing went through the link."""
        if self.held is None:
            return
        held, self.held = self.held, None
        if self.keep:
            held.keep()
            return
        if (replaced := held.leave()) is not None:
            log.warning(
                "backup restore: the directory %s was replaced while the restore ran, got %s; nothing went through "
                "it: a process with the service user's rights changes the data directory %s: find it, then remove %s",
                self.directory,
                replaced,
                self.data_dir,
                self.directory,
            )


@contextlib.contextmanager
def stage(
    path: Path,
    *,
    data_dir: Path,
    config_path: Path,
    gateway_id: str,
    force: bool = False,
    take_id: bool = False,
    check_data_dir: bool = True,
) -> Iterator[Staged]:
    """`path` verified into a staging directory in `data_dir`: run it before stopping the gateway; removed on leaving.

    Every refusal of a restore that needs no lock happens here, with nothing stopped or changed: a file
    `verify` refuses, a data directory without room for the backup (with FREE_MARGIN_BYTES to spare), a
    data member that would land outside `data_dir` or onto a directory, a config that fails
    check-config, another gateway's backup without `force` or `take_id`, a backup from a newer edgegw and,
    with `check_data_dir`, a config naming another data directory than `data_dir` (the restored gateway
    would run on that one, not on the restored data; `force` does not lift it). The staged config keeps
    this box's `gateway_id` unless `take_id`: the id names the box to the platform, and two boxes
    sending under one id mix their data (gateway_id.py).
    """
    staged = _stage(path, data_dir, config_path, gateway_id, force, take_id, check_data_dir)
    try:
        yield staged
    finally:
        staged.release()


def _stage(
    path: Path, data_dir: Path, config_path: Path, gateway_id: str, force: bool, take_id: bool, check_data_dir: bool
) -> Staged:
    _remove_leftovers(data_dir)  # their room counts against the backup's
    where = f"backup {path}"
    held = _held_work_dir(where, data_dir, STAGING_PREFIX, _RESTORE_FROM)
    directory = held.reach
    with held.left_on_failure(where, _RESTORE_FROM):
        _searchable_by_group(held.fd, data_dir.stat())
        fix = (
            f"nothing was stopped or changed: free space there (the {_ASIDE_PREFIX}* directories of earlier "
            f"restores can go, and {STAGING_PREFIX}* ones a killed restore left) and restore again"
        )
        scratch = _Scratch(
            work=directory,
            place=f"the data directory {data_dir}",
            purpose="restored",
            refused=fix,
            failed=fix,
            durable=True,
        )
        unpacked = _verify_into(path, scratch, into=data_dir)
        _refuse_another_box(path, unpacked.manifest, gateway_id, force or take_id)
        if check_data_dir:
            _refuse_another_data_dir(path, unpacked, data_dir, config_path)
        assert unpacked.config is not None  # verified `into` a data directory: the config was parsed
        backup_gateway_id = unpacked.config.gateway.id
        if backup_gateway_id != gateway_id and not take_id:
            _keep_gateway_id(path, unpacked, gateway_id, config_path)
        _as_in_place(unpacked, data_dir.stat())
        if (replaced := held.replaced()) is not None:
            raise _work_replaced(where, held.path, replaced, _RESTORE_FROM)
    return Staged(
        path=path,
        data_dir=data_dir,
        config_path=config_path,
        gateway_id=gateway_id,
        force=force,
        take_id=take_id,
        check_data_dir=check_data_dir,
        directory=held.path,
        manifest=unpacked.manifest,
        files=unpacked.files,
        identity=unpacked.identity,
        backup_gateway_id=backup_gateway_id,
        held=held,
    )


def _keep_gateway_id(path: Path, unpacked: _Unpacked, gateway_id: str, config_path: Path) -> None:
    """The staged config given this box's `gateway_id`, or BackupError (nothing stopped) if it cannot be written in."""
    name = unpacked.manifest.config.name
    staged = unpacked.files[name]
    kept = with_gateway_id(staged.read_bytes().decode("utf-8"), gateway_id)  # parsed already: UTF-8
    if kept is None:
        raise BackupError(
            f"backup {path}: cannot keep this box's gateway id {gateway_id!r} in {name}, got a gateway.id that is not "
            'one `id = "…"` line of its [gateway] table (an inline table?); nothing was stopped or changed: stop the '
            "services (systemctl stop edgegw-kiosk edgegw-web edgegw), restore with --take-id --service-manager none, "
            f"set gateway.id = {json.dumps(gateway_id)} in {config_path}, then start them"
        )
    staged.write_bytes(kept.encode("utf-8"))


def _searchable_by_group(directory: int, owner: os.stat_result) -> None:
    """`directory` searchable, not listable, by the data directory's group: the service user's nightly backup must
    find a mark (`unfinished_restores`) in the staging directory of a root restore. That gives it nothing it does not
    have: the files it could open by name are the data it is given in place anyway (`_as_in_place`); the config's
    copy stays root's."""
    if os.geteuid() == 0:
        os.fchown(directory, -1, owner.st_gid)
    os.fchmod(directory, 0o710)


def _refuse_another_data_dir(path: Path, unpacked: _Unpacked, data_dir: Path, config_path: Path) -> None:
    assert unpacked.config is not None  # verified `into` a data directory: the config was parsed
    named = unpacked.config.gateway.data_dir
    if Path(named).resolve() != data_dir.resolve():
        raise BackupError(
            f'backup {path}: {unpacked.manifest.config.name} has gateway.data_dir = "{named}", got this '
            f"restore's data directory {data_dir} (gateway.data_dir of {config_path}); the restored gateway would "
            f'not find the restored data: nothing was stopped or changed: set gateway.data_dir = "{named}" in '
            f"{config_path} and restore again"
        )


def _as_in_place(unpacked: _Unpacked, owner: os.stat_result) -> None:
    """The staged data members given the mode and owner they have in place, before the services stop."""
    for m in unpacked.manifest.members:
        if m.name.startswith(f"{DATA_DIR}/"):
            # the buffer is group-readable for the web UI (buffer/schema.py); every other store is owner-only
            os.chmod(unpacked.files[m.name], 0o640 if PurePosixPath(m.name).name == "buffer.db" else 0o600)
            give_to(owner, [unpacked.files[m.name]])  # root restores for the service user of the data directory


def install(
    staged: Staged, *, now: datetime, exclude: Path | None = None, lock_wait_s: float = CONFIG_LOCK_WAIT_S
) -> Path:
    """Put the staged backup in place of the current files (the gateway must be stopped); returns where the old ones went.

    All or nothing: the current files are renamed into `<data_dir>/.pre-restore-<stamp>/` (not deleted)
    and the staged ones into their place, then the config is replaced whole, under the config lock
    (BackupError after `lock_wait_s`). Any failure takes every rename back, newest first, and leaves the
    data directory and the config as they were (BackupError saying so); only if a file then does not
    go back, RestoreIncomplete says where each part is. The box's `KEPT_ON_BOX` key files stay in place
    unless the backup brings its own (one made before they stayed). A backup file that changed since
    it was staged is staged again first.
    """
    try:
        changed = _identity(staged.path.stat()) != staged.identity
    except OSError:
        changed = True  # gone or unreadable: staging it again says what is wrong with it
    if changed:
        log.warning("backup restore: %s changed since it was checked; checking it again", staged.path)
        staged.release()
        fresh = _stage(
            staged.path,
            staged.data_dir,
            staged.config_path,
            staged.gateway_id,
            staged.force,
            staged.take_id,
            staged.check_data_dir,
        )
        staged.directory, staged.manifest, staged.files = fresh.directory, fresh.manifest, fresh.files
        staged.identity, staged.held = fresh.identity, fresh.held
        staged.backup_gateway_id = fresh.backup_gateway_id
    data_dir, config_path = staged.data_dir, staged.config_path
    owner = data_dir.stat()
    if staged.held is not None and (replaced := staged.held.replaced()) is not None:
        raise _work_replaced(f"backup {staged.path}", staged.directory, replaced, _RESTORE_FROM)
    with _config_locked(config_path, owner, lock_wait_s):
        # the box as it is now, its services stopped: a directory made since staging must not be overwritten
        _check_targets(f"backup {staged.path}", staged.manifest, data_dir)
        swap = _Swap(staged, owner)
        try:
            aside = _swap_in(swap, staged, now, exclude)
        finally:
            swap.close()
    log.warning("restored %s into %s; the previous files are in %s", staged.path, data_dir, aside)
    return aside


def _swap_in(swap: _Swap, staged: Staged, now: datetime, exclude: Path | None) -> Path:
    """`install`'s work under the config lock: the data swapped, then the config replaced; every failure undone."""
    data_dir, config_path = staged.data_dir, staged.config_path
    try:
        aside = swap.run(now, exclude)
    except held_dir.Replaced as exc:
        swap.undo(f"the directory {exc.path} was replaced while the restore ran, got {exc.what}")
        raise _swap_replaced(exc, data_dir, config_path) from None
    except BaseException as exc:
        if not isinstance(exc, OSError):
            swap.undo(f"stopped by {type(exc).__name__} while it was about to {swap.doing}")
            raise
        why = f"cannot {swap.doing}, got {exc.strerror or exc}"
        swap.undo(why)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = f"free space and inodes (`df -i`) in {data_dir} and restore again"
        else:
            fix = (
                "see what stops it there (`lsattr -d` shows a file or directory made immutable, `dmesg` a disk "
                "error) and restore again"
            )
        raise BackupError(
            f"backup restore: {why}; nothing restored, every file is as it was (the data directory {data_dir} "
            f"and {config_path}): {fix}"
        ) from None
    # last, after the data: a config that cannot be written takes back renames only, which need no room
    try:
        _replace_config(staged.files[staged.manifest.config.name], config_path)
    except BaseException as exc:
        if not isinstance(exc, OSError):
            swap.undo(f"stopped by {type(exc).__name__} while writing {config_path}")
            raise
        swap.undo(f"cannot write {config_path}, got {exc.strerror or exc}")
        raise BackupError(
            f"backup restore: {config_path} not written, got {exc.strerror or exc}; nothing "
            f"restored, every file is as it was: make room under {config_path.parent} (or give "
            "write access to it) and restore again"
        ) from None
    swap.finished()
    return aside


def restore(
    path: Path,
    *,
    data_dir: Path,
    config_path: Path,
    gateway_id: str,
    now: datetime,
    force: bool = False,
    take_id: bool = False,
    exclude: Path | None = None,
    lock_wait_s: float = CONFIG_LOCK_WAIT_S,
    box_wait_s: float = BOX_LOCK_WAIT_S,
) -> Path:
    """`stage` and `install` in one, under the backup lock (Busy after `box_wait_s`): for a gateway stopped
    already; returns where the previous files went.

    Whether the config names `data_dir` is not checked: restore also fills a scratch or replacement directory.
    """
    with (
        box_locked(data_dir, within_s=box_wait_s, where="backup restore", fix="nothing was changed: restore again"),
        stage(
            path,
            data_dir=data_dir,
            config_path=config_path,
            gateway_id=gateway_id,
            force=force,
            take_id=take_id,
            check_data_dir=False,
        ) as staged,
    ):
        return install(staged, now=now, exclude=exclude, lock_wait_s=lock_wait_s)


_Spot = tuple[held_tree.HeldTree, held_tree.Parts, str]  # a file's directory, held, and its name there


class _Swap:
    """The data directory's files renamed aside and the staged ones into their place, each step recorded so
    that `undo` takes back exactly what was done.

    Everything that takes room (the directories, the config's copy) comes before the first rename: the
    renames themselves take none, so a disk that fills meanwhile stops the restore before a file moved.
    Each step is recorded before it is taken: an exception (KeyboardInterrupt from a signal) can land as a
    rename returns, and a move undo did not know of was a file lost with the aside directory. `undo` tells a
    step not taken by what is on the disk, and removes only what the swap made.

    Every directory is reached through a descriptor (held_tree.py): under root the data directory is the service
    user's, and a link it puts in place of one of them is refused, never followed; one swapped in while the swap
    ran is found after each rename (held_dir.Replaced), and `undo` puts every file back through the descriptors.
    """

    def __init__(self, staged: Staged, owner: os.stat_result) -> None:
        self._staged = staged
        self._owner = owner
        self.doing = "start"
        self._aside: Path | None = None
        self._aside_fd: int | None = None
        self._config_copy: Path | None = None
        self._moved: list[tuple[Path, Path, _Spot, _Spot]] = []  # (from, to), in order; the last may not have happened
        self._data: held_tree.HeldTree | None = None
        self._staging: held_tree.HeldTree | None = None

    def run(self, now: datetime, exclude: Path | None) -> Path:
        data_dir, config_path = self._staged.data_dir, self._staged.config_path
        self.doing = f"open the data directory {data_dir}"
        # named by root's own config; what is under it, the service user's, only through descriptors
        self._data = data = held_tree.HeldTree(data_dir, os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        staged = self._staged
        staging_fd = os.dup(staged.held.fd) if staged.held is not None else os.open(staged.directory, _HELD_DIR_FLAGS)
        self._staging = held_tree.HeldTree(staged.reach, staging_fd)
        self.doing = f"make the directory for the previous files in {data_dir}"
        aside = self._new_aside(data, now)
        if config_path.exists():
            self.doing = f"keep a copy of {config_path} in {aside}"
            self._config_copy = aside / config_path.name
            assert self._aside_fd is not None
            _copy_config(config_path, self._aside_fd, self._config_copy, self._owner)
        out, into = _plan(self._staged, aside, exclude)
        for _, to in out:
            self.doing = f"make the directory {to.parent}"
            # the previous files are the service user's: so is what holds them, for it to list and delete
            data.dir(data.parts(to.parent), make=True, owner=self._owner)  # inside `aside`: removed by undo if empty
        for _, to in into:
            self.doing = f"make the directory {to.parent}"
            data.dir(data.parts(to.parent), make=True, owner=self._owner)
        moves = [*out, *into]
        for frm, _ in moves:
            self.doing = f"open the directory {self._staged.shown(frm.parent)}"
            self._spot(frm)  # every directory held before the first file moves: a link there moves nothing
        self.doing = f"mark {self._staged.directory} as a restore under way"
        _write_mark(self._staged.reach, UNDER_WAY_MARK, self._under_way(now, aside))
        for frm, to in out:
            self.doing = f"move {frm} aside"
            self._rename(frm, to)
        for frm, to in into:
            self.doing = f"put the backup's {to.relative_to(data_dir)} in place"
            self._rename(frm, to)
        self.doing = f"sync the directories of {data_dir} to disk"
        for fd in self._directories():
            os.fsync(fd)
        return aside

    def _new_aside(self, data: held_tree.HeldTree, now: datetime) -> Path:
        """A new `.pre-restore-<stamp>` directory, held: a second restore within the same second gets `-2`."""
        stamp = f"{_ASIDE_PREFIX}{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        data_fd = data.dir(())
        for n in range(1, 1000):
            name = stamp if n == 1 else f"{stamp}-{n}"
            try:
                with held_dir.named(data.top / name):
                    os.mkdir(name, 0o700, dir_fd=data_fd)
            except FileExistsError:
                continue
            self._aside = data.top / name
            self._aside_fd = data.adopt((name,), owner=self._owner)
            return self._aside
        raise BackupError(f"backup restore: {data.top} holds 999 {stamp} directories; move the old ones away")

    def _spot(self, path: Path) -> _Spot:
        """`path` as its directory, held, and its name there."""
        assert self._data is not None and self._staging is not None
        tree = self._staging if path.is_relative_to(self._staging.top) else self._data
        parts = tree.parts(path.parent)
        tree.dir(parts)
        return tree, parts, path.name

    def _under_way(self, now: datetime, aside: Path) -> str:
        staged = self._staged
        return (
            f"backup restore: {staged.path} into {staged.data_dir}, started {now.astimezone(UTC).isoformat()}, was "
            f"cut short (a power cut, a kill) while it moved files, if this file is still here: the data directory "
            f"may hold files from before and after it. The previous files are under {aside}, the backup's not yet "
            f"in place under {staged.directory}; {staged.config_path} may still be the previous one (its copy is "
            f"under {aside}). Restore again, or put the previous files back by hand, before starting the services."
        )

    def finished(self) -> None:
        """Every file in place, the config too: the mark of a restore under way removed, and those of earlier
        restores that did not finish, which this one replaced whole (each directory then goes with the leftovers).
        Never raises: the restore is done, and a mark that stays only asks for a look (and keeps backups off).
        Each removal is synced: a mark back after a power cut would refuse the backups of a whole box."""
        synced = [self._staged.reach]
        with contextlib.suppress(OSError):
            Path(self._staged.reach, UNDER_WAY_MARK).unlink()
        for earlier in unfinished_restores(self._staged.data_dir):
            synced.append(earlier.parent)
            try:
                for name in (KEPT_MARK, UNDER_WAY_MARK):
                    with contextlib.suppress(FileNotFoundError):
                        (earlier.parent / name).unlink()
            except OSError as exc:  # a root restore's, and this one runs as the service user
                log.warning(
                    "backup restore: cannot remove %s, got %s; this restore replaced the data directory, so it no "
                    "longer holds: delete %s as root, or no backup is taken",
                    earlier,
                    exc.strerror or exc,
                    earlier.parent,
                )
                continue
            log.warning("backup restore: %s no longer holds: this restore replaced the data directory", earlier)
        for directory in synced:
            with contextlib.suppress(OSError):  # best effort: a mark back after a power cut asks for a look, no more
                fsync_dir(directory)

    def _rename(self, frm: Path, to: Path) -> None:
        src, dst = self._spot(frm), self._spot(to)
        self._moved.append((frm, to, src, dst))
        os.rename(src[2], dst[2], src_dir_fd=src[0].dir(src[1]), dst_dir_fd=dst[0].dir(dst[1]))
        self.check()

    def check(self) -> None:
        """held_dir.Replaced if a directory the swap holds lost its name (a link the service user put there)."""
        for tree in (self._data, self._staging):
            if tree is not None:
                tree.check()

    def _directories(self) -> list[int]:
        fds = {spot[0].dir(spot[1]) for *_, src, dst in self._moved for spot in (src, dst)}
        if self._data is not None:
            fds |= {self._data.dir(parts[:-1]) for parts in self._data.made}
        return sorted(fds)

    def undo(self, why: str) -> None:
        """Every rename taken back, newest first, and what the swap made removed; RestoreIncomplete, naming
        where each part is, if a file does not go back."""
        stuck: list[str] = []
        for frm, to, (stree, sparts, sname), (dtree, dparts, dname) in reversed(self._moved):
            src_fd, dst_fd = stree.dir(sparts), dtree.dir(dparts)
            if not held_tree.there(dst_fd, dname) and held_tree.there(src_fd, sname):
                continue  # recorded, not done: neither target existed before the swap (`_plan`, `_check_targets`)
            try:
                os.rename(dname, sname, src_dir_fd=dst_fd, dst_dir_fd=src_fd)
            except OSError as exc:
                stuck.append(f"{self._staged.shown(to)} for {self._staged.shown(frm)}, got {exc.strerror or exc}")
        if self._data is not None:
            self._data.remove_made()
        for fd in self._directories():
            with contextlib.suppress(OSError):  # best effort: what matters is that the files are back
                os.fsync(fd)
        if stuck:
            self._staged.keep = True
            data_dir = self._staged.data_dir
            message = (
                f"backup restore: {why}, and {len(stuck)} file(s) did not go back, the first {stuck[0]}; the data "
                f"directory {data_dir} is part restored, {self._staged.config_path} is unchanged: the previous files "
                f"are under {self._aside}, the rest of the backup's under {self._staged.directory}; put the previous "
                "ones back by hand (or restore again) before starting the services; no backup is taken until then"
            )
            _mark_kept(self._staged, message)
            raise RestoreIncomplete(message) from None
        with contextlib.suppress(OSError):  # every file back, the box whole: a mark that stays only asks for a look
            Path(self._staged.reach, UNDER_WAY_MARK).unlink()
        self._clear_aside()

    def _clear_aside(self) -> None:
        """What the swap made in the aside directory removed, and nothing else: the config's copy, then the
        directories left empty. A file still there is one of the box's: it stays, and so does the directory."""
        if self._aside is None or self._aside_fd is None or self._data is None:
            return
        if self._config_copy is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._config_copy.name, dir_fd=self._aside_fd)
        # fwalk opens each directory O_NOFOLLOW from its parent's descriptor: a link inside is neither entered nor
        # removed (rmdir refuses one)
        for _, dirs, _, root_fd in os.fwalk(dir_fd=self._aside_fd, topdown=False):
            for name in dirs:
                with contextlib.suppress(OSError):  # not empty: a file no record names, kept
                    os.rmdir(name, dir_fd=root_fd)
        if self._data.holds((self._aside.name,)):
            with contextlib.suppress(OSError):
                os.rmdir(self._aside.name, dir_fd=self._data.dir(()))
        if held_tree.there(self._data.dir(()), self._aside.name):
            log.warning(
                "backup restore: %s kept, it holds files of %s the restore had no record of; look at them before "
                "deleting it",
                self._aside,
                self._staged.data_dir,
            )

    def close(self) -> None:
        for tree in (self._data, self._staging):
            if tree is not None:
                tree.close()
        self._data = self._staging = None


def _copy_config(config_path: Path, aside_fd: int, copy: Path, owner: os.stat_result) -> None:
    """`config_path` copied as `copy` into the aside directory (held open as `aside_fd`), with its mode and times,
    handed to `owner` under root: made O_EXCL|O_NOFOLLOW there, never written through a link."""
    with (
        open(config_path, "rb") as src,
        held_dir.new_file(aside_fd, copy.name, where=copy, owner=owner) as dst,
    ):
        shutil.copyfileobj(src, dst)
        dst.flush()
        st = os.fstat(src.fileno())
        os.fchmod(dst.fileno(), stat.S_IMODE(st.st_mode))
        os.utime(dst.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))


def _swap_replaced(exc: held_dir.Replaced, data_dir: Path, config_path: Path) -> BackupError:
    """What a technician reads when the service user's side put a link in place of a directory the swap used."""
    moved = f" (that directory is now {exc.now_at})" if exc.now_at is not None else ""
    return BackupError(
        f"backup restore: the directory {exc.path} was replaced while the restore ran, got {exc.what}; nothing "
        f"restored, nothing moved or written through it: every file is back where it was{moved} and {config_path} "
        f"is unchanged: a process with the service user's rights changes the data directory {data_dir}: find it, "
        f"put {exc.path} right and restore again"
    )


def _write_mark(directory: Path, name: str, text: str) -> None:
    """A mark (`KEPT_MARK`, `UNDER_WAY_MARK`) written into a staging directory and synced, directory too:
    after a power cut it is there if any rename after it is."""
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as f:
        f.write(f"{text}\n\nDelete this directory once the data directory is right again.\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(directory)


def _mark_kept(staged: Staged, message: str) -> None:
    """`KEPT_MARK` written into the staging directory the technician needs, so that no later run removes it."""
    try:
        _write_mark(staged.reach, KEPT_MARK, message)
    except OSError as exc:  # a full disk: the directory is still named in the message, and still marked
        log.warning(
            "backup restore: cannot mark %s as kept, got %s; its %s mark keeps it all the same",
            staged.directory,  # its name, not the descriptor's /proc/self/fd/<n>, gone with this process
            exc.strerror or exc,
            UNDER_WAY_MARK,
        )


def _plan(staged: Staged, aside: Path, exclude: Path | None) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """The renames of a restore: the current files (and their sqlite side files) into `aside`, then the staged ones
    into their place."""
    data_dir, manifest = staged.data_dir, staged.manifest
    include_key = any(m.name == f"{DATA_DIR}/{KEY_FILE}" for m in manifest.members)
    replaced = set(data_files(data_dir, exclude=exclude, include_secret_key=include_key))
    into: list[tuple[Path, Path]] = []
    for m in manifest.members:
        if not m.name.startswith(f"{DATA_DIR}/"):
            continue  # the config: written by `install` once the data is in place
        rel = Path(*PurePosixPath(m.name).relative_to(DATA_DIR).parts)
        # a backup from before key files stayed on the box brings them back: the box's own go aside too;
        # and the side files of a store deleted by hand would be read as the backup's store's own
        replaced.add(rel)
        into.append((staged.files[m.name], data_dir / rel))
    out = [
        (data_dir / f"{rel}{suffix}", aside / DATA_DIR / f"{rel}{suffix}")
        for rel in sorted(replaced)
        for suffix in _SIDE_SUFFIXES
        if os.path.lexists(data_dir / f"{rel}{suffix}")
    ]
    return out, into
