"""Opens the outbox database file: pragmas, schema, integrity check, and salvaging a damaged file.

Opening writes nothing when nothing has to change (a file of this schema version with every table),
so the gateway starts on a full disk and can deliver the backlog that filled it (see space.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.buffer import location, salvage
from gateway.buffer.config import Durability
from gateway.buffer.space import is_disk_full, with_room
from gateway.errors import BufferError, BufferUnavailable
from gateway.logs import component_logger
from gateway.storage.files import fsync_dir, fsync_path, wal_mode
from gateway.storage.schema import migrate, read_version

log = component_logger(__name__, "buffer")


# The page size of a new file. Each commit writes every page it touched to the -wal in whole (a
# group's rows, the lane index's leaf, the AUTOINCREMENT counter): with SQLite's 4 KiB a commit of a
# few readings wrote ~16 KiB, 9 KB a reading at 500/s, which wears an SD card out in months. 1 KiB
# pages write a quarter of that, and cost the drain rate little (measured, see README Performance).
PAGE_SIZE = 1024
# The -wal is checkpointed into the file once it holds this many bytes (SQLite's default: 1,000
# pages, 4 MiB of 4 KiB pages): a checkpoint writes each page the -wal holds once, however often it
# was committed, so hot pages (the AUTOINCREMENT counter, the index's last leaf, the cursors) and the
# pages that delivered rows free and new rows take again reach the file once per WAL_BYTES. At
# 5,000 readings/s the checkpoints wrote ~110 bytes a reading with 4 MiB, ~30 with 16 MiB (the
# outbox alone: 573 -> 550 -> 525 bytes a reading for 4, 8, 16 MiB). 16 MiB stays well inside
# space.py's CAREFUL_BELOW (32 MiB), below which every commit is checkpointed at once anyway.
WAL_BYTES = 16 * 1024 * 1024


# SQLite's page cache for the gateway's connection, in KiB (see connect()).
CACHE_KIB = 2048


def wal_pages(page_size: int) -> int:
    """`PRAGMA wal_autocheckpoint` for a file of `page_size`: WAL_BYTES worth of pages."""
    return max(1, WAL_BYTES // page_size)


# seq is AUTOINCREMENT on purpose: a plain rowid reuses max(seq)+1 once the newest rows are deleted,
# and an uplink cursor already past that value would silently skip the new rows.
# Rows are read per lane in seq order; the lane index holds (lane, rowid), so those reads never sort.
_DDL = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    lane INTEGER NOT NULL,
    entity_id TEXT NOT NULL,
    observed_us INTEGER NOT NULL,
    appended_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    target TEXT
);
CREATE INDEX IF NOT EXISTS outbox_lane ON outbox(lane);
CREATE INDEX IF NOT EXISTS outbox_target ON outbox(target, lane) WHERE target IS NOT NULL;
CREATE TABLE IF NOT EXISTS cursors (
    uplink TEXT NOT NULL,
    lane INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (uplink, lane)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uplink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    lane INTEGER NOT NULL,
    entity_id TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_uplink ON dead_letters(uplink, id);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""


def _compact_bodies(conn: sqlite3.Connection) -> None:
    """Version 2: new rows' bodies take the compact form (records.encode_reading); nothing to rewrite.

    Rows already stored keep their longer form, which decode_reading reads as before. The step
    exists for the version number alone: an edgegw of version 1 cannot decode a compact body
    (it expects "d", "v", "l" and attribute lists), so it must refuse such a file as one written
    by a newer edgegw rather than open it and fail on its first read.
    """


def _bodies_without_columns(conn: sqlite3.Connection) -> None:
    """Version 3: new outbox rows' bodies leave the entity id and the observed time to their columns
    (records.encode_row); nothing to rewrite.

    Rows already stored keep the whole form, which decode_reading reads as before (so do dead
    letters, which have no observed time column). An edgegw of version 2 would fail on the first
    read of such a body (no "i"), so it must refuse the file as written by a newer edgegw.
    """


# gateway.storage.schema: MIGRATIONS[i] takes a file from version i to i + 1. Version 0 files of the
# first release already hold these tables (the DDL is idempotent), so the first step is the DDL itself.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (_DDL, _compact_bodies, _bodies_without_columns)
SCHEMA_VERSION = len(MIGRATIONS)
_SCHEMA_NAMES = frozenset(
    {
        "outbox",
        "outbox_lane",
        "outbox_target",
        "cursors",
        "dead_letters",
        "dead_letters_uplink",
        "counters",
    }
)

# SQLite result codes that mean the file itself is damaged, not that we lack access to it or space:
# garbage in the header or schema page shows as any of these, not only as SQLITE_CORRUPT (compared
# without their extended part: SQLITE_CORRUPT_INDEX is SQLITE_CORRUPT too). The outbox's own SQL is
# valid, so even a plain SQLITE_ERROR ("unsupported file format") is the file's.
_DAMAGED = {
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_NOTADB,
    sqlite3.SQLITE_TOOBIG,
    sqlite3.SQLITE_FORMAT,
    sqlite3.SQLITE_RANGE,
    sqlite3.SQLITE_MISMATCH,
    sqlite3.SQLITE_ERROR,
    sqlite3.SQLITE_SCHEMA,
    sqlite3.SQLITE_INTERNAL,
}


def _damaged(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _DAMAGED


@dataclass(frozen=True, slots=True, kw_only=True)
class Opened:
    conn: sqlite3.Connection
    recovered_from: Path | None  # where a damaged file was moved before a fresh one replaced it, this time


class _Damaged(Exception):
    pass


# Owner read-write, group read: `edgegw web` runs as another user in the gateway's group and reads
# the buffer through BufferReader (mode=ro). SQLite gives the -wal and -shm files the database
# file's mode when it creates them, so setting it on the database file is enough for new ones.
BUFFER_MODE = 0o640


def _group_readable(path: Path) -> None:
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        # metadata only: works on a full disk; a read-only one keeps the mode it has
        with contextlib.suppress(OSError):
            os.chmod(file, BUFFER_MODE)


def connect(path: Path, *, durability: Durability | None, max_page_count: int | None = None) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT ourselves) with the outbox pragmas."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    if durability is not None:  # the gateway's writer, not the CLI looking at a file
        _group_readable(path)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")  # the CLI and the gateway share the file
        if durability is not None:
            # before WAL mode, which fixes the page size of a new file (an existing file keeps its own)
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            wal_mode(conn)  # no write when the file is in WAL mode already
            # a -wal that grew past WAL_BYTES (a large group, a long reader) is cut back at the next checkpoint
            conn.execute(f"PRAGMA journal_size_limit = {WAL_BYTES}")
            conn.execute(f"PRAGMA synchronous = {'FULL' if durability is Durability.FULL else 'NORMAL'}")
            # 2 MiB: reads go in seq order and inserts append, so the pages in use are the index's
            # interior ones and the edges. 16 MiB filled up in any large drain (resident for good)
            # and read a 1M-row backlog no faster (220-310k rows/s either way, measured).
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute("PRAGMA temp_store = MEMORY")
        if max_page_count is not None:
            conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
    except BaseException:
        conn.close()
        raise
    return conn


def _check(conn: sqlite3.Connection) -> None:
    # integrity_check, not quick_check: besides every page, record and the free-list, it checks that
    # each index lists exactly its table's rows. An index page overwritten by a copy of another of its
    # pages (a misdirected write) reads cleanly while it lists other rows than it should: reads by lane
    # would then pass over rows still in the table, for good (tests/buffer/test_salvage.py). Measured
    # on a 1M-row (217 MB) file, cached: 0.49 s against 0.29 s; cold, 5.1 s against 4.5 s (327 MB).
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if _damaged(exc):
            raise _Damaged(str(exc)) from exc
        raise
    if rows != [("ok",)]:
        # one line for the log: SQLite's report spans lines and may list a hundred problems
        problems = [
            line.strip()
            for (text,) in rows
            for line in str(text).splitlines()
            if line.strip() and not line.startswith("*** in database")
        ]
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise _Damaged("integrity_check: " + "; ".join(problems[:3]) + more)


def ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Migrate a new or older file forward; write nothing to a file that has it all."""
    version = read_version(conn)
    if version > SCHEMA_VERSION:
        raise BufferUnavailable(
            f"buffer: cannot open {path}, got schema version {version} written by a newer edgegw "
            f"(this one knows {SCHEMA_VERSION}); run that version, or move the file away to start an empty buffer",
            path=str(path),
        )
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    if version == SCHEMA_VERSION and names >= _SCHEMA_NAMES:
        return
    if version == SCHEMA_VERSION:  # current, but a table or index was dropped by hand: the DDL is idempotent
        conn.executescript(f"BEGIN IMMEDIATE; {_DDL} COMMIT;")
        return
    migrate(conn, path, MIGRATIONS, BufferUnavailable, store="buffer")


