"""The small stores of record (accounts, audit log, …): a private sqlite file and how each use opens it."""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gateway.errors import ConfigError, GatewayError

log = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite's primary result codes for a file that is no database, or whose pages do not read: the file's
# fault, never the statement's nor the box's (permissions, space, a lock)
_UNREADABLE = {sqlite3.SQLITE_NOTADB: "not an SQLite database", sqlite3.SQLITE_CORRUPT: "a damaged SQLite database"}
STORE_FIX = (
    "the file is left as it is: restore another backup generation (`edgegw backup list`), or stop the services "
    "and move the file aside to start the store empty, losing everything it held"
)


class Access(enum.Enum):
    """How a process opens a store: as its keeper, which makes, migrates and writes it (open_store), or as a
    reader in a process that may not write where it lies (open_reader)."""

    READ_WRITE = "read-write"
    READ_ONLY = "read-only"


class StoreUnreadable(ConfigError, sqlite3.DatabaseError):
    """A store's file is not SQLite, or SQLite finds it damaged: refused as it is, never repaired nor replaced.

    A ConfigError, as a secret store key that does not fit is one: a technician must act before a restart
    can help, and every command already says such an error in one line and exits 2. A
    sqlite3.DatabaseError too, with SQLite's result code, for the code that catches SQLite's own errors.
    Message: `[<store> ]<path>: <what>, got <got>; <STORE_FIX>`.
    """

    code = "store_unreadable"

    def __init__(
        self,
        path: Path,
        what: str,
        got: str,
        *,
        store: str = "",
        sqlite_code: int = sqlite3.SQLITE_NOTADB,
        sqlite_name: str = "",
    ) -> None:
        # the path inside the line, as the secret store's errors have it: some commands print only the lines
        where = f"{store} {path}" if store else str(path)
        super().__init__([f"{where}: {what}, got {got}; {STORE_FIX}"])
        self.params.update(path=str(path), store=store, what=what, got=got)
        self.path = path
        self.store = store
        self.sqlite_errorcode = sqlite_code
        self.sqlite_errorname = sqlite_name or "SQLITE_NOTADB"


class ForeignStore(StoreUnreadable):
    """A sound SQLite file that holds none of the store's tables: another store's file (a backup restored under
    the wrong name, a path mistyped in a config), refused unchanged before SQLite's "no such table" could
    say it from a request, or a migration add this store's tables to it. Its SQLite code is SQLITE_NOTADB:
    no database of this store."""

    code = "store_foreign"

    def __init__(self, path: Path, store: str, *, tables: Collection[str], found: Sequence[str]) -> None:
        shown = [name if name.isprintable() else repr(name) for name in found[:_SHOWN]]
        more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        what = f"another store's file (none of the tables {', '.join(sorted(tables))})"
        super().__init__(path, what, f"tables {', '.join(shown)}{more}", store=store)


_SHOWN = 8  # table names quoted from a foreign file: enough to recognise which store it is


class StoreUnavailable(GatewayError, sqlite3.OperationalError):
    """A store a reader (open_reader) cannot open now, though nothing is wrong with the file: there is none
    yet, or it is a WAL file no process holds open, whose -shm SQLite's reader needs and may not make where
    the file lies. Whoever keeps the store can help: the message ends with `keeper`, saying who that is.
    A sqlite3.OperationalError too, for the code that catches SQLite's own errors.
    Message: `<store> <path>: cannot be read by this process now, got <got>; <keeper>`.
    """

    code = "store_unavailable"

    def __init__(self, path: Path, got: str, *, store: str, keeper: str) -> None:
        super().__init__(
            f"{store} {path}: cannot be read by this process now, got {got}; {keeper}", path=str(path), store=store
        )
        self.path = path
        self.store = store
        self.sqlite_errorcode = sqlite3.SQLITE_CANTOPEN
        self.sqlite_errorname = "SQLITE_CANTOPEN"


def _refused(error: StoreUnreadable) -> StoreUnreadable:
    log.error("%s", error)  # once per refusal: the process stops, or the request that opened it fails
    return error


