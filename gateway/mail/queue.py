"""The durable mail queue: <data_dir>/mail.db (sqlite, mode 0600, schema version in PRAGMA user_version).

Theory of operation. `enqueue` commits the mail (synchronous=FULL) before it returns its id, so a
mail once accepted survives a kill -9 or a power cut. A row is `pending` until the sender hands it
to the SMTP server: then `sent` (the server answered 250 to the data) or `failed` (a permanent 5xx
reply about that mail, content that cannot be sent, or still not accepted after `max_age_s`). A
transient failure (4xx, the server unreachable or refusing the sender) leaves it `pending` with a
later `next_attempt_at`.

What identifies a person is never stored in clear: the recipients, subject and bodies (a pickup
code is a secret too) are one Fernet token under a key kept in the SecretStore (`mail.queue_key`).
Once a mail is sent or has failed that token is erased; the row keeps only a pseudonymous marker
(`m1:` + HMAC-SHA256 of the sorted, lower-cased recipients under a key derived from the same
secret: the same recipients give the same marker, which tells staff "the same patron" without
the address) and the recipients' domains (`***@example.jp`, as the log redactor shows them).

The key is checked before anything is read: `meta.queue_key_check` (8 bytes of an HMAC under the
key, nothing about the key itself) says which key the pending mails are sealed under. While any
mail is pending, a secret store without `mail.queue_key` (restored from an older backup) or with
another one refuses the queue (`MailQueueKeyMissing`, `MailQueueKeyMismatch`): a new key would
make every pending mail unreadable, and nothing erases a token because of a key. Only a queue with
nothing pending gets a new key. A file from before the check (schema version 1) records it at its
first open, once the key has opened its newest token.

A mail some of whose recipients the server refused for now (4xx to RCPT) while it took the others
is `narrow`ed: its token is sealed again with those recipients only, so the retry reaches them and
no one gets it twice; `delivered` and `refused` (the permanent refusals, addresses masked) travel
in the token so the mail's last word can say what became of the others.

A feature may take back a mail it no longer stands behind (a locker assignment cancelled before
its code went out): `withdraw` fails a pending row and erases its token in one statement. Rows the
sender has read (`due_batch`) and not yet settled are "being sent": the row is failed all the same,
but the sender already holds its text and may hand it to the server, so the answer says so; once a
row is no longer pending, only `mark_sent` still changes it (what the server took was sent), so a
withdrawn row is never deferred, narrowed (sealed again) or failed over.

A due row whose content this version's `Mail` refuses (an earlier version queued it with checks
that let more through, e.g. a subject with U+2028) is not a `Pending`: `due_batch` hands it to the
sender as `Unsendable`, which fails it alone; it never stands in front of the rest.

Two windows remain, both sending a mail twice (at least once; SMTP has no idempotency): the server
accepted the data and the process died before the row was marked sent (or narrowed); and the server
stored the message and the connection broke before its reply to the final "." (the mail waits, and
is sent again).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from gateway import redact
from gateway.errors import ConfigError
from gateway.mail.message import Mail, MailError
from gateway.secrets import SecretStore
from gateway.storage.files import open_store
from gateway.storage.schema import migrate

__all__ = [
    "QUEUE_FILE",
    "SCHEMA_VERSION",
    "DueBatch",
    "MailFailure",
    "MailQueue",
    "MailQueueKeyError",
    "MailQueueKeyMismatch",
    "MailQueueKeyMissing",
    "MailState",
    "MailStatus",
    "Pending",
    "Unsendable",
    "Withdrawal",
    "key_check",
]

QUEUE_FILE = "mail.db"
KEY_SECRET = "mail.queue_key"
SCHEMA_VERSION = 2  # len(MIGRATIONS)
FAILURES_LIMIT = 200
_CHECK = b"edgegw mail queue key check v1"
# a token the queue's key does not open waits this long before it is tried again (never erased)
UNREADABLE_RETRY_S = 3600.0

_SCHEMA = """
CREATE TABLE mails (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    purpose TEXT NOT NULL,
    reference TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    done_at REAL,
    payload BLOB,              -- Fernet token of the recipients, subject and bodies; NULL once done
    marker TEXT NOT NULL,      -- m1:<hmac> of the recipients, kept after the payload is erased
    domains TEXT NOT NULL,     -- ***@domain of each recipient, comma-separated
    recipients INTEGER NOT NULL
);
CREATE INDEX mails_due ON mails (state, next_attempt_at) WHERE state = 'pending';
"""
# version 2: meta.queue_key_check, which key the pending mails are sealed under
_META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
MIGRATIONS = (_SCHEMA, _META)  # MIGRATIONS[i] takes a file from version i to i+1 (gateway/storage/schema.py)
STORE = "mail queue"  # as its errors name it
TABLES = ("mails",)  # its own since version 1 (meta is other stores' too)


class MailQueueKeyError(ConfigError):
    """`mail.queue_key` in the secret store cannot open the pending mails; a new key would lose them all."""

    code = "mail_queue_key"

    def __init__(self, message: str) -> None:
        super().__init__([message])
        self.params["secret"] = KEY_SECRET


class MailQueueKeyMissing(MailQueueKeyError):
    """Mails are pending, sealed under a key the secret store does not hold."""

    code = "mail_queue_key_missing"


class MailQueueKeyMismatch(MailQueueKeyError):
    """Mails are pending, sealed under another key than the one the secret store holds."""

    code = "mail_queue_key_mismatch"


class MailState(enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class MailStatus:
    """What may be shown about one mail: never its recipients, subject or text."""

    id: int
    state: MailState
    purpose: str
    reference: str
    created_at: float
    attempts: int
    next_attempt_at: float | None  # pending only
    done_at: float | None  # when it was sent or failed
    last_error: str | None  # the server's reply or the connection problem, addresses masked
    marker: str
    domains: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "purpose": self.purpose,
            "reference": self.reference,
            "created_at": self.created_at,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "done_at": self.done_at,
            "last_error": self.last_error,
            "marker": self.marker,
            "domains": list(self.domains),
        }


MailFailure = MailStatus  # a failed mail's status; `failures()` returns these


class Withdrawal(enum.Enum):
    """What `withdraw` found, and did."""

    WITHDRAWN = "withdrawn"  # it was pending: failed now, its token erased; nothing left the box
    SENDING = "sending"  # pending but read by the sender: failed now, and may still reach its recipients
    SENT = "sent"  # the server took it already
    FAILED = "failed"  # failed (or withdrawn) before: nothing was sent
    UNKNOWN = "unknown"  # no such mail


WITHDRAWN_PREFIX = "withdrawn: "  # the start of a withdrawn row's `last_error`


@dataclass(frozen=True, slots=True)
class Pending:
    """A due mail as the sender reads it (decrypted): only in memory, only while it is sent.

    After a `narrow`, `mail.to` holds the recipients still owed; `delivered` is how many others got it
    in earlier attempts and `refused` their permanent refusals (`***@domain: <reply>`).
    """

    id: int
    attempts: int
    created_at: float
    mail: Mail
    delivered: int = 0
    refused: tuple[str, ...] = ()

    @property
    def purpose(self) -> str:
        return self.mail.purpose

    @property
    def reference(self) -> str:
        return self.mail.reference


@dataclass(frozen=True, slots=True)
class Unsendable:
    """A due mail whose stored content this version's `Mail` refuses (an earlier version queued it).

    `error` is the `MailError`, which never quotes an address or the subject.
    """

    id: int
    attempts: int
    created_at: float
    purpose: str
    reference: str
    error: str
    delivered: int = 0
    refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DueBatch:
    pending: list[Pending]
    unsendable: list[Unsendable]


def _domains(to: tuple[str, ...]) -> str:
    return ",".join("***@" + a.rpartition("@")[2].lower() for a in to)


class MailQueue:
    """The durable queue. Open with `await MailQueue.open(data_dir)`; one connection, calls serialized.

    `wakeup` is set by `enqueue` so a waiting sender starts at once.
    """

    def __init__(self, path: Path, fernet: Fernet, marker_key: bytes, clock: Callable[[], float]) -> None:
        self.path = path
        self._fernet = fernet
        self._marker_key = marker_key
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.wakeup = asyncio.Event()
        self.enqueued = 0
        # read by the sender (`due_batch`) and not yet marked: it holds their text (see the module docstring)
        self._sending: set[int] = set()
        # the sender's diagnostics once one delivers this queue (MailSender sets it)
        self.diagnostics_source: Callable[[], dict[str, Any]] | None = None

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    async def open(cls, data_dir: Path | str, *, clock: Callable[[], float] = time.time) -> MailQueue:
        """The queue in `data_dir`; MailQueueKeyError when the secret store's key cannot open its pending mails."""
        data_dir = Path(data_dir)
        path = data_dir / QUEUE_FILE
        db, fernet, marker_key = await asyncio.to_thread(_open, data_dir, path)
        queue = cls(path, fernet, marker_key, clock)
        queue._db = db
        return queue

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await asyncio.to_thread(close)

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            if self._db is None:
                raise RuntimeError(f"{self.path}: mail queue is closed")
            return fn(self._db)

    async def _call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await asyncio.to_thread(self._run, fn)

    # --- the API features use --------------------------------------------------------------------

    def marker(self, to: tuple[str, ...] | str) -> str:
        """The pseudonymous marker of these recipients (what a row keeps after its payload is erased)."""
        addresses = (to,) if isinstance(to, str) else to
        joined = "\n".join(sorted(a.strip().lower() for a in addresses)).encode()
        digest = hmac.new(self._marker_key, joined, hashlib.sha256).digest()[:16]
        return "m1:" + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _seal(self, mail: Mail, **extra: object) -> bytes:
        content = {"to": list(mail.to), "subject": mail.subject, "text": mail.text, "html": mail.html} | extra
        return self._fernet.encrypt(json.dumps(content, ensure_ascii=False).encode())

    async def enqueue(self, mail: Mail) -> int:
        """Store `mail` durably and return its id; the sender is woken at once."""
        payload = self._seal(mail)
        now = self._clock()
        row = (now, mail.purpose, mail.reference, now, payload, self.marker(mail.to), _domains(mail.to), len(mail.to))

        def insert(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO mails (created_at, purpose, reference, state, next_attempt_at, payload, marker, domains,"
                " recipients) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                row,
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

        mail_id: int = await self._call(insert)
        self.enqueued += 1
        self.wakeup.set()
        return mail_id

    async def withdraw(self, mail_id: int, reason: str) -> Withdrawal:
        """Take back a mail not sent yet: failed with `withdrawn: <reason>` and its token erased, in one
        statement; what it found says whether anything left or may still leave (`Withdrawal`).
        `reason` is shown to staff (`last_error`), so never personal data."""
        now = self._clock()

        def take(db: sqlite3.Connection) -> Withdrawal:
            cur = db.execute(
                "UPDATE mails SET state = 'failed', done_at = ?, payload = NULL, last_error = ?"
                " WHERE id = ? AND state = 'pending'",
                (now, WITHDRAWN_PREFIX + reason, mail_id),
            )
            if cur.rowcount:
                return Withdrawal.SENDING if mail_id in self._sending else Withdrawal.WITHDRAWN
            row = db.execute("SELECT state FROM mails WHERE id = ?", (mail_id,)).fetchone()
            if row is None:
                return Withdrawal.UNKNOWN
            return Withdrawal.SENT if row[0] == MailState.SENT.value else Withdrawal.FAILED

        outcome: Withdrawal = await self._call(take)
        return outcome

    async def by_reference(self, purpose: str, reference: str) -> list[MailStatus]:
        """The mails a feature queued under its own id for them, oldest first (a crash may have left the feature
        without the mail's id: this finds it again)."""
        rows = await self._call(
            lambda db: db.execute(
                _SELECT + " WHERE purpose = ? AND reference = ? ORDER BY id", (purpose, reference)
            ).fetchall()
        )
        return [_status(r) for r in rows]

    def diagnostics(self) -> dict[str, Any]:
        """The sender's counters and the queue's counts (as `mail.status` without an id); no personal data."""
        if self.diagnostics_source is None:
            return {"enqueued": self.enqueued, "sender": None}
        return self.diagnostics_source() | {"enqueued": self.enqueued}

    async def status(self, mail_id: int) -> MailStatus | None:
        rows = await self._call(lambda db: db.execute(_SELECT + " WHERE id = ?", (mail_id,)).fetchall())
        return _status(rows[0]) if rows else None

    async def failures(self, limit: int = FAILURES_LIMIT, purpose: str | None = None) -> list[MailStatus]:
        """Failed mails, newest first; with `purpose` only that feature's."""
        where = " WHERE state = 'failed'" + (" AND purpose = ?" if purpose is not None else "")
        args: tuple[Any, ...] = (purpose, limit) if purpose is not None else (limit,)
        rows = await self._call(
            lambda db: db.execute(_SELECT + where + " ORDER BY done_at DESC LIMIT ?", args).fetchall()
        )
        return [_status(r) for r in rows]

    async def counts(self) -> dict[str, Any]:
        """Mails per state, and the oldest pending one's enqueue time (None when none is pending)."""

        def read(db: sqlite3.Connection) -> dict[str, Any]:
            out: dict[str, Any] = {s.value: 0 for s in MailState}
            out.update(db.execute("SELECT state, count(*) FROM mails GROUP BY state").fetchall())
            out["oldest_pending_at"] = db.execute(
                "SELECT min(created_at) FROM mails WHERE state = 'pending'"
            ).fetchone()[0]
            return out

        result: dict[str, Any] = await self._call(read)
        return result

    # --- the sender's side -------------------------------------------------------------------------

    async def due(self, now: float, limit: int = 20) -> list[Pending]:
        """Pending mails whose time has come, oldest first, decrypted for sending (without the unsendable)."""
        return (await self.due_batch(now, limit)).pending

    async def due_batch(self, now: float, limit: int = 20) -> DueBatch:
        """Pending mails whose time has come, oldest first, decrypted for sending; those whose content
        this version refuses apart, for the sender to fail (they stay pending until it does)."""
        rows = await self._call(
            lambda db: db.execute(
                "SELECT id, attempts, created_at, purpose, reference, payload FROM mails"
                " WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
                (now, limit),
            ).fetchall()
        )
        out = []
        unsendable = []
        for mail_id, attempts, created_at, purpose, reference, payload in rows:
            try:
                data = json.loads(self._fernet.decrypt(payload))
            except InvalidToken:
                # `open` checked the key, so this one token was sealed under another: kept, never erased
                error = (
                    f"cannot be decrypted with secret:{KEY_SECRET}, got a token sealed under another key; "
                    "kept until that key is back"
                )
                await self.defer(mail_id, error, now + UNREADABLE_RETRY_S, attempted=False)
                continue
            delivered, refused = data.get("delivered", 0), tuple(data.get("refused", ()))
            try:
                mail = Mail(
                    to=tuple(data["to"]),
                    subject=data["subject"],
                    text=data["text"],
                    html=data["html"],
                    purpose=purpose,
                    reference=reference,
                )
            except MailError as exc:
                unsendable.append(
                    Unsendable(mail_id, attempts, created_at, purpose, reference, str(exc), delivered, refused)
                )
                continue
            out.append(Pending(mail_id, attempts, created_at, mail, delivered, refused))
        # the sender handles one batch at a time: what an earlier one left unmarked (a pass that raised) is
        # pending again and read anew, or not due and no longer in its hands
        self._sending = {p.id for p in out} | {u.id for u in unsendable}
        return DueBatch(out, unsendable)

    async def next_due_at(self) -> float | None:
        rows = await self._call(
            lambda db: db.execute("SELECT min(next_attempt_at) FROM mails WHERE state = 'pending'").fetchone()
        )
        value: float | None = rows[0]
        return value

    async def mark_sent(self, mail_id: int, note: str | None = None) -> None:
        """Sent; `note`: what the server refused of it (some recipients refused permanently, addresses masked)."""
        now = self._clock()
        # also a row withdrawn while it was being sent: the server took it, so it was sent
        await self._call(
            lambda db: db.execute(
                "UPDATE mails SET state = 'sent', done_at = ?, payload = NULL, attempts = attempts + 1,"
                " last_error = ? WHERE id = ?",
                (now, note, mail_id),
            )
        )
        self._sending.discard(mail_id)

    async def mark_failed(self, mail_id: int, error: str) -> None:
        now = self._clock()
        await self._call(
            lambda db: db.execute(
                "UPDATE mails SET state = 'failed', done_at = ?, payload = NULL, attempts = attempts + 1,"
                " last_error = ? WHERE id = ? AND state = 'pending'",
                (now, error, mail_id),
            )
        )
        self._sending.discard(mail_id)

    async def defer(self, mail_id: int, error: str, next_attempt_at: float, *, attempted: bool = True) -> None:
        """Leave it pending until `next_attempt_at`; `attempted`: the server saw it (a 4xx reply)."""
        await self._call(
            lambda db: db.execute(
                "UPDATE mails SET next_attempt_at = ?, last_error = ?, attempts = attempts + ?"
                " WHERE id = ? AND state = 'pending'",
                (next_attempt_at, error, int(attempted), mail_id),
            )
        )
        self._sending.discard(mail_id)

    async def narrow(self, pending: Pending, to: tuple[str, ...], error: str, next_attempt_at: float) -> None:
        """Pending for `to` only: the rest of `pending.mail.to` got it or was refused for good, which
        `pending.delivered` and `pending.refused` say (the caller's updated copy). Sealed again, deferred."""
        payload = self._seal(replace(pending.mail, to=to), delivered=pending.delivered, refused=list(pending.refused))
        # a withdrawn row stays erased: its token is not sealed again
        await self._call(
            lambda db: db.execute(
                "UPDATE mails SET payload = ?, next_attempt_at = ?, last_error = ?, attempts = attempts + 1"
                " WHERE id = ? AND state = 'pending'",
                (payload, next_attempt_at, error, pending.id),
            )
        )
        self._sending.discard(pending.id)

    async def raw_row(self, mail_id: int) -> dict[str, Any] | None:
        """Every column of a row as stored (for tests and `edgegw mail` diagnostics; the payload is ciphertext)."""

        def read(db: sqlite3.Connection) -> dict[str, Any] | None:
            cur = db.execute("SELECT * FROM mails WHERE id = ?", (mail_id,))
            row = cur.fetchone()
            return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))

        result: dict[str, Any] | None = await self._call(read)
        return result