def _check_writable(conn: sqlite3.Connection) -> None:
    # SQLite opens a file it may not write read-only without a word; the first commit would fail.
    # Taking the write lock writes nothing, so this holds on a full disk too.
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ROLLBACK")


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


# A salvage is built beside the file under BUILDING and renamed to BUILT once complete and synced; only then
# is the damaged file moved aside and BUILT renamed into its place. A start that finds BUILDING discards
# it (the damaged file is still where it was, and is salvaged again); one that finds BUILT finishes the
# renames. So no start ever opens a half-salvaged file as healthy, and the damaged one is never left behind.
BUILDING = ".salvage"
BUILT = ".salvaged"
# An orphan -wal is read through a one-page file under this name with the -wal linked beside it: SQLite
# deletes a -wal beside a missing or empty file, so neither the orphan's name nor a copy ever meets it.
_WAL_READER = ".salvage-wal-reader"


def _aside_name(path: Path, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    target = _side(path, f".corrupt-{stamp}")
    n = 1
    while any(Path(str(target) + suffix).exists() for suffix in ("", "-wal", "-shm")):
        n += 1
        target = _side(path, f".corrupt-{stamp}-{n}")
    return target


def _remove_store(*paths: Path) -> None:
    """Each SQLite file of ours that is not wanted (a discarded salvage, a -wal reader) with its side files."""
    for p in paths:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(str(p) + suffix).unlink(missing_ok=True)


def _discard_partial(path: Path) -> None:
    """Remove what a salvage interrupted before it was complete left (the damaged file is still in place)."""
    _remove_store(_side(path, BUILDING), _side(path, _WAL_READER))


def _finish_salvage(path: Path) -> Path | None:
    """Put a complete salvage (BUILT) in place of the damaged file, moving that aside; where it went, or None.

    Every step is a rename that a start after a crash may find done or not, and does again if not."""
    built = _side(path, BUILT)
    if not built.exists():
        _discard_partial(path)
        return None
    reader = _side(path, _WAL_READER)
    check = sqlite3.connect(built.resolve().as_uri() + "?immutable=1", uri=True)
    try:
        last = salvage.read_last(check)
    finally:
        check.close()
    if last is None:  # never renamed to BUILT before its record was in: not ours, left as found
        raise BufferUnavailable(
            f"buffer: cannot open {path}, got {built} without a salvage record; move it away and start again",
            path=str(path),
        )
    moved = Path(last.moved_to)
    for suffix in ("-shm", "-wal", ""):  # the main file last: until it goes, the -wal is never an orphan
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(moved) + suffix))
    if reader.exists():  # an orphan -wal's: the one-page file reading it stands for the missing main file
        os.replace(reader, moved)
    _remove_store(reader)  # its main file is the moved one now: its -wal link and the rest go
    os.replace(built, path)
    fsync_dir(path.parent)
    return moved