def unreadable(path: Path, exc: sqlite3.Error, *, store: str = "") -> StoreUnreadable | None:
    """`exc` as a StoreUnreadable naming `store` and `path` when it says the file is no database or damaged,
    else None."""
    if isinstance(exc, StoreUnreadable):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    what = _UNREADABLE.get(code & 0xFF) if isinstance(code, int) else None
    if not isinstance(code, int) or what is None:
        return None
    name = getattr(exc, "sqlite_errorname", "")
    got = f'SQLite\'s "{exc}"'
    return _refused(StoreUnreadable(path, what, got, store=store, sqlite_code=code, sqlite_name=name))


@contextmanager
def _refusing(path: Path, store: str) -> Iterator[None]:
    """SQLite's errors inside for a file that is no database or a damaged one, as StoreUnreadable naming the
    store and the file; every other error passes unchanged."""
    try:
        yield
    except StoreUnreadable:
        raise
    except sqlite3.DatabaseError as exc:
        refused = unreadable(path, exc, store=store)
        if refused is None:
            raise
        raise refused from exc
    except UnicodeDecodeError as exc:
        # SQLite quotes a damaged schema's bytes in its message, which Python then cannot decode: a damaged
        # file all the same (the bytes are not quoted: they may be any row's)
        corrupt = StoreUnreadable(
            path,
            _UNREADABLE[sqlite3.SQLITE_CORRUPT],
            f"text that is no UTF-8 ({exc.reason}) where SQLite keeps the schema",
            store=store,
            sqlite_code=sqlite3.SQLITE_CORRUPT,
            sqlite_name="SQLITE_CORRUPT",
        )
        raise _refused(corrupt) from exc


# an existing file this process may read but not write: a read-only mount (an SD card's ext4 remounted
# read-only after an error, systemd's ReadOnlyPaths=), another user's file, an immutable one
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def create_private(path: Path, store: str = "") -> None:
    """Make `path` (and its directory, 0700) if missing, 0600 from its first byte: sqlite creating it would
    leave it readable by others for a moment, under the umask.

    A file already there must be an SQLite file (or empty: a new store): StoreUnreadable otherwise, decided
    before SQLite opens it, which would delete the -wal beside a foreign file, and with it the last commits
    of the right one. One this process may only read is checked all the same, read only: SQLite then opens
    it read-only, its reads work and its writes fail with SQLite's "attempt to write a readonly database"
    (SQLITE_READONLY), which the store's caller says in the store's name. The OSError of making a file
    that is not there passes unchanged. A -wal holding commits beside a missing or empty file is refused too
    (StoreUnreadable): SQLite would delete it, and those commits with it.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        _refuse_orphan_wal(path, store, "is missing")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        if exc.errno not in NOT_WRITABLE:
            raise
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise exc from None  # nothing to read: why it could not be made is what to say
    try:
        _check_header(fd, path, store)
    finally:
        os.close(fd)


def _check_header(fd: int, path: Path, store: str) -> bytes:
    """The file's first bytes (SQLite's header, or none for a new file); StoreUnreadable for any other."""
    head = os.read(fd, _HEADER_BYTES)
    if not head:
        _refuse_orphan_wal(path, store, "is empty (0 bytes)")
    if head and not head.startswith(SQLITE_HEADER):
        got = f"{os.fstat(fd).st_size} bytes without SQLite's header"
        raise _refused(StoreUnreadable(path, _UNREADABLE[sqlite3.SQLITE_NOTADB], got, store=store))
    return head


def _refuse_orphan_wal(path: Path, store: str, state: str) -> None:
    """StoreUnreadable when a -wal with commits lies beside `path`, which `state` says is missing or empty."""
    wal = path.with_name(path.name + "-wal")
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    what = f"a -wal without its database file ({path.name} {state})"
    got = f"{wal} of {size} bytes, the store's last commits, which SQLite would delete on opening; keep the -wal"
    raise _refused(StoreUnreadable(path, what, got, store=store, sqlite_code=sqlite3.SQLITE_CORRUPT))


_HEADER_BYTES = 20  # SQLite's header string, then up to the file format versions (2: WAL) at offsets 18 and 19


def fsync_path(path: Path) -> None:
    """Sync a file's data, or a directory's entries, to disk: a rename or a new file in a directory survives
    a power cut only once the directory is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_path  # the name most callers know it by: they sync a directory after a rename