_SELECT = (
    "SELECT id, state, purpose, reference, created_at, attempts, next_attempt_at, done_at, last_error, marker,"
    " domains FROM mails"
)


def _status(row: tuple[Any, ...]) -> MailStatus:
    mail_id, state, purpose, reference, created_at, attempts, next_at, done_at, error, marker, domains = row
    st = MailState(state)
    return MailStatus(
        id=mail_id,
        state=st,
        purpose=purpose,
        reference=reference,
        created_at=created_at,
        attempts=attempts,
        next_attempt_at=next_at if st is MailState.PENDING else None,
        done_at=done_at,
        last_error=error,
        marker=marker,
        domains=tuple(domains.split(",")) if domains else (),
    )


def _open(data_dir: Path, path: Path) -> tuple[sqlite3.Connection, Fernet, bytes]:
    """The file, migrated, with its Fernet key (checked against the pending mails) and the marker key."""
    # synchronous=FULL: enqueue's promise, on disk when it returns; secure_delete: an erased payload is
    # overwritten, not left in a free page
    db = open_store(path, STORE, tables=TABLES, pragmas=("synchronous=FULL", "secure_delete=ON"), timeout=5.0)
    try:
        migrate(db, path, MIGRATIONS, store=STORE)  # a newer file is refused untouched
        key = _key(SecretStore(data_dir), db, path)
    except BaseException:
        db.close()
        raise
    redact.register(key)
    marker_key = hmac.new(key.encode(), b"edgegw mail recipient marker v1", hashlib.sha256).digest()
    return db, Fernet(key.encode()), marker_key