def _orphan_wal(path: Path) -> str | None:
    """What is wrong when a -wal holds commits but its database file is missing or empty, else None."""
    wal = _side(path, "-wal")
    try:
        wal_size = wal.stat().st_size
    except FileNotFoundError:
        return None
    try:
        size: int | None = path.stat().st_size
    except FileNotFoundError:
        size = None
    if wal_size == 0 or size:
        return None
    main = "is missing" if size is None else "is empty (0 bytes)"
    return f"{wal.name} of {wal_size} bytes was left without its database file: {path.name} {main}"


def _wal_reader(path: Path) -> Path:
    """A one-page file with the orphan -wal linked beside it: what SQLite reads the -wal's commits through."""
    reader = _side(path, _WAL_READER)
    wal = _side(path, "-wal")
    with wal.open("rb") as f:
        header = f.read(32)
    size = int.from_bytes(header[8:12], "big") if len(header) == 32 else 0
    # the page 1 SQLite reads is the -wal's; a page of the -wal's size makes SQLite read its frames right
    if size < 512 or size > 65536 or size & (size - 1):
        size = PAGE_SIZE
    _discard_partial(path)
    fd = os.open(reader, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, bytes(size))
    finally:
        os.close(fd)
    try:
        os.link(wal, _side(reader, "-wal"))  # takes no space on a full disk, and the -wal stays as it is
    except OSError:
        shutil.copyfile(wal, _side(reader, "-wal"))  # a file system without hard links
    return reader


def _not_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return False
    return len(head) > 0 and head != b"SQLite format 3\x00"


def _cannot_open(path: Path, exc: BaseException) -> BufferError:
    if isinstance(exc, BufferError):
        return exc
    if is_disk_full(exc):
        return BufferUnavailable(
            f"buffer: cannot open {path}, got a full disk ({exc}); free space in {path.parent} "
            "(opening needs about 32 KiB, delivering a little more), or give [buffer] reserve_bytes a size",
            path=str(path),
        )
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY:
        return BufferUnavailable(
            f"buffer: cannot open {path}, got a file SQLite may only read ({exc}); give the gateway's user "
            f"write access to it and to {path.parent}, or set gateway.data_dir to a writable directory",
            path=str(path),
        )
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return BufferUnavailable(
        f"buffer: cannot open {path}, got {name} ({exc}); "
        "check the file's permissions, free space and gateway.data_dir",
        path=str(path),
    )


