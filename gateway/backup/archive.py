"""One backup file: make it (sqlite stores through SQLite's online backup API), verify it, rotate, copy, restore.

A backup is a gzip'd tar named `edgegw-<gateway id>-<UTC stamp>.tar.gz` holding `MANIFEST.json`
(gateway id, edgegw version, time, each member's size, SHA-256 and schema version), the config file
under `config/` and the data directory under `data/`: every sqlite store as a consistent snapshot,
the secret store still encrypted (its key only when `include_secret_key`), the audit log's head.
Key material kept in files of its own stays on the box (`KEPT_ON_BOX`): a backup, and every copy of
it on the share, must not open this box's lockers or impersonate its web UI; a restore leaves those
files in place. It is written as `.part`, fsync'd and renamed, so a file with the final name is whole.
Every file and directory it makes is 0600/0700 whatever the umask (`sudo` from a root shell has 022).
A restore holds the lock every config apply takes (gateway/control/ops_config.py) while it replaces
the config and the stores, and replaces the config by a rename, keeping its mode and owner: a power
cut leaves the old file or the new one, never a part of one.

The snapshot reads each store through its own read-only connection in one backup step: in WAL mode
a reader never blocks the writer, so readings keep being committed while the buffer is copied (a
stepped backup would restart each time the gateway commits, and never end at a high rate).

Verifying trusts nothing in the file (it comes back from a share, and root restores it), and runs
before the gateway is stopped. It reads MANIFEST.json first (bounded) and checks it and its names
(manifest.py), then where each data member would land in the data directory (inside it, through no
symbolic link, onto no directory), then that the extraction directory has room for what the manifest
declares. Only then does it stream the members, one at a time: a member the manifest does not list,
that is no regular file or whose tar size differs from the declared one is refused before a byte of
it is written, and no more than the declared size is ever read. The decompressed stream itself is
capped at what the manifest declares plus the tar headers' room, so neither a gzip bomb nor an
oversized tar header (tarfile reads pax and long-name headers into memory whole) gets past it. Every
member that is sqlite by its first bytes, its `.db` name or the manifest passes quick_check; before a
restore the backup's config passes check-config's rules too. Members are written under names of
verify's own, never under theirs.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import gzip
import hashlib
import io
import logging
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from gateway import __version__
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
_SQLITE_MAGIC = b"SQLite format 3\x00"
# a config apply holds the lock for a reload at most; one stuck longer is for someone to look at
CONFIG_LOCK_WAIT_S = 30.0
_LOCK_POLL_S = 0.05
# What verify reads and writes, beyond what the manifest declares: a member's tar headers (its own,
# and pax or long-name ones for a name of up to 4096 bytes), and the end of the archive with its
# padding. The extraction directory keeps FREE_MARGIN_BYTES free for the rest of the box.
_HEADER_ROOM = 16 << 10
_END_ROOM = 4 * tarfile.RECORDSIZE
FREE_MARGIN_BYTES = 16 << 20
_COPY_BLOCK = 1 << 20
_PATH_MAX_BYTES = 4095
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


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(16) == _SQLITE_MAGIC


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


def _snapshot(src: Path, dst: Path) -> int:
    """A consistent copy of a live sqlite file; returns its schema version."""
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
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_name(gateway_id: str, now: datetime) -> str:
    return f"{PREFIX}{gateway_id}-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def create(
    *,
    data_dir: Path,
    config_path: Path,
    gateway_id: str,
    out_dir: Path,
    now: datetime,
    include_secret_key: bool = False,
) -> Path:
    """Write one backup file into `out_dir` (mode 0600; the directories it makes 0700) and return its path."""
    made = _private_dirs(out_dir)
    final = out_dir / file_name(gateway_id, now)
    part = final.with_name("." + final.name + ".part")
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staging-") as staging_name:
        staging = Path(staging_name)
        members: list[tuple[Member, Path]] = []
        shutil.copyfile(config_path, staging / "config")
        members.append((_member(f"config/{config_path.name}", staging / "config", None), staging / "config"))
        for n, rel in enumerate(data_files(data_dir, exclude=out_dir, include_secret_key=include_secret_key)):
            src = data_dir / rel
            copy = staging / f"{n}"
            try:
                if _is_sqlite(src):
                    version: int | None = _snapshot(src, copy)
                else:
                    shutil.copyfile(src, copy)
                    version = None
            except FileNotFoundError:
                continue  # removed while we walked (a temporary file): not part of the state
            except sqlite3.Error as exc:
                raise BackupError(
                    f"backup: cannot snapshot {src}, got {exc}; check the file with `edgegw buffer check`"
                ) from exc
            members.append((_member(f"data/{rel.as_posix()}", copy, version), copy))
        manifest = Manifest(
            gateway_id=gateway_id,
            edgegw_version=__version__,
            created_at=now,
            members=tuple(m for m, _ in members),
        )
        # level 1: CPU is the data path's; the tar is closed (gzip trailer written) before the fsync
        with _private_file(part) as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
            _add_bytes(tar, MANIFEST, manifest.to_json(), now)
            for member, copy in members:
                tar.add(copy, arcname=member.name, recursive=False, filter=_plain)
    os.replace(part, final)
    fsync_dir(out_dir)
    _give_to(data_dir.stat(), [*made, out_dir, final])
    log.info("backup written: %s (%d files, %d bytes)", final, len(members), final.stat().st_size)
    return final


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


def _private_dirs(path: Path) -> list[Path]:
    """Make `path` and its missing parents 0700 whatever the umask; returns those it made, top first.

    mkdir's mode is narrowed by the umask and parents=True ignores it, hence one by one and a chmod.
    A directory that exists keeps its mode: a share's mount point is its admin's to set.
    """
    missing: list[Path] = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    made: list[Path] = []
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue  # made meanwhile by another run, with this same function
        os.chmod(d, 0o700)
        made.append(d)
    return made


@contextlib.contextmanager
def _private_file(path: Path) -> Iterator[io.BufferedWriter]:
    """`path` opened for writing, mode 0600 before a byte is written, fsync'd on leaving.

    O_CREAT's mode is narrowed by the umask and applies to a new file only: a `.part` left by an
    older release (0644 under umask 022) would keep its mode through O_TRUNC, hence the fchmod.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def _give_to(owner: os.stat_result, paths: list[Path]) -> None:
    """Root made `paths` for the service user (`sudo edgegw backup now`): the nightly run must rotate them."""
    if os.geteuid() != 0:
        return
    for path in paths:
        try:
            os.chown(path, owner.st_uid, owner.st_gid)
        except PermissionError as exc:  # a share that maps root (NFS root_squash, SMB): its owner is the server's
            log.warning(
                "backup: cannot hand %s to uid %d, got %s; the nightly run may not rotate it", path, owner.st_uid, exc
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Unpacked:
    manifest: Manifest
    files: dict[str, Path]  # member name -> its checked copy, under a name of verify's own
    config: GatewayConfig | None  # the backup's config, parsed: only when verified for a restore


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


@contextlib.contextmanager
def _opened(path: Path, *, into: Path | None = None) -> Iterator[_Unpacked]:
    """Verify `path` completely (module docstring) and yield its manifest and its members' checked copies.

    With `into`, the data directory a restore writes to: also where each data member lands there, and
    the backup's config through check-config's rules.
    """
    where = f"backup {path}"
    with tempfile.TemporaryDirectory(prefix="edgegw-verify-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                stream = _Capped(gz, where, _HEADER_ROOM + MANIFEST_MAX_BYTES + _END_ROOM)
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    manifest = _read_manifest(where, tar)
                    stream.after = MANIFEST
                    check_names(where, manifest)
                    if into is not None:
                        _check_targets(where, manifest, into)
                    _check_room(where, manifest, tmp)
                    stream.limit = (
                        stream.consumed + sum(_HEADER_ROOM + _blocks(m.size) for m in manifest.members) + _END_ROOM
                    )
                    files = _unpack(where, tar, stream, manifest, tmp)
                while stream.read(_COPY_BLOCK):  # to gzip's end: its checksum and length, and nothing after
                    pass
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise BackupError(
                f"{where}: the file is damaged or truncated, got {type(exc).__name__}: {exc}; use another generation"
            ) from None
        config = None if into is None else _check_config(where, manifest.config.name, files[manifest.config.name])
        yield _Unpacked(manifest=manifest, files=files, config=config)


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


def _check_room(where: str, manifest: Manifest, tmp: Path) -> None:
    """The extraction directory holds every declared byte with FREE_MARGIN_BYTES to spare, or nothing is extracted."""
    declared = sum(m.size for m in manifest.members)
    st = os.statvfs(tmp)
    free = st.f_bavail * st.f_frsize
    if declared + FREE_MARGIN_BYTES > free:
        raise BackupError(
            f"{where}: its {len(manifest.members)} files need {declared} bytes ({_mib(declared)}) and a "
            f"{_mib(FREE_MARGIN_BYTES)} margin in {tmp.parent} to be checked, got {free} bytes ({_mib(free)}) free "
            f"there; nothing was extracted: free space there or point TMPDIR at a larger directory"
        )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def _unpack(where: str, tar: tarfile.TarFile, stream: _Capped, manifest: Manifest, tmp: Path) -> dict[str, Path]:
    """Each member checked and copied into `tmp`: one for one with the manifest, never past its declared size."""
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
        files[info.name] = _extract(where, m, data, tmp / f"{len(files):05d}")
        stream.after = f"member {info.name!r}"
    for m in manifest.members:
        if m.name not in files:
            raise BackupError(f"{where}: {m.name} is missing; the file is incomplete, use another generation")
    return files


def _extract(where: str, m: Member, data: IO[bytes], file: Path) -> Path:
    """`m`'s bytes into `file`, at most its declared size, checked against its checksum and, if sqlite, quick_check."""
    digest = hashlib.sha256()
    head = b""
    left = m.size
    try:
        out = open(file, "xb", buffering=0)  # noqa: SIM115 - closed below; writes must tell a full disk from damage
    except OSError as exc:
        raise _no_room(where, m, file, exc) from None
    with out:
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
                raise _no_room(where, m, file, exc) from None
    if digest.hexdigest() != m.sha256:
        raise BackupError(f"{where}: {m.name} does not match its checksum; the file is damaged, use another generation")
    # whatever the manifest says: a store it calls no sqlite would otherwise restore unchecked
    if m.sqlite or head == _SQLITE_MAGIC or m.name.endswith(".db"):
        _check_sqlite(where, m.name, file)
    return file


def _no_room(where: str, m: Member, file: Path, exc: OSError) -> BackupError:
    return BackupError(
        f"{where}: cannot extract {m.name} into {file.parent.parent} to check it, got {exc.strerror or exc}; "
        "nothing was restored: free space there or point TMPDIR at a larger directory"
    )


def _check_sqlite(where: str, name: str, file: Path) -> None:
    try:
        db = sqlite3.connect(f"{file.as_uri()}?mode=ro", uri=True)
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


def verify(path: Path) -> Manifest:
    """Read the whole file, check every name, size, checksum and sqlite member; BackupError saying what is wrong."""
    with _opened(path) as unpacked:
        return unpacked.manifest


def verify_restore(path: Path, *, data_dir: Path, config_path: Path, gateway_id: str, force: bool = False) -> Manifest:
    """`verify`, and every refusal of `restore` that needs no lock: run it before stopping the gateway.

    Beyond `restore` it refuses a backup whose config names another data directory than `data_dir`:
    the restored gateway would run on that one, not on the restored data. `force` does not lift it.
    """
    with _opened(path, into=data_dir) as unpacked:
        _refuse_another_box(path, unpacked.manifest, gateway_id, force)
        assert unpacked.config is not None  # verified `into` a data directory: the config was parsed
        named = unpacked.config.gateway.data_dir
        if Path(named).resolve() != data_dir.resolve():
            raise BackupError(
                f'backup {path}: {unpacked.manifest.config.name} has gateway.data_dir = "{named}", got this '
                f"restore's data directory {data_dir} (gateway.data_dir of {config_path}); the restored gateway would "
                f'not find the restored data: nothing was stopped or changed: set gateway.data_dir = "{named}" in '
                f"{config_path} and restore again"
            )
        return unpacked.manifest


def list_backups(out_dir: Path) -> list[Path]:
    """The backup files in `out_dir`, oldest first (the names sort by time)."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX))


def rotate(out_dir: Path, generations: int) -> list[Path]:
    """Delete all but the newest `generations` backup files; returns what it deleted."""
    backups = list_backups(out_dir)
    old = backups[: max(0, len(backups) - generations)]
    for path in old:
        path.unlink()
        log.info("backup rotated out: %s", path)
    return old


def copy_verified(path: Path, dest_dir: Path) -> Path:
    """Copy a backup to another directory (a mounted share) and verify the copy there, not the source.

    The copy is 0600 and the directories made for it 0700 whatever the umask; under root they are
    handed to the owner of `path` (the service user), as `create` does.
    """
    made = _private_dirs(dest_dir)
    final = dest_dir / path.name
    part = dest_dir / ("." + path.name + ".part")
    with path.open("rb") as src, _private_file(part) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if _sha256(part) != _sha256(path):
        part.unlink()
        raise BackupError(f"backup copy {final}: the copy differs from {path}; check the share {dest_dir}")
    os.replace(part, final)
    _give_to(path.stat(), [*made, final])
    verify(final)
    return final


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
        _give_to(owner, [lock])  # made by root, it must still open (O_RDWR) for the gateway's next apply
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
            f"backup {path}: taken by gateway {manifest.gateway_id!r}, got this gateway {gateway_id!r}; "
            "pass --force to restore another box's data onto this one"
        )
    if _version_tuple(manifest.edgegw_version) > _version_tuple(__version__):
        raise BackupError(
            f"backup {path}: written by edgegw {manifest.edgegw_version}, newer than this {__version__}; "
            "a downgrade is refused: install that version first"
        )


def restore(
    path: Path,
    *,
    data_dir: Path,
    config_path: Path,
    gateway_id: str,
    now: datetime,
    force: bool = False,
    exclude: Path | None = None,
    lock_wait_s: float = CONFIG_LOCK_WAIT_S,
) -> Path:
    """Put the backup's files in place of the current ones (the gateway must be stopped); returns where the old ones went.

    Refused before anything is moved: a file `verify` refuses, a data member that would land outside
    `data_dir` or onto a directory, a config that fails check-config, another gateway's backup without
    `force`, a backup from a newer edgegw, the config lock held longer than `lock_wait_s`. The config
    is replaced first, whole: a failure there leaves every file as it was. The current files are moved
    aside into `<data_dir>/.pre-restore-<stamp>/`, not deleted; the box's `KEPT_ON_BOX` key files stay
    in place unless the backup brings its own (one made before they stayed). Whether the config names
    `data_dir` is `verify_restore`'s to check: restore also fills a scratch or replacement directory.
    """
    with _opened(path, into=data_dir) as unpacked:
        manifest = unpacked.manifest
        _refuse_another_box(path, manifest, gateway_id, force)
        owner = data_dir.stat()
        with _config_locked(config_path, owner, lock_wait_s):
            aside = _aside_dir(data_dir, now)
            if config_path.exists():
                shutil.copy2(config_path, aside / config_path.name)
            try:
                _replace_config(unpacked.files[manifest.config.name], config_path)
            except OSError as exc:
                shutil.rmtree(aside)
                raise BackupError(
                    f"backup restore: {config_path} not written, got {exc.strerror or exc}; nothing "
                    f"restored, every file is as it was: make room under {config_path.parent} (or give "
                    "write access to it) and restore again"
                ) from None
            _restore_data(manifest, unpacked.files, data_dir, owner, aside, exclude)
        log.warning("restored %s into %s; the previous files are in %s", path, data_dir, aside)
        return aside


def _aside_dir(data_dir: Path, now: datetime) -> Path:
    """A new `.pre-restore-<stamp>` directory: a second restore within the same second gets `-2`, not an error."""
    stamp = f".pre-restore-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    for n in range(1, 1000):
        aside = data_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            aside.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            continue
        return aside
    raise BackupError(f"backup restore: {data_dir} holds 999 {stamp} directories; move the old ones away")


def _restore_data(
    manifest: Manifest,
    files: dict[str, Path],
    data_dir: Path,
    owner: os.stat_result,
    aside: Path,
    exclude: Path | None,
) -> None:
    """The data directory's files moved aside and the backup's (checked copies in `files`) put in their place."""
    include_key = any(m.name == f"{DATA_DIR}/{KEY_FILE}" for m in manifest.members)
    replaced = set(data_files(data_dir, exclude=exclude, include_secret_key=include_key))
    for m in manifest.members:
        # a backup from before key files stayed on the box brings them back: the box's own go aside too
        if m.name.startswith(f"{DATA_DIR}/"):
            rel = Path(*PurePosixPath(m.name).relative_to(DATA_DIR).parts)
            if (data_dir / rel).is_file():
                replaced.add(rel)
    for rel in sorted(replaced):
        for suffix in ("", "-wal", "-shm"):
            current = data_dir / (str(rel) + suffix)
            if current.exists():
                target = aside / "data" / (str(rel) + suffix)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(current, target)
    for m in manifest.members:
        if not m.name.startswith(f"{DATA_DIR}/"):
            continue  # the config: replaced already
        inner = PurePosixPath(m.name).relative_to(DATA_DIR)
        target = data_dir / Path(*inner.parts)
        made = _private_dirs(target.parent)
        with files[m.name].open("rb") as data, _private_file(target) as out:
            shutil.copyfileobj(data, out, 1 << 20)
        # the buffer is group-readable for the web UI (buffer/schema.py); every other store is owner-only
        if inner.name == "buffer.db":
            os.chmod(target, 0o640)
        _give_to(owner, [*made, target])  # root restores for the service user that owns the data directory
