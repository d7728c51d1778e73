"""The audit log: who did what, when, from where, in sqlite, chained by HMAC so no entry is quietly changed.

Theory of operation. Each row holds (id, at, actor, action, target, detail_json, address, prev_mac,
mac) with `mac = HMAC-SHA256(key, prev_mac || canonical JSON of id, at, actor, action, target,
detail, address)` and `prev_mac` the previous row's mac (`GENESIS` for the first). The key is the
secret `audit-hmac` of the SecretStore in `<state_dir>/secrets`, made at first use, so whoever can
edit the database but not read the key cannot make a row that verifies:

- an edited row no longer matches its mac;
- a deleted row leaves a gap in the ids and the next row chained to a mac that is missing;
- an inserted row has a mac that does not verify, and the chain skips over it.

Retention (`purge`) deletes the oldest rows and appends an anchor row (action `audit.purge`)
recording the purged id range and the last purged mac, so the first row left still chains to
something the key vouches for. A chain alone cannot see its newest rows removed, so after each
commit the newest (id, mac) is also written, sealed by the key, to `audit.head` next to the file;
`verify` checks that this entry is still there. Both files removed while the key is kept is seen
too: the key is made by the first append only, so a key with no entries and no head means entries
were written and removed. What none of these can see:

- older copies of both `audit.db` and `audit.head` put back together (a copy taken earlier, or
  a backup's): they verify, and the entries appended since are gone without a trace in the files.
  A mark of the newest entry kept in the secret store would not close it: the store lies in the
  same directory, writable by the same user, and its own older copy can be put back with them; it
  would also rewrite the store on every append, as root from `sudo edgegw user …` (a store the web
  UI, as the gateway's user, then cannot read until handed back), and a backup that snapshots it
  after the database would hold a mark newer than its entries;
- the removal of both files together with the secret store.

The journal (every append logs its id and action) and the backups cover those: an entry id in the
journal newer than the log's newest entry shows entries lost.

Appends are serialized (a lock in the process, `BEGIN IMMEDIATE` between processes: the web UI and
the CLI append to the same file) and durable (one commit per append, WAL, synchronous=FULL).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.accounts.schema import migrate
from gateway.backup.held_dir import kind, named, new_file, who_may_change
from gateway.errors import GatewayError
from gateway.secret_key_file import directory_refusal, not_permitted, present
from gateway.secrets import SecretStore
from gateway.storage.files import durable_connection, immediate, open_store

__all__ = [
    "ACTIONS",
    "AUDIT_FILE",
    "GENESIS",
    "KEY_NAME",
    "PURGE_ACTION",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditVerdict",
]

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.db"
STORE = "audit log"  # as its errors name it
TABLES = ("entries",)  # its own since version 1: another store's file has none
HEAD_FILE = "audit.head"
LOCK_FILE = "audit.lock"
_LOCK_FIX = "if you did not put it there, find who did; remove it (the log makes its own) and run the command again"
# one per process: two AuditLog objects on one directory must not both make a key
_KEY_LOCK = threading.Lock()
SECRETS_DIR = "secrets"
KEY_NAME = "audit-hmac"
GENESIS = "0" * 64
PURGE_ACTION = "audit.purge"
# the state directory, held open while the log's own files are used by name in it (see AuditLog._held)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# a head record is under 200 bytes: a bound keeps a file put in its place (a link to /dev/zero) from filling memory
_HEAD_MAX = 4096
# the actions the UI and the CLI write (others are allowed: a later page may add its own)
ACTIONS = (
    "login",
    "login.failed",
    "logout",
    "lockout",
    "config.apply",
    "config.rollback",
    "command",
    "dead_letter.retry",
    "dead_letter.discard",
    "user.add",
    "user.remove",
    "user.role",
    "user.password",
    "user.unlock",
    "user.setup_link",
    "export",
    PURGE_ACTION,
)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail_json TEXT NOT NULL,
        address TEXT NOT NULL,
        prev_mac TEXT NOT NULL,
        mac TEXT NOT NULL
    );
    CREATE INDEX entries_at ON entries (at);
    CREATE INDEX entries_actor ON entries (actor);
    CREATE INDEX entries_action ON entries (action);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class AuditError(GatewayError):
    code = "audit_error"


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One row as written; a value `append` never writes (an edit behind the log's back) is shown, never raised.

    Such a value is named in `unreadable` (column -> "(unreadable: …)"); a text field then holds that same text,
    `at` holds None.
    """

    id: int
    at: float | None
    actor: str
    action: str
    target: str
    detail: Mapping[str, Any]
    address: str
    prev_mac: str = ""
    mac: str = ""
    unreadable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AuditVerdict:
    """`ok` when every entry verifies; otherwise one plain-English line per problem, naming the entry."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    checked: int = 0


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _mac(
    key: bytes,
    entry_id: int,
    at: float,
    actor: str,
    action: str,
    target: str,
    detail_json: str,
    address: str,
    prev_mac: str,
) -> str:
    body = canonical(
        {
            "id": entry_id,
            "at": at,
            "actor": actor,
            "action": action,
            "target": target,
            "detail": detail_json,
            "address": address,
        }
    )
    return hmac.new(key, prev_mac.encode("ascii", "replace") + body.encode("utf-8"), hashlib.sha256).hexdigest()


class AuditLog:
    """The audit log in `<state_dir>/audit.db`, keyed by `audit-hmac` in `<state_dir>/secrets`.

    `create=False` opens an existing log only, for the commands that read it: nothing is made, not even the
    directory; a log that is not there reads as FileNotFoundError (`exists()` says so first), and `verify`
    reports its absence as a finding, as it would an emptied file.
    """

    def __init__(self, state_dir: Path, *, secret_store: SecretStore | None = None, create: bool = True) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / AUDIT_FILE
        self.secrets = secret_store or SecretStore(self.state_dir / SECRETS_DIR)
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._create = create
        if create or self.exists():
            self._open_file()

    def exists(self) -> bool:
        """Whether audit.db is there; the ConfigError naming the owner and the chown when this user may not look."""
        with self._permitted(self.path):
            return present(self.path)

    # -- file, schema, key -----------------------------------------------------------------------------

    def _open_file(self) -> None:
        # every later use opens the file again (durable_connection): the checks of a whole open are made once
        if os.geteuid() == 0 and not present(self.state_dir):
            # made as open_store would, before it is held (_held) and never reached through a link
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._check_database()
        with self._permitted(self.path):
            db = open_store(self.path, STORE, tables=TABLES, pragmas=("synchronous=FULL",))
        try:
            migrate(db, self.path, MIGRATIONS, AuditError, store=STORE)
        finally:
            db.close()

    def _permitted(self, path: Path) -> AbstractContextManager[None]:
        return _permitted(path, self.state_dir)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        if not self._create and not self.exists():
            # sqlite3.connect would make an empty file, which verify then takes for a log never written to
            raise FileNotFoundError(errno.ENOENT, "no audit log", str(self.path))
        self._check_database()
        return durable_connection(self.path, STORE)

    @contextmanager
    def _held(self) -> Iterator[int]:
        """The state directory open, for the log's own files to be used by name in it, none through a link.

        Under root (`sudo edgegw user …`, `sudo edgegw web`, which appends on every failed login) the directory
        itself is reached through a link only when no one but root may change that link (an admin's layout,
        /etc/edgegw/web -> /srv/edgegw-web; held_dir.who_may_change decides): the gateway's user owns the
        directory holding it on a usual box and may put a link to /etc under its name at any moment. As any other
        user a link there is followed, as ever: it leads nowhere that user could not write anyway.
        """
        root = os.geteuid() == 0
        try:
            fd = os.open(self.state_dir, _DIR_FLAGS | (os.O_NOFOLLOW if root else 0))
        except OSError as exc:
            if not root or exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            fd = self._through_link(exc)
        try:
            yield fd
        finally:
            os.close(fd)

    def _through_link(self, exc: OSError) -> int:
        """Under root, the state directory opened through the link at its name when only root may change that link;
        the AuditError naming the link and who may change it otherwise, or naming what else is there."""
        parent = os.open(self.state_dir.parent, _DIR_FLAGS)
        try:
            name = self.state_dir.name
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                raise exc from None  # gone meanwhile: the open's own error
            got = kind(parent, name)
            if not stat.S_ISLNK(st.st_mode):
                fix = "move it aside and run the command again"
                raise self._refused(self.state_dir, "a directory", got, fix, why="nothing was written through it")
            who = who_may_change(os.fstat(parent), st)
            if who is None:
                return os.open(name, _DIR_FLAGS, dir_fd=parent)  # only root may change where it leads
            fix = (
                "if the link is yours, name the directory it leads to as [web] state_dir in the config; if "
                "not, find who put it there, remove it and run the command again"
            )
            why = (
                f"root follows a link only where no one else may change it, and {who} may change "
                f"{self.state_dir.parent}: nothing was written through it"
            )
            raise self._refused(self.state_dir, "a directory", got, fix, why=why) from None
        finally:
            os.close(parent)

    def _check_database(self) -> None:
        """Under root, audit.db must be the log's own file before SQLite opens it, by path: a link or a hard link put
        in its place would have root make, convert or write whatever it names. Checked on every open, this leaves
        the moment between the check and SQLite's open (SQLite's own -wal and -shm it opens never through a link).
        """
        if os.geteuid() != 0:
            return
        with self._held() as fd:
            try:
                st = os.stat(AUDIT_FILE, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return
            owner = os.fstat(fd).st_uid
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid in (0, owner):
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink != 1:
            got = f"a file with {st.st_nlink} names (a hard link to another file)"
        elif stat.S_ISREG(st.st_mode):
            got = f"a file of uid {st.st_uid}"
        else:
            got = _kind(self.path)
        fix = (
            "if you did not put it there, find who did; move it aside (restore audit.db from a backup if it is gone) "
            "and run the command again"
        )
        raise self._refused(self.path, f"a file of root or of uid {owner} (the owner of {self.state_dir})", got, fix)

    def _refused(self, path: Path, wanted: str, got: str, fix: str, *, why: str = "") -> AuditError:
        why = why or (
            "root uses no link nor another user's file in a directory the gateway's user may change, and nothing "
            "was written through it"
        )
        error = AuditError(f"audit log {path}: must be {wanted}, got {got}; {why}: {fix}", path=str(path))
        log.error("%s", error)
        return error

    def schema_version(self) -> int:
        with self._connect() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def _get_key(self) -> bytes:
        if self._key is None:
            # the web UI and the CLI may both write the first entry: one makes the key, the other reads it
            with _KEY_LOCK, self._file_lock():
                if KEY_NAME in self.secrets.names():
                    self._key = base64.b64decode(self.secrets.get(KEY_NAME))
                else:
                    raw = secrets.token_bytes(32)
                    self.secrets.set(KEY_NAME, base64.b64encode(raw).decode("ascii"))
                    self._key = raw
        return self._key

    def _existing_key(self) -> bytes | None:
        """The key if there is one: verify only reads, and a key it made would tell later checks entries were written."""
        if KEY_NAME not in self.secrets.names():
            return None  # even when one is held in memory: the store on disk is what later appends will use
        if self._key is None:
            self._key = base64.b64decode(self.secrets.get(KEY_NAME))
        return self._key

    def _key_fix(self) -> str:
        """What brings the key back: the store's own key file, or the store itself."""
        if present(self.secrets.store_path) and not present(self.secrets.key_path):
            # a restore onto a replacement box brings secrets.enc, not the key file beside it (docs/backup.md)
            return (
                f"{self.secrets.store_path} is there but not its key file {self.secrets.key_path}: put back the one "
                "kept from the box the backup came from (docs/backup.md)"
            )
        return "restore the secret store from the backup"

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection whose rows always read: text that is not UTF-8 (an edit) comes back as bytes, not an error."""
        with self._connect() as db:
            db.text_factory = _text
            yield db

    @contextmanager
    def _file_lock(self) -> Iterator[int]:
        """audit.lock held; yields the state directory's descriptor (`_held`) it was taken in."""
        path = self.state_dir / LOCK_FILE
        with self._held() as dir_fd:
            try:
                # O_NONBLOCK: a named pipe put in its place would hold the open, and the web request with it
                flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                fd = os.open(LOCK_FILE, flags, 0o600, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    exc.filename = str(path)
                    raise
                raise self._refused(path, "the log's lock file", _kind(path), _LOCK_FIX) from None
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                    got = "a file with more than one name (a hard link)" if stat.S_ISREG(st.st_mode) else _kind(path)
                    raise self._refused(path, "the log's lock file", got, _LOCK_FIX)
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield dir_fd
            finally:
                os.close(fd)  # releases the lock

    # -- writing ---------------------------------------------------------------------------------------

    def append(
        self,
        *,
        actor: str,
        action: str,
        target: str = "",
        detail: Mapping[str, Any] = {},
        address: str = "",
        at: float,
    ) -> int:
        """Record one entry durably; returns its id."""
        detail_json = canonical(dict(detail))
        at = float(at)  # the column is REAL: an int would be hashed as "5" and read back as "5.0"
        key = self._get_key()
        with self._lock, self._connect() as db:
            with immediate(db):
                with self._held() as dir_fd:
                    head = _read_head(dir_fd, self.state_dir / HEAD_FILE, key)
                if head is None and db.execute("SELECT 1 FROM entries LIMIT 1").fetchone() is None:
                    # the first entry: a head of 0 first, so that a crash between this commit and the head
                    # written after it leaves a head that lags (as after any append) rather than none,
                    # which verify must take for deleted entries
                    self._write_head(key, 0, GENESIS)
                written = head[0] if isinstance(head, tuple) else 0
                entry_id = self._append(db, key, at, actor, action, target, detail_json, address, written)
            mac = str(db.execute("SELECT mac FROM entries WHERE id = ?", (entry_id,)).fetchone()[0])
        self._write_head(key, entry_id, mac)
        log.info("audit entry %d: %s", entry_id, action)  # names stay out of the journal
        return entry_id

    def _write_head(self, key: bytes, entry_id: int, mac: str) -> None:
        """Record the newest entry outside the database, sealed by the key: deleting the newest rows shows.

        Written after the commit, so it may lag behind the database (another process appended meanwhile,
        or a power cut came in between) but never leads it; it only moves forward.
        """
        path = self.state_dir / HEAD_FILE
        with self._file_lock() as dir_fd:
            current = _read_head(dir_fd, path, key)
            if isinstance(current, tuple) and current[0] >= entry_id:
                return
            tmp = f".{HEAD_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
            # made anew (O_EXCL, O_NOFOLLOW): a link put under this foreseeable name is removed, never written through
            with new_file(dir_fd, tmp, where=self.state_dir / tmp, owner=None) as f:
                f.write(canonical({"id": entry_id, "mac": mac, "seal": _head_seal(key, entry_id, mac)}).encode())
            with named(path):
                os.replace(tmp, HEAD_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)  # the rename survives a power cut: a lost head would read as deleted entries

    @staticmethod
    def _append(
        db: sqlite3.Connection,
        key: bytes,
        at: float,
        actor: str,
        action: str,
        target: str,
        detail_json: str,
        address: str,
        written: int,
    ) -> int:
        last = db.execute("SELECT id, mac FROM entries ORDER BY id DESC LIMIT 1").fetchone()
        last_id, prev_mac = (0, GENESIS) if last is None else (int(last["id"]), str(last["mac"]))
        # numbered after the newest entry ever written (audit.head), not after the newest left: newest rows
        # deleted behind the log's back stay a visible gap instead of being quietly taken over
        entry_id = max(last_id, written) + 1
        mac = _mac(key, entry_id, at, actor, action, target, detail_json, address, prev_mac)
        db.execute(
            "INSERT INTO entries (id, at, actor, action, target, detail_json, address, prev_mac, mac) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry_id, at, actor, action, target, detail_json, address, prev_mac, mac),
        )
        return entry_id

    def purge(self, older_than: float, *, now: float | None = None, actor: str = "retention") -> int:
        """Delete the oldest entries up to the first one at or after `older_than`; returns how many.

        An anchor entry (`audit.purge`, detail: first_id, last_id, count, last_mac) is appended in the same
        transaction, so the first entry left still chains to a mac the key vouches for.
        """
        if KEY_NAME not in self.secrets.names() and self.count() == 0:
            return 0  # nothing to purge: making the key here would tell verify that entries were written
        key = self._get_key()
        at = float(time.time() if now is None else now)
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                keep = db.execute("SELECT min(id) FROM entries WHERE at >= ?", (older_than,)).fetchone()[0]
                bound = db.execute(
                    "SELECT max(id) FROM entries" + (" WHERE id < ?" if keep is not None else ""),
                    (keep,) if keep is not None else (),
                ).fetchone()[0]
                first = db.execute("SELECT min(id) FROM entries").fetchone()[0]
                if bound is None or first is None or bound < first:
                    db.execute("ROLLBACK")
                    return 0
                last_mac = db.execute("SELECT mac FROM entries WHERE id = ?", (bound,)).fetchone()[0]
                count = db.execute("DELETE FROM entries WHERE id <= ?", (bound,)).rowcount
                detail = {"first_id": first, "last_id": bound, "count": count, "last_mac": last_mac}
                # the anchor chains to the newest entry left (or, when none is left, to the last purged one)
                with self._held() as dir_fd:
                    head = _read_head(dir_fd, self.state_dir / HEAD_FILE, key)
                written = head[0] if isinstance(head, tuple) else 0
                self._append_after_purge(db, key, at, actor, detail, bound, last_mac, written)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            anchor_id, anchor_mac = db.execute("SELECT id, mac FROM entries ORDER BY id DESC LIMIT 1").fetchone()
        self._write_head(key, int(anchor_id), str(anchor_mac))
        log.info("audit: purged %d entries up to %d", count, bound)
        return int(count)

    @staticmethod
    def _append_after_purge(
        db: sqlite3.Connection,
        key: bytes,
        at: float,
        actor: str,
        detail: dict[str, Any],
        bound: int,
        last_mac: str,
        written: int,
    ) -> None:
        last = db.execute("SELECT id, mac FROM entries ORDER BY id DESC LIMIT 1").fetchone()
        last_id, prev_mac = (bound, last_mac) if last is None else (int(last["id"]), str(last["mac"]))
        entry_id = max(last_id, written) + 1  # as in append: never the number of an entry deleted behind our back
        detail_json = canonical(detail)
        mac = _mac(key, entry_id, at, actor, PURGE_ACTION, "", detail_json, "", prev_mac)
        db.execute(
            "INSERT INTO entries (id, at, actor, action, target, detail_json, address, prev_mac, mac) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry_id, at, actor, PURGE_ACTION, "", detail_json, "", prev_mac, mac),
        )

    # -- reading ---------------------------------------------------------------------------------------

    def entries(
        self, *, limit: int = 100, offset: int = 0, actor: str | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """Newest first, optionally only one actor's or one action's."""
        where, params = self._filter(actor, action)
        with self._reading() as db:
            rows = db.execute(
                f"SELECT * FROM entries{where} ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset)
            ).fetchall()
        return [_entry(r) for r in rows]

    def count(self, *, actor: str | None = None, action: str | None = None) -> int:
        where, params = self._filter(actor, action)
        with self._connect() as db:
            return int(db.execute(f"SELECT count(*) FROM entries{where}", params).fetchone()[0])

    @staticmethod
    def _filter(actor: str | None, action: str | None) -> tuple[str, tuple[str, ...]]:
        clauses, params = [], []
        if actor is not None:
            clauses.append("actor = ?")
            params.append(actor)
        if action is not None:
            clauses.append("action = ?")
            params.append(action)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    def verify(self) -> AuditVerdict:
        """Check the whole chain; every problem in plain English, naming the entry (see the module docstring).

        Only reads: the key is never made here (a missing one is reported), nor is any file written. A log
        opened with `create=False` that is not there is checked as an empty one, and its absence is a problem
        even with no key and no head: whether nothing was ever recorded is the caller's to tell (the other
        files of its directory).
        """
        if not self.exists():
            return self._verify_empty(missing=True)
        with self._reading() as db:
            total = int(db.execute("SELECT count(*) FROM entries").fetchone()[0])
            if total == 0:  # a new log, or one emptied behind its back: audit.head and the key tell which
                return self._verify_empty(missing=False)
            key = self._existing_key()
            if key is None:
                return AuditVerdict(
                    ok=False,
                    problems=[
                        f"audit log: the key {KEY_NAME} is missing from {self.secrets.directory}, got {total} "
                        f"entries that cannot be verified; {self._key_fix()}"
                    ],
                    checked=total,
                )
            anchors = self._anchors(db, key)
            checker = _ChainCheck(key, anchors)
            rows = db.execute("SELECT * FROM entries ORDER BY id")
            previous: sqlite3.Row | None = None
            for row in rows:
                if previous is not None:
                    checker.check(previous, row)
                previous = row
            if previous is not None:
                checker.check(previous, None)
        problems = checker.finish() + self._check_head(key)
        if checker.genuine == 0 and total >= 2:
            problems = [
                f"audit log: no entry matches the key {KEY_NAME} in {self.secrets.directory}, got {total} entries; "
                "the key was replaced or the log belongs to another key (restore both from the same backup)"
            ]
        return AuditVerdict(ok=not problems, problems=problems, checked=total)

    def _verify_empty(self, *, missing: bool) -> AuditVerdict:
        """A log without entries (`missing`: without its file): audit.head and the key tell whether any were written."""
        key = self._existing_key()
        head = self.state_dir / HEAD_FILE
        gone = f"{self.path} is missing" if missing else "no entries"
        if key is None:
            with self._permitted(head):
                head_there = present(head)
            if not head_there:
                if not missing:
                    return AuditVerdict(ok=True, checked=0)  # never written to: the first append makes the key
                return AuditVerdict(
                    ok=False,
                    problems=[
                        f"audit log: {self.path} is missing, and so are {HEAD_FILE} and the key {KEY_NAME}, "
                        "which the first entry makes: removed together, or never made; restore the three from "
                        "the same backup (docs/backup.md)"
                    ],
                    checked=0,
                )
            return AuditVerdict(
                ok=False,
                problems=[
                    f"audit log: the key {KEY_NAME} is missing from {self.secrets.directory}, got {gone} "
                    f"and {head}, which is written with the first entry; {self._key_fix()}"
                ],
                checked=0,
            )
        with self._permitted(head):
            head_there = present(head)
        if not head_there:
            return AuditVerdict(
                ok=False,
                problems=[f"{AUDIT_FILE} and {HEAD_FILE} were removed (the audit key shows entries were written)"],
                checked=0,
            )
        problems = self._check_head(key, missing=missing)
        return AuditVerdict(ok=not problems, problems=problems, checked=0)

    def _check_head(self, key: bytes, *, missing: bool = False) -> list[str]:
        """The newest entry recorded in audit.head must still be there, unchanged (`missing`: audit.db is not)."""
        path = self.state_dir / HEAD_FILE
        with self._held() as dir_fd:
            head = _read_head(dir_fd, path, key, strict=True)
        if head is None:
            return [
                f"audit log: {path} (the record of the newest entry) is missing; "
                "entries at the end may have been deleted"
            ]
        if isinstance(head, str):
            return [f"audit log: {path}: {head}"]
        head_id, head_mac = head
        if missing:
            if head_id == 0:
                return [f"audit log: {self.path} was removed ({path} shows it was made)"]
            gone = "entry 1" if head_id == 1 else f"entries 1 to {head_id}"
            return [f"audit {gone}: deleted ({self.path} is missing, but entry {head_id} was written)"]
        if head_id == 0:
            return []  # written before the first entry; that entry's own head did not follow (a crash)
        with self._reading() as db:
            if db.execute("SELECT 1 FROM entries WHERE mac = ?", (head_mac,)).fetchone() is not None:
                return []  # still there (renumbered, if at all: the chain check says so)
            newest = db.execute("SELECT max(id) FROM entries").fetchone()[0]
            row = db.execute("SELECT mac FROM entries WHERE id = ?", (head_id,)).fetchone()
        if newest is None:
            gone = "entry 1" if head_id == 1 else f"entries 1 to {head_id}"
            return [f"audit {gone}: deleted (the log is empty, but entry {head_id} was written)"]
        if newest < head_id:
            gone = f"entry {head_id}" if head_id == newest + 1 else f"entries {newest + 1} to {head_id}"
            return [f"audit {gone}: deleted (the log ends at entry {newest}, but entry {head_id} was written)"]
        if row is not None and row["mac"] != head_mac:
            return [f"audit entry {head_id}: replaced (its MAC is not the one recorded when it was written)"]
        return []

    @staticmethod
    def _anchors(db: sqlite3.Connection, key: bytes) -> dict[int, str]:
        """last purged id -> its mac, from the genuine purge records."""
        anchors: dict[int, str] = {}
        for row in db.execute("SELECT * FROM entries WHERE action = ?", (PURGE_ACTION,)):
            if not _verifies(key, row, row["id"]):
                continue
            try:
                detail = json.loads(row["detail_json"])
                anchors[int(detail["last_id"])] = str(detail["last_mac"])
            except (ValueError, KeyError, TypeError):
                continue
        return anchors


def _entry(row: sqlite3.Row) -> AuditEntry:
    unreadable: dict[str, str] = {}

    def text(column: str) -> str:
        value = row[column]
        if isinstance(value, str):
            return value
        unreadable[column] = _unreadable(value)
        return unreadable[column]

    at = row["at"]
    if not _showable_time(at):
        unreadable["at"] = _unreadable(at)
        at = None
    detail_json = text("detail_json")
    if "detail_json" in unreadable:
        detail: Any = {"unreadable": detail_json}
    else:
        try:
            detail = json.loads(detail_json)
        except ValueError:
            detail = {"unreadable": detail_json}
    return AuditEntry(
        id=row["id"],
        at=at,
        actor=text("actor"),
        action=text("action"),
        target=text("target"),
        detail=detail if isinstance(detail, dict) else {"value": detail},
        address=text("address"),
        prev_mac=text("prev_mac"),
        mac=text("mac"),
        unreadable=unreadable,
    )


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw  # shown as the bytes it holds, and never hashed: the row was edited


# the times a calendar can show in UTC and in JST (Python's years 1 to 9999), a day kept clear of either end
_SHOWABLE = (-62_135_596_800.0 + 86_400, 253_402_300_800.0 - 86_400)


def _showable_time(at: object) -> bool:
    return type(at) is float and _SHOWABLE[0] <= at <= _SHOWABLE[1]


def _unreadable(value: object) -> str:
    if value is None:
        return "(unreadable: NULL)"
    if isinstance(value, bytes):
        shown = value[:16].hex() + ("…" if len(value) > 16 else "")
        return f"(unreadable: {len(value)} bytes x'{shown}')"
    return f"(unreadable: {value!r})"


UNTRUSTED_HEAD = "unreadable, got a file that is not a head record; entries at the end may have been deleted"


def _read_regular(dir_fd: int, name: str) -> bytes:
    """Up to _HEAD_MAX bytes of the regular file `name` in `dir_fd`; OSError for a link or anything else there."""
    # O_NONBLOCK: a named pipe would hold the open
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        return os.read(fd, _HEAD_MAX)
    finally:
        os.close(fd)


def _kind(path: Path) -> str:
    """What is at `path`, for a message (held_dir.kind): a link with its target, a file, another user's directory."""
    try:
        parent = os.open(path.parent, _DIR_FLAGS)
    except OSError:
        return "nothing that can be looked at"
    try:
        return kind(parent, path.name)
    finally:
        os.close(parent)


def _head_seal(key: bytes, entry_id: int, mac: str) -> str:
    return hmac.new(key, b"head:" + canonical({"id": entry_id, "mac": mac}).encode(), hashlib.sha256).hexdigest()


@contextmanager
def _permitted(path: Path, state_dir: Path) -> Iterator[None]:
    """A PermissionError on a file of the log as what it is: the ConfigError naming the file, its owner and the
    `chown -h` that gives it back (a file left root's by `sudo edgegw …`), never a finding about the entries."""
    try:
        yield
    except PermissionError:
        refusal = not_permitted(path, "readable") or directory_refusal(state_dir)
        if refusal is None:
            raise
        raise refusal from None


def _read_head(dir_fd: int, path: Path, key: bytes, *, strict: bool = False) -> tuple[int, str] | str | None:
    """(id, mac) of audit.head (`path`, read by name in `dir_fd`); None when there is none; a sentence when it cannot
    be trusted, a link or anything but a regular file put in its place included.

    One this user may not read says nothing about the entries: `strict` (verify) raises it as the ConfigError of
    `_permitted`; an append reads it as untrusted, as before, and its own head replaces it.
    """
    try:
        with _permitted(path, path.parent) if strict else contextlib.nullcontext():
            raw = _read_regular(dir_fd, HEAD_FILE)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if strict and isinstance(exc, PermissionError):  # a file of no user known here: the CLI says whom to run as
            raise
        return UNTRUSTED_HEAD
    try:
        doc = json.loads(raw.decode("utf-8"))
        entry_id, mac, seal = int(doc["id"]), str(doc["mac"]), str(doc["seal"])
    except (ValueError, KeyError, TypeError):
        return UNTRUSTED_HEAD
    if not hmac.compare_digest(seal, _head_seal(key, entry_id, mac)):
        return "edited (its seal does not match the key); entries at the end may have been deleted"
    return entry_id, mac


# the columns append writes as text; `at` it writes as a finite float
_TEXT_COLUMNS = ("actor", "action", "target", "detail_json", "address", "prev_mac")


def _row_mac(key: bytes, row: sqlite3.Row, entry_id: int) -> str | None:
    """The row's MAC under `entry_id`; None for a value of a type append never writes (edited, and not hashable)."""
    at = row["at"]
    if type(at) is not float or not math.isfinite(at) or any(type(row[c]) is not str for c in _TEXT_COLUMNS):
        return None
    return _mac(
        key,
        entry_id,
        at,
        row["actor"],
        row["action"],
        row["target"],
        row["detail_json"],
        row["address"],
        row["prev_mac"],
    )


def _verifies(key: bytes, row: sqlite3.Row, entry_id: int) -> bool:
    mac = _row_mac(key, row, entry_id)
    return mac is not None and mac == row["mac"]


# how far a renumbered row is looked for: enough for a few rows deleted or inserted and the rest renumbered
_RENUMBER_REACH = 8


class _ChainCheck:
    """Walks the rows in id order with one row of look-ahead, and words what it finds.

    A row is *genuine* when its mac matches its contents under its own id or, renumbered, under a
    nearby id (its original number). Genuine rows carry the chain: each must follow the previous
    genuine row's original number and be chained to its mac. A row that is not genuine was edited
    (the next row is still chained to its mac) or inserted (the next row is chained to the row before it).
    """

    def __init__(self, key: bytes, anchors: dict[int, str]) -> None:
        self.key = key
        self.anchors = anchors
        self.problems: list[str] = []
        self.genuine = 0
        self._last: sqlite3.Row | None = None  # the previous row that holds a place in the chain
        self._last_original: int | None = None
        self._run: list[int] = []  # a run of renumbered rows: [first id, last id, shift]

    def _original(self, row: sqlite3.Row) -> int | None:
        entry_id = int(row["id"])
        mac = _row_mac(self.key, row, entry_id)
        if mac is None:
            return None  # a value of a type append never writes: edited, under any number
        if mac == row["mac"]:
            return entry_id
        for distance in range(1, _RENUMBER_REACH + 1):
            for candidate in (entry_id - distance, entry_id + distance):
                if candidate > 0 and _verifies(self.key, row, candidate):
                    return candidate
        return None

    def _flush_run(self) -> None:
        if not self._run:
            return
        first, last, shift = self._run
        self._run = []
        if first == last:
            self.problems.append(f"audit entry {first}: renumbered (its MAC matches number {first - shift})")
        else:
            self.problems.append(
                f"audit entries {first} to {last}: renumbered (their MACs match numbers {first - shift} to {last - shift})"
            )

    def _say(self, text: str) -> None:
        self._flush_run()
        self.problems.append(text)

    def check(self, row: sqlite3.Row, following: sqlite3.Row | None) -> None:
        entry_id = int(row["id"])
        original = self._original(row)
        if original is None:
            self._not_genuine(row, following)
            return
        self.genuine += 1
        self._check_place(row, original)
        if original != entry_id:
            shift = entry_id - original
            if self._run and self._run[1] == entry_id - 1 and self._run[2] == shift:
                self._run[1] = entry_id
            else:
                self._flush_run()
                self._run = [entry_id, entry_id, shift]
        else:
            self._flush_run()
        self._last, self._last_original = row, original

    def _check_place(self, row: sqlite3.Row, original: int) -> None:
        entry_id = int(row["id"])
        last = self._last
        if last is None or self._last_original is None:  # the first row: the start of the log, or a purge anchor
            if original == 1 and row["prev_mac"] == GENESIS:
                return
            if self.anchors.get(original - 1) == row["prev_mac"]:
                return
            if original > 1:
                # entries a purge record accounts for are not missing: only those after the last such range
                start = max((last_id + 1 for last_id in self.anchors if last_id < original - 1), default=1)
                gone = f"entry {start}" if original == start + 1 else f"entries {start} to {original - 1}"
                self._say(
                    f"audit {gone}: deleted (the log starts at entry {entry_id} "
                    "without a purge record for the entries before it)"
                )
            else:
                self._say(f"audit entry {entry_id}: not chained to the start of the log")
            return
        expected = self._last_original + 1
        if original > expected:
            gone = f"entry {expected}" if original == expected + 1 else f"entries {expected} to {original - 1}"
            if original == entry_id:
                self._say(f"audit {gone}: deleted (entry {entry_id} follows entry {last['id']})")
            else:
                self._say(f"audit {gone}: deleted (the entries after them were renumbered to hide the gap)")
        elif original < expected:
            self._say(f"audit entry {entry_id}: reordered (its MAC matches number {original}, which comes earlier)")
        elif row["prev_mac"] != last["mac"]:
            self._say(f"audit entry {entry_id}: not chained to entry {last['id']} before it (an entry was replaced)")

    def _not_genuine(self, row: sqlite3.Row, following: sqlite3.Row | None) -> None:
        entry_id = int(row["id"])
        last = self._last
        if following is not None and following["prev_mac"] == row["mac"]:
            self._say(f"audit entry {entry_id}: edited (its MAC does not match its contents)")
        elif following is not None and last is not None and following["prev_mac"] == last["mac"]:
            self._say(
                f"audit entry {entry_id}: inserted (its MAC does not match, and entry {following['id']} "
                f"is chained to entry {last['id']} before it)"
            )
            return  # not part of the chain: the next row is checked against the one before it
        elif following is None:
            self._say(f"audit entry {entry_id}: edited or inserted (its MAC does not match its contents)")
        else:
            self._say(f"audit entry {entry_id}: edited (its MAC does not match its contents)")
        # an edited row keeps its place: the next row is chained to its (original) mac
        self._last = row
        self._last_original = (self._last_original + 1) if self._last_original is not None else entry_id

    def finish(self) -> list[str]:
        self._flush_run()
        return self.problems