def write_atomic(
    path: Path, data: bytes, mode: int | None, *, durable: bool = False, owner: tuple[int, int] | None = None
) -> None:
    """Replace `path` atomically with `data`, readable as `mode` says from the first byte on.

    The file is written beside it under a name of its own and renamed over it, so a reader never
    sees half a document (nor an empty one), and an older file with a wider mode (0644 from an
    earlier version) ends up with `mode` too. One shared temp name let two writers truncate and
    write the same inode, and the second rename then found nothing to move.
    `mode` None keeps the mode of the file replaced (0600 for a new one): a config file an admin
    made group-readable stays so. `durable` syncs the data and the rename to disk before returning
    (a config applied from the UI must survive a power cut; the status file rewritten every few
    seconds need not, and an SD card wears with every sync). `owner` (uid, gid; root only) is given
    to the file before the rename, so it never appears with root's (a restore run with sudo).
    """
    if mode is None:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)  # mkstemp makes it 0600
            if owner is not None:
                os.fchown(fd, *owner)
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a name of its own is never reused: a failed write must not leave it behind
        raise
    if durable:
        fsync_dir(path.parent)


def create_whole(path: Path, data: bytes, *, owner: tuple[int, int] | None = None) -> None:
    """Make `path` (0600) holding `data`, unless it exists: written whole through a file of its own,
    fsync'd and linked into place, so a crash leaves no half-written file and a file another process
    made meanwhile stays (for keys made once: read `path` afterwards for the one in force).

    `owner` (uid, gid; root only) is given to the file before it is linked: given afterwards, root killed
    in between left a 0600 key its service's user could never read (`sudo edgegw secret set` on a new box).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            if owner is not None:
                os.fchown(fd, *owner)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process linked its own first: that one counts
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)


def wal_mode(db: sqlite3.Connection, *, within_s: float = 10.0) -> None:
    """`PRAGMA journal_mode=WAL`, waiting out other connections that convert the same new file.

    Two connections converting one new file at once deadlock on its lock, and SQLite answers one of
    them SQLITE_BUSY at once, without its busy handler: six threads opening a new store failed 9 of
    1,800 opens, so the gateway and the web UI starting together on a new box could each fail a start.
    A file in WAL mode already takes no lock here. SQLite's own errors pass unchanged: the buffer salvages a
    damaged file on them and records SQLite's words; a store names its file through `unreadable`.
    """
    deadline = time.monotonic() + within_s
    pause = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def open_store(
    path: Path,
    store: str,
    *,
    tables: Collection[str],
    pragmas: Sequence[str] = (),
    wal: bool = True,
    timeout: float = 10.0,
) -> sqlite3.Connection:
    """The store's file, made private if new (create_private), opened for any thread in autocommit mode, in
    WAL unless `wal` is False, with `pragmas` ("synchronous=FULL", ...) run.

    StoreUnreadable naming `store` and `path` for a file that is no database or a damaged one, ForeignStore
    for a sound one that holds tables but none of `tables` (the store's own since its first version), all
    decided here: SQLite said it only from a later request, in its own words and without the file's name.
    """
    create_private(path, store)
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        with _refusing(path, store):
            _check(db, path, store, tables)  # before WAL: another store's file is refused unchanged
            if wal:
                wal_mode(db)
            for pragma in pragmas:
                db.execute(f"PRAGMA {pragma}")
    except BaseException:
        db.close()
        raise
    return db


def open_reader(
    path: Path, store: str, *, tables: Collection[str], keeper: str, timeout: float = 10.0
) -> sqlite3.Connection:
    """The store's file for reading only, by a process that may not write where it lies (the web UI, whose
    unit has the data directory in ReadOnlyPaths=): SQLite's `mode=ro` and query_only, for any thread, in
    autocommit mode. Never made, never turned to WAL, never migrated: that is the keeper's.

    The checks of open_store (StoreUnreadable, ForeignStore) are made; StoreUnavailable, ending with `keeper`
    (who makes the file and holds it open), for a file that is not there, and for a WAL file SQLite cannot
    open read-only: one that no process holds open has no -shm, and a reader may not make it in a read-only
    directory (in a writable one SQLite makes it, and an empty -wal, and leaves them).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise _unavailable(StoreUnavailable(path, "no such file", store=store, keeper=keeper)) from None
    try:
        head = _check_header(fd, path, store)
    finally:
        os.close(fd)
    uri = f"{path.absolute().as_uri()}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA query_only=ON")
        with _refusing(path, store):
            _check(db, path, store, tables)
    except sqlite3.OperationalError as exc:
        db.close()
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_CANTOPEN:
            raise
        got = f'SQLite\'s "{exc}"'
        if head[18:20] == _WAL_VERSIONS:
            got = (
                f"a WAL file that no process holds open ({got}: the -shm beside it, which a reader needs, cannot be "
                "made here)"
            )
        raise _unavailable(StoreUnavailable(path, got, store=store, keeper=keeper)) from exc
    except BaseException:
        db.close()
        raise
    return db


