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
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import io
import json
import logging
import os
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
from typing import Any

from gateway import __version__
from gateway.errors import GatewayError
from gateway.secrets import KEY_FILE
from gateway.storage.files import fsync_dir, write_atomic

log = logging.getLogger("gateway.backup")

MANIFEST = "MANIFEST.json"
FORMAT = 1
PREFIX = "edgegw-"
SUFFIX = ".tar.gz"
_SQLITE_MAGIC = b"SQLite format 3\x00"
# a config apply holds the lock for a reload at most; one stuck longer is for someone to look at
CONFIG_LOCK_WAIT_S = 30.0
_LOCK_POLL_S = 0.05
# Never in a backup: sqlite's side files (the snapshot holds their content), the buffer's disk
# reserve, locks, sockets, temporary and damaged files moved aside, the status the gateway rewrites.
_SKIP_SUFFIXES = ("-wal", "-shm", "-journal", ".reserve", ".lock", ".sock", ".tmp", ".part")
_SKIP_NAMES = frozenset({"status.json", "backup-status.json"})
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


class BackupError(GatewayError):
    code = "backup_error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    name: str  # inside the archive: "config/<file>" or "data/<relative path>"
    size: int
    sha256: str
    sqlite: bool
    schema_version: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    gateway_id: str
    edgegw_version: str
    created_at: datetime
    members: tuple[Member, ...]

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "gateway_id": self.gateway_id,
            "edgegw_version": self.edgegw_version,
            "created_at": self.created_at.astimezone(UTC).isoformat(),
            "members": [
                {
                    "name": m.name,
                    "size": m.size,
                    "sha256": m.sha256,
                    "sqlite": m.sqlite,
                    "schema_version": m.schema_version,
                }
                for m in self.members
            ],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, where: str, raw: bytes) -> Manifest:
        try:
            doc: dict[str, Any] = json.loads(raw)
            if doc.get("format") != FORMAT:
                raise BackupError(f"{where}: unknown backup format, got {doc.get('format')!r}; expected {FORMAT}")
            return cls(
                gateway_id=str(doc["gateway_id"]),
                edgegw_version=str(doc["edgegw_version"]),
                created_at=datetime.fromisoformat(doc["created_at"]),
                members=tuple(
                    Member(
                        name=str(m["name"]),
                        size=int(m["size"]),
                        sha256=str(m["sha256"]),
                        sqlite=bool(m["sqlite"]),
                        schema_version=None if m["schema_version"] is None else int(m["schema_version"]),
                    )
                    for m in doc["members"]
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(
                f"{where}: {MANIFEST} is not a backup manifest, got {type(exc).__name__}: {exc}"
            ) from None


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
                name.startswith(".")
                or name in _SKIP_NAMES
                or name.endswith(_SKIP_SUFFIXES)
                or ".corrupt-" in name
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


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[Manifest, Path]]:
    """Verify `path` completely and yield its manifest and a directory holding its members."""
    where = f"backup {path}"
    with tempfile.TemporaryDirectory(prefix="edgegw-verify-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            with tarfile.open(path, mode="r:gz") as tar:
                names = tar.getnames()
                if not names or names[0] != MANIFEST:
                    raise BackupError(
                        f"{where}: not an edgegw backup, got no {MANIFEST} first; pick a file `edgegw backup list` shows"
                    )
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise BackupError(
                f"{where}: the file is damaged or truncated, got {type(exc).__name__}: {exc}; use another generation"
            ) from None
        manifest = Manifest.from_json(where, (tmp / MANIFEST).read_bytes())
        listed = {m.name for m in manifest.members}
        extra = sorted(set(names) - listed - {MANIFEST})
        if extra:
            raise BackupError(
                f"{where}: members the manifest does not list, got {', '.join(extra)}; the file was altered"
            )
        for m in manifest.members:
            file = tmp / PurePosixPath(m.name)
            if not file.is_file():
                raise BackupError(f"{where}: {m.name} is missing; the file is incomplete, use another generation")
            if file.stat().st_size != m.size or _sha256(file) != m.sha256:
                raise BackupError(
                    f"{where}: {m.name} does not match its checksum; the file is damaged, use another generation"
                )
            if m.sqlite:
                _check_sqlite(where, m.name, file)
        yield manifest, tmp


def _check_sqlite(where: str, name: str, file: Path) -> None:
    try:
        db = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{where}: {name} is not a usable sqlite file, got {exc}; use another generation") from None
    if rows != [("ok",)]:
        raise BackupError(f"{where}: {name} fails sqlite's quick_check, got {rows[0][0]}; use another generation")


def verify(path: Path) -> Manifest:
    """Read the whole file, check every checksum and every sqlite snapshot; BackupError saying what is wrong."""
    with _opened(path) as (manifest, _):
        return manifest


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
    """`config_path` replaced by `src` through a rename, keeping its mode and, under root, its owner.

    The file is staged beside it under a name of its own with the mode and owner already right, then
    renamed over it: a power cut leaves the old config or the new one, and never, even for a moment,
    one the gateway cannot read (root:edgegw 0660 made root:root by `sudo edgegw backup restore`).
    The caller holds the config lock, so no other restore stages under the same name.
    """
    try:
        old: os.stat_result | None = config_path.stat()
    except FileNotFoundError:
        old = None
    staged = config_path.with_name(f".{config_path.name}.restore")
    write_atomic(staged, src.read_bytes(), 0o600 if old is None else stat.S_IMODE(old.st_mode), durable=True)
    try:
        if old is not None and os.geteuid() == 0:
            os.chown(staged, old.st_uid, old.st_gid)
        os.replace(staged, config_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        raise
    fsync_dir(config_path.parent)


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

    Refused: a damaged file, another gateway's backup without `force`, a backup from a newer edgegw,
    the config lock held longer than `lock_wait_s`. The config is replaced first, whole: a failure
    there leaves every file as it was. The current files are moved aside into
    `<data_dir>/.pre-restore-<stamp>/`, not deleted; the box's `KEPT_ON_BOX` key files stay in place
    unless the backup brings its own (one made before they stayed).
    """
    with _opened(path) as (manifest, tmp):
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
        owner = data_dir.stat()
        with _config_locked(config_path, owner, lock_wait_s):
            aside = data_dir / f".pre-restore-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
            aside.mkdir(mode=0o700, parents=True)
            for m in manifest.members:
                if m.name.startswith("config/"):
                    if config_path.exists():
                        shutil.copy2(config_path, aside / config_path.name)
                    try:
                        _replace_config(tmp / PurePosixPath(m.name), config_path)
                    except OSError as exc:
                        shutil.rmtree(aside)
                        raise BackupError(
                            f"backup restore: {config_path} not written, got {exc.strerror or exc}; nothing "
                            f"restored, every file is as it was: make room under {config_path.parent} (or give "
                            "write access to it) and restore again"
                        ) from None
            _restore_data(manifest, tmp, data_dir, owner, aside, exclude)
        log.warning("restored %s into %s; the previous files are in %s", path, data_dir, aside)
        return aside


def _restore_data(
    manifest: Manifest, tmp: Path, data_dir: Path, owner: os.stat_result, aside: Path, exclude: Path | None
) -> None:
    """The data directory's files moved aside and the backup's put in their place."""
    include_key = any(m.name == f"data/{KEY_FILE}" for m in manifest.members)
    replaced = set(data_files(data_dir, exclude=exclude, include_secret_key=include_key))
    for m in manifest.members:
        # a backup from before key files stayed on the box brings them back: the box's own go aside too
        if m.name.startswith("data/"):
            rel = Path(*PurePosixPath(m.name).relative_to("data").parts)
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
        if not m.name.startswith("data/"):
            continue  # the config: replaced already
        src = tmp / PurePosixPath(m.name)
        inner = PurePosixPath(m.name).relative_to("data")
        target = data_dir / Path(*inner.parts)
        made = _private_dirs(target.parent)
        with src.open("rb") as data, _private_file(target) as out:
            shutil.copyfileobj(data, out, 1 << 20)
        # the buffer is group-readable for the web UI (buffer/schema.py); every other store is owner-only
        if inner.name == "buffer.db":
            os.chmod(target, 0o640)
        _give_to(owner, [*made, target])  # root restores for the service user that owns the data directory