def key_check(key: str) -> bytes:
    """8 bytes that tell whether a key is the one the pending mails are sealed under (and nothing about the key)."""
    return hmac.new(key.encode(), _CHECK, hashlib.sha256).digest()[:8]


def _key(store: SecretStore, db: sqlite3.Connection, path: Path) -> str:
    """`mail.queue_key`: the one the pending mails are sealed under, or a new one when none is pending."""
    row = db.execute("SELECT value FROM meta WHERE key = 'queue_key_check'").fetchone()
    check: bytes | None = None if row is None else bytes(row[0])
    sealed: int = db.execute("SELECT count(*) FROM mails WHERE payload IS NOT NULL").fetchone()[0]
    # The key after the mails: a process sealing one made its key durable first, so a mail seen here
    # has its key in the store. Read the other way round, a process opening the queue as another
    # made the key and sealed a mail saw the mail and not yet the key, and refused the queue.
    key = store.get(KEY_SECRET) if KEY_SECRET in store.names() else None
    where = f"mail queue {path}: {sealed} pending mail(s)"
    fix = (
        f"put back the secret store (secrets.enc with its secrets.key) that holds the key they were sealed with, "
        f"or set it with `edgegw secret set {KEY_SECRET}`, and start again; to give those mails up, move {path} aside"
    )
    if sealed:
        if key is None:
            raise MailQueueKeyMissing(
                f"{where} are sealed under secret:{KEY_SECRET}, got a secret store {store.store_path} without it; {fix}"
            )
        if check is None:  # a file from before the check: the key must open its newest token
            (newest,) = db.execute(
                "SELECT payload FROM mails WHERE payload IS NOT NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
            matches = _opens(key, newest)
        else:
            matches = hmac.compare_digest(key_check(key), check)
        if not matches:
            raise MailQueueKeyMismatch(
                f"{where} are sealed under another key than secret:{KEY_SECRET} in the secret store "
                f"{store.store_path}, got a key that does not open them; {fix}"
            )
    elif key is None:
        # written and fsync'd before anything is sealed under it; another process starting at the same
        # moment (the web UI, the CLI) gets the same key, not one of its own
        key = store.get_or_create(KEY_SECRET, lambda: Fernet.generate_key().decode())
    if check != key_check(key):
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('queue_key_check', ?)", (key_check(key),))
    return key


def _opens(key: str, token: bytes) -> bool:
    try:
        Fernet(key.encode()).decrypt(token)
    except InvalidToken:
        return False
    return True