_WAL_VERSIONS = b"\x02\x02"  # the header's write and read versions of a file in WAL mode


def _unavailable(error: StoreUnavailable) -> StoreUnavailable:
    log.warning("%s", error)  # once per refusal: the request that opened it fails, and says so
    return error


def _check(db: sqlite3.Connection, path: Path, store: str, tables: Collection[str]) -> None:
    # reading the schema parses it and reads the first page's b-tree; reading one row of every table, from the
    # table and not the smallest index SQLite prefers for it, reads its root page: damage there otherwise shows
    # in whichever request touches it first
    names = [str(name) for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    found = sorted(name for name in names if not name.startswith("sqlite_"))
    # none of them rather than all: a later version may drop one, and a file of a newer edgegw is
    # refused as a downgrade by the migration, not as another store's
    if found and not set(tables) & set(found):
        raise _refused(ForeignStore(path, store, tables=tables, found=found))
    for name in names:
        quoted = name.replace('"', '""')
        db.execute(f'SELECT 1 FROM "{quoted}" NOT INDEXED LIMIT 1').fetchall()


@contextmanager
def durable_connection(path: Path, store: str = "") -> Iterator[sqlite3.Connection]:
    """A connection for one use: WAL, every commit fsynced (a record of truth changes rarely and must survive
    a power cut), rows by name, transactions begun explicitly; StoreUnreadable naming `store` and `path` for
    a file that is no database or a damaged one."""
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        with _refusing(path, store):
            wal_mode(db)  # the first statement that reads the file
            db.execute("PRAGMA synchronous=FULL")
        yield db
    finally:
        db.close()


class SharedConnection:
    """A store's one connection, used from worker threads (`asyncio.to_thread`) and from the loop: one caller at
    a time, and a close that waits for the caller inside. `asyncio.to_thread` outlives a cancelled caller, and
    SQLite's connection freed under a running statement crashes the whole process (SIGSEGV). A use after the
    close raises `closed_error()`, the store's own words, and never reaches the freed connection."""

    def __init__(self, db: sqlite3.Connection, closed_error: Callable[[], Exception]) -> None:
        self._db = db
        self._closed_error = closed_error
        self._lock = threading.Lock()
        self.closed = False

    @contextmanager
    def held(self) -> Iterator[sqlite3.Connection]:
        """The connection, this thread's alone until the block ends."""
        with self._lock:
            if self.closed:
                raise self._closed_error()
            yield self._db

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._db.close()


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on `db` (opened with isolation_level=None): BEGIN IMMEDIATE takes the write
    lock at once, so another process's writer waits on busy_timeout instead of failing mid-way; rolled
    back on any exception, committed otherwise."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:  # SQLite rolls back by itself on a full disk: the first error is the one to raise
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