def open_database(
    path: Path,
    *,
    durability: Durability,
    max_page_count: int | None = None,
    now: datetime | None = None,
    make_room: Callable[[], bool] | None = None,
) -> Opened:
    """Open (or create) the outbox file; a damaged one is moved aside and what it still holds salvaged.

    `make_room` is called when opening fails for want of disk space (space.py deletes the reserve
    file); it says whether trying again makes sense. BufferUnavailable, with the path and the fix,
    when the file cannot be used.
    """
    location.prepare(path)
    now = now or datetime.now(UTC)
    try:
        _finish_salvage(path)
        orphan = _orphan_wal(path)
        reader = with_room(make_room, lambda: _wal_reader(path)) if orphan is not None else None
    except (sqlite3.Error, OSError) as exc:
        raise _cannot_open(path, exc) from exc
    if orphan is not None:
        return _replace(path, reader, orphan, durability, max_page_count, now, make_room)
    if _not_sqlite(path):
        # decided before SQLite opens it: SQLite would delete the -wal beside a foreign file
        return _replace(path, None, "file is not a database", durability, max_page_count, now, make_room)
    try:
        conn = with_room(make_room, lambda: _existing(path, durability, max_page_count))
    except _Damaged as exc:
        return _replace(path, path, str(exc), durability, max_page_count, now, make_room)
    except UnicodeDecodeError as exc:
        # SQLite's message quotes the garbled schema text itself, which then is not even UTF-8
        return _replace(path, path, f"garbled schema text ({exc.reason})", durability, max_page_count, now, make_room)
    except (sqlite3.Error, OSError) as exc:
        if _damaged(exc):
            return _replace(path, path, str(exc), durability, max_page_count, now, make_room)
        raise _cannot_open(path, exc) from exc
    return Opened(conn=conn, recovered_from=None)


def _existing(path: Path, durability: Durability, max_page_count: int | None) -> sqlite3.Connection:
    conn = connect(path, durability=durability, max_page_count=max_page_count)
    try:
        _check(conn)
        ensure_schema(conn, path)
        _check_writable(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _building(path: Path) -> sqlite3.Connection:
    # No journal and no syncs while it is built: a crash leaves a file that is discarded at the next start
    # anyway; the whole file is synced once, before it is renamed to BUILT.
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        ensure_schema(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _build(path: Path, source: Path | None, detail: str, moved: Path, now: datetime) -> None:
    """Salvage `source` into a new file beside `path` and rename it to BUILT once it is complete and synced."""
    building = _side(path, BUILDING)
    _remove_store(building)
    try:
        conn = _building(building)
        try:
            salvage.replace_damaged(source, conn, moved_to=moved, detail=detail, path=path, now=now)
            conn.execute("PRAGMA journal_mode = WAL")  # the buffer's mode, so that opening it writes nothing
        finally:
            conn.close()
        fsync_path(building)
        os.replace(building, _side(path, BUILT))
        fsync_dir(path.parent)
    except BaseException:
        _remove_store(building)
        raise


def _replace(
    path: Path,
    damaged: Path | None,
    detail: str,
    durability: Durability,
    max_page_count: int | None,
    now: datetime,
    make_room: Callable[[], bool] | None,
) -> Opened:
    """Salvage what `damaged` (if SQLite) still holds into a fresh file, then move the damaged file aside and
    put the fresh one in its place (see BUILDING). Until then the damaged file stays where it was: a start
    that fails (a full disk) or is killed meanwhile salvages it again."""
    moved = _aside_name(path, now)
    try:
        with_room(make_room, lambda: _build(path, damaged, detail, moved, now))
        _finish_salvage(path)
        conn = with_room(make_room, lambda: _existing(path, durability, max_page_count))
    except _Damaged as exc:  # the file just built: never expected, and never salvaged in a loop
        raise BufferUnavailable(
            f"buffer: cannot open {path}, got a salvaged file that is damaged itself ({exc}); "
            "check the disk (dmesg), then move the file away to start an empty buffer",
            path=str(path),
        ) from exc
    except (sqlite3.Error, OSError) as exc:
        if is_disk_full(exc):
            raise BufferUnavailable(
                f"buffer: cannot salvage {path}, damaged ({detail}), got a full disk ({exc}); the damaged file is "
                f"left as it is: free space in {path.parent} (the salvage writes a copy of what it still holds, up "
                "to the file's size) and start again",
                path=str(path),
            ) from exc
        raise _cannot_open(path, exc) from exc
    return Opened(conn=conn, recovered_from=moved)
