"""The pickup flow's record of truth: assignments, one-time codes (as keyed hashes), tries, pickups; sqlite, schema-versioned.

Theory of operation. Staff assign a free compartment to a reservation: an `Assignment` in state
`reserved` with the patron's e-mail address, the HMAC of a random one-time code and a deadline.
At the kiosk the patron gives compartment and code: a right code moves it to `opened`, stored
before the unlock is sent; a wrong one counts, and after `max_wrong` the compartment's code entry is
locked until staff reset it. The code is spent (its hash dropped) once the door is seen open
(`seen_open`; the adapter takes a compartment seen emptied behind its locked door for that too); until
then it neither opens the door again nor is lost: the door known not to have opened (the lock still
reads locked, the unlock never sent), or not seen open in time (also after a crash between the code
check and the unlock), gives it back (`give_back`), the hash kept for that
since the clear code exists only in the patron's e-mail. When the door of an `opened` compartment,
seen open, closes on an empty compartment the assignment is `collected`, the e-mail address is
erased, and a pickup event is owed to the platform (`event_pending`) until the adapter has emitted
it, so a crash between the two re-sends it (its entity id makes the replay idempotent). A `reserved`
assignment past its deadline becomes `overdue` (the code stops working; staff decide). `cancelled`
ends one by staff.

A code that stopped working is still in a patron's mail, and typed at its compartment after staff
reassigned it, it would count as a wrong try against the next assignment (and lock that patron out).
So an ended code's hash stays for `ended_kept_s` (the adapter: `valid_days`) after it ended (the
cancel; the deadline, also for one cancelled later; the pickup) and its try is answered CANCELLED,
EXPIRED or USED, counting against nobody; it is never issued again meanwhile (the uniqueness lookup
covers every kept hash). `forget_ended` drops them after. A used code's hash is kept marked
(`spent:` before it), since an `opened` row without a live hash is one whose door was seen open.

    reserved ──right code──► opened, hash kept ──door seen open──► opened, spent ──door closed, empty──► collected, spent
       ▲                          │
       └──────give_back───────────┘   (door not opened, or not seen open in time)
    reserved ──deadline──► overdue, hash kept ──staff──► cancelled;  any active ──staff──► cancelled, hash kept
    cancelled, overdue, collected ──ended_kept_s after the code ended──► hash dropped     (spent: the hash marked)

"Seen open" is an `opened` row without its live hash (none, or marked spent), so no schema change came
with it: rows the previous release left `opened` had their hash dropped at the code check and count
as seen open. That release kept `opened` only once its status after the unlock showed the door open
(anything else gave the code back), except when killed between the two, which no file can tell apart
now; and either way a row without its hash could not be given back.

Every change is one transaction with `synchronous=FULL` in WAL mode: a `kill -9` loses nothing
that a caller was told. Codes are stored only as HMAC-SHA-256 under a key kept in a 0600 file
beside the database, which also makes "unique among active codes" a lookup.

The address is never in the file in clear: `email_sealed` holds it sealed with AES-256-GCM under
the store's key in the gateway's secret store (`address_seal.py`), bound to the assignment id.
Erasing it sets the column NULL with `secure_delete` on (the ciphertext's bytes are zeroed, not
left in free space) and then truncates the WAL, so the old page images go too. A sealed value
that does not open (key replaced, value moved to another row) reads as no address, counted in
`unreadable_addresses` and logged once.

The schema version is `PRAGMA user_version` (gateway/storage/schema.py). Version 1 was the first
release's layout, which kept its version in `meta` and the address in clear; it is taken to 2
(addresses sealed in the same transaction, then the file vacuumed and its WAL truncated so no
old page keeps them). `meta.schema_version` follows, so the first release refuses a newer file.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.locker.address_seal import AddressSeal, AddressUnreadable, secret_name
from gateway.errors import GatewayError
from gateway.logs import component_logger
from gateway.storage.files import SharedConnection, create_whole, immediate, open_store
from gateway.storage.schema import Migrations, migrate

__all__ = ["ACTIVE", "SCHEMA_VERSION", "Assignment", "CodeCheck", "PickupError", "PickupState", "PickupStore"]

SCHEMA_VERSION = 2  # len(_migrations(...))
BUSY_TIMEOUT_MS = 5000  # sqlite3.connect's default
STORE = "locker store"  # as its errors name it
TABLES = ("assignments",)  # its own since the first release (meta is other stores' too)


class PickupError(GatewayError, ValueError):
    code = "locker_pickup"


class PickupState(enum.Enum):
    RESERVED = "reserved"
    OPENED = "opened"
    OVERDUE = "overdue"
    COLLECTED = "collected"
    CANCELLED = "cancelled"


ACTIVE = (PickupState.RESERVED, PickupState.OPENED, PickupState.OVERDUE)
_ACTIVE_SQL = "('reserved','opened','overdue')"
# A used code's hash once its door was seen open: kept (marked, so it is no live code) to tell it apart later.
SPENT = "spent:"
# The code was used and the door has not been seen open since: the code's hash is kept (module docstring).
_UNSEEN = f"state='opened' AND code_hash IS NOT NULL AND code_hash NOT LIKE '{SPENT}%'"
_SEEN = f"state='opened' AND (code_hash IS NULL OR code_hash LIKE '{SPENT}%')"
# When a code stopped working, for `forget_ended`: the cancel, or the deadline if that came first; the pickup
_ENDED_AT = (
    "CASE state WHEN 'cancelled' THEN MIN(closed_at, expires_at) WHEN 'overdue' THEN expires_at "
    "WHEN 'collected' THEN closed_at END"
)


class CodeCheck(enum.Enum):
    OK = "ok"
    UNCONFIRMED = "unconfirmed"  # the right code, already used: its door has not been seen open yet
    WRONG = "wrong"
    LOCKED = "locked"  # too many wrong codes: staff must reset
    NO_CODE = "no_code"  # no live code in this compartment (none reserved, overdue, or its door seen open)
    CANCELLED = "cancelled"  # the code of an assignment staff cancelled (its mail may have reached the patron)
    EXPIRED = "expired"  # the code of an assignment past its deadline (overdue, or cancelled after it)
    USED = "used"  # the code that collected this compartment's last book


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    id: int
    label: str
    reference: str
    state: PickupState
    created_at: float
    expires_at: float
    wrong: int
    mail_id: int | None
    opened_at: float | None
    closed_at: float | None
    has_email: bool
    event_pending: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "reference": self.reference,
            "state": self.state.value,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "wrong": self.wrong,
            "mail_id": self.mail_id,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
        }


# Version 1 as the first release wrote it (IF NOT EXISTS: that release left user_version at 0).
_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    reference TEXT NOT NULL,
    email TEXT,
    code_hash TEXT,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    wrong INTEGER NOT NULL DEFAULT 0,
    mail_id INTEGER,
    opened_at REAL,
    closed_at REAL,
    event_pending INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_per_compartment
    ON assignments(label) WHERE state IN ('reserved','opened','overdue');
CREATE UNIQUE INDEX IF NOT EXISTS one_active_code
    ON assignments(code_hash) WHERE code_hash IS NOT NULL;
INSERT OR IGNORE INTO meta VALUES ('schema_version', '1');
"""
_COLUMNS = (
    "id, label, reference, state, created_at, expires_at, wrong, mail_id, opened_at, closed_at, "
    "email_sealed IS NOT NULL, event_pending"
)


def _seal_addresses(seal: AddressSeal) -> Callable[[sqlite3.Connection], None]:
    """Version 1 → 2: every clear address sealed into `email_sealed`, the clear column dropped."""

    def step(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE assignments ADD COLUMN email_sealed BLOB")
        for assignment_id, email in db.execute("SELECT id, email FROM assignments WHERE email IS NOT NULL").fetchall():
            db.execute(
                "UPDATE assignments SET email_sealed=?, email=NULL WHERE id=?",
                (seal.seal(assignment_id, email), assignment_id),
            )
        db.execute("ALTER TABLE assignments DROP COLUMN email")
        db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")

    return step


def _migrations(seal: AddressSeal) -> Migrations:
    """`[i]` takes a file from version i to i + 1; the sealing step needs the store's key."""
    return (_SCHEMA_1, _seal_addresses(seal))


def _row(r: tuple[Any, ...]) -> Assignment:
    return Assignment(
        id=r[0],
        label=r[1],
        reference=r[2],
        state=PickupState(r[3]),
        created_at=r[4],
        expires_at=r[5],
        wrong=r[6],
        mail_id=r[7],
        opened_at=r[8],
        closed_at=r[9],
        has_email=bool(r[10]),
        event_pending=bool(r[11]),
    )


class PickupStore:
    """`<data_dir>/locker-<adapter>.db`; synchronous calls, cheap (one small transaction each)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float],
        code_length: int = 6,
        max_wrong: int = 5,
        ended_kept_s: float = 7 * 86400,
    ) -> None:
        self.path = path
        self.clock = clock
        self.code_length = code_length
        self.max_wrong = max_wrong
        self.ended_kept_s = ended_kept_s
        self._log = component_logger(__name__, path.stem.removeprefix("locker-"))
        self.unreadable_addresses = 0  # sealed addresses that did not open (read as no address)
        # secure_delete: an erased address is overwritten, not left in free space
        pragmas = ("synchronous=FULL", "secure_delete=ON")
        # opened before the keys are made: a file that is no store of this kind gets none
        self._db = open_store(path, STORE, tables=TABLES, pragmas=pragmas, timeout=BUSY_TIMEOUT_MS / 1000)
        self._shared = SharedConnection(
            self._db,
            lambda: PickupError(f"{STORE} {path}: closed, the locker adapter has stopped; try again once it runs"),
        )
        try:
            self._key = _key(path.with_suffix(".key"))
            self._seal = AddressSeal.from_secret_store(path.parent, secret_name(path), where=f"{STORE} {path}")
            upgrade = migrate(self._db, path, _migrations(self._seal), PickupError, store=STORE)
            if upgrade.changed:
                # a first-release file (user_version 0 like a new one) may hold clear addresses in free
                # space (rows it erased) and in old WAL frames: the file is rebuilt and the WAL emptied
                self._db.execute("VACUUM")
                self._truncate_wal()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Waits for a call still running in a worker thread (SharedConnection)."""
        self._shared.close()

    def _truncate_wal(self) -> None:
        """Old page images leave the -wal file; skipped rather than waited for while another connection reads."""
        self._db.execute("PRAGMA busy_timeout=0")
        try:
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if busy:
            self._log.debug("locker store %s: WAL not truncated, another connection is reading", self.path)

    @contextlib.contextmanager
    def _tx(self, *, erasing: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction. `erasing`: the WAL truncated after its commit (old page images hold what it erased),
        in the same hold of the connection: a close that came between the two made a committed erasure raise
        "closed" to its caller."""
        with self._shared.held() as held:
            with immediate(held) as db:
                yield db
            if erasing:
                self._truncate_wal()

    def _hash(self, code: str) -> str:
        return hmac.new(self._key, code.encode(), hashlib.sha256).hexdigest()

    # --- reads --------------------------------------------------------------------------------------------

    def active(self) -> dict[str, Assignment]:
        with self._shared.held() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM assignments WHERE state IN {_ACTIVE_SQL}").fetchall()
        return {r[1]: _row(r) for r in rows}

    def get(self, assignment_id: int) -> Assignment | None:
        with self._shared.held() as db:
            r = db.execute(f"SELECT {_COLUMNS} FROM assignments WHERE id=?", (assignment_id,)).fetchone()
        return None if r is None else _row(r)

    def pending_events(self) -> list[Assignment]:
        with self._shared.held() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM assignments WHERE event_pending=1 ORDER BY id").fetchall()
        return [_row(r) for r in rows]

    def email_of(self, assignment_id: int) -> str | None:
        """The patron's address, opened for the moment it is used; None once erased or when it does not open."""
        with self._shared.held() as db:
            r = db.execute("SELECT email_sealed FROM assignments WHERE id=?", (assignment_id,)).fetchone()
        if r is None or r[0] is None:
            return None
        try:
            return self._seal.open(assignment_id, r[0])
        except AddressUnreadable as exc:
            self.unreadable_addresses += 1
            # the message names the assignment, never an address; once per store, then counted
            level = logging.WARNING if self.unreadable_addresses == 1 else logging.DEBUG
            self._log.log(level, "%s; counted in unreadable_addresses", exc)
            return None

    # --- changes ------------------------------------------------------------------------------------------

    def assign(self, label: str, *, email: str, reference: str, valid_s: float) -> tuple[Assignment, str]:
        """A new reservation in a free compartment; returns it and the code (the only time it exists in clear)."""
        now = self.clock()
        with self._tx() as db:
            busy = db.execute(
                f"SELECT state FROM assignments WHERE label=? AND state IN {_ACTIVE_SQL}", (label,)
            ).fetchone()
            if busy is not None:
                raise PickupError(f"compartment {label}: is not free, got state {busy[0]}; pick a free one")
            for _ in range(100):
                code = "".join(secrets.choice("0123456789") for _ in range(self.code_length))
                digest = self._hash(code)
                kept = (digest, SPENT + digest)  # a used code's too: a new patron's code must not read as used
                if db.execute("SELECT 1 FROM assignments WHERE code_hash IN (?, ?)", kept).fetchone() is None:
                    break
            else:  # pragma: no cover - 100 collisions in a row means the code space is nearly full
                raise PickupError(f"compartment {label}: no unused code found, got {self.code_length} digits")
            cur = db.execute(
                "INSERT INTO assignments (label, reference, code_hash, state, created_at, expires_at) "
                "VALUES (?, ?, ?, 'reserved', ?, ?)",
                (label, reference, digest, now, now + valid_s),
            )
            assert cur.lastrowid is not None
            assignment_id = cur.lastrowid
            # sealed for this id (known once inserted): the same transaction, one commit
            db.execute(
                "UPDATE assignments SET email_sealed=? WHERE id=?",
                (self._seal.seal(assignment_id, email), assignment_id),
            )
        got = self.get(assignment_id)
        assert got is not None
        return got, code

    def set_mail(self, assignment_id: int, mail_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE assignments SET mail_id=? WHERE id=?", (mail_id, assignment_id))

    def check_code(self, label: str, code: str) -> tuple[CodeCheck, Assignment | None]:
        """Count a try at the kiosk; a right code moves the assignment to `opened` (stored before the unlock).

        The code stays until its door is seen open: given again meanwhile it is UNCONFIRMED, and opens nothing.
        A code of this compartment that ended in the last `ended_kept_s` is CANCELLED, EXPIRED or USED (with its
        assignment): a patron holding an old code, not a guess at the live one, so no try is counted.
        """
        now = self.clock()
        digest = self._hash(code)
        with self._tx() as db:
            ended = _ended(db, label, digest, now, self.ended_kept_s)
            check, found = ended if ended is not None else _try_live(db, label, digest, now, self.max_wrong)
            if check is CodeCheck.OK:
                db.execute("UPDATE assignments SET state='opened', opened_at=? WHERE id=?", (now, found))
        return check, None if found is None else self.get(found)

    def unconfirmed(self) -> list[Assignment]:
        """Assignments whose code was used and whose door has not been seen open since (at start: maybe never sent)."""
        with self._shared.held() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM assignments WHERE {_UNSEEN} ORDER BY id").fetchall()
        return [_row(r) for r in rows]

    def seen_open(self, assignment_id: int) -> Assignment | None:
        """The door opened after the code was used: the code is spent; None when it was decided already."""
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE assignments SET code_hash=? || code_hash WHERE id=? AND {_UNSEEN}", (SPENT, assignment_id)
            )
        return self.get(assignment_id) if cur.rowcount else None

    def give_back(self, assignment_id: int) -> Assignment | None:
        """The door did not open after the code was used (or was not seen open): the code works again.

        None when it was decided already (seen open, cancelled).
        """
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE assignments SET state='reserved', opened_at=NULL WHERE id=? AND {_UNSEEN}", (assignment_id,)
            )
        return self.get(assignment_id) if cur.rowcount else None

    def unspend(self, assignment_id: int, code: str) -> Assignment | None:
        """`give_back` for a caller holding the code: only when it is the assignment's code."""
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE assignments SET state='reserved', opened_at=NULL WHERE id=? AND code_hash=? AND {_UNSEEN}",
                (assignment_id, self._hash(code)),
            )
        return self.get(assignment_id) if cur.rowcount else None

    def collected(self, label: str) -> Assignment | None:
        """The door of an opened compartment, seen open, closed on an empty compartment: record the pickup."""
        now = self.clock()
        with self._tx() as db:
            r = db.execute(f"SELECT id FROM assignments WHERE label=? AND {_SEEN}", (label,)).fetchone()
            if r is None:
                return None
            db.execute("UPDATE assignments SET state='collected', closed_at=?, event_pending=1 WHERE id=?", (now, r[0]))
        return self.get(r[0])

    def event_sent(self, assignment_id: int) -> None:
        """The pickup event is on the buffer: the address has no use left and is erased."""
        with self._tx(erasing=True) as db:
            db.execute("UPDATE assignments SET event_pending=0, email_sealed=NULL WHERE id=?", (assignment_id,))

    def expire(self) -> list[Assignment]:
        """Reserved assignments past their deadline become `overdue`; their codes stop working (hashes kept)."""
        now = self.clock()
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM assignments WHERE state='reserved' AND expires_at<=?", (now,)
                ).fetchall()
            ]
            for i in ids:
                db.execute("UPDATE assignments SET state='overdue' WHERE id=?", (i,))
        return [a for a in (self.get(i) for i in ids) if a is not None]

    def unmailed(self) -> list[Assignment]:
        """Active assignments with no code mail on record: the gateway stopped between storing one and noting its
        mail (the code exists only in that mail, if it was queued at all)."""
        with self._shared.held() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM assignments WHERE mail_id IS NULL AND state IN {_ACTIVE_SQL} ORDER BY id"
            ).fetchall()
        return [_row(r) for r in rows]

    def cancel(self, label: str, *, assignment: int | None = None) -> Assignment | None:
        """Staff end the active assignment of a compartment (book taken back, wrong compartment); address erased.

        The code's hash stays for `ended_kept_s` (`forget_ended`): its mail may have reached the patron,
        and their try is then told apart from a wrong code against the compartment's next assignment.
        With `assignment`, only that one (an assignment undone because its code mail could not be queued)."""
        now = self.clock()
        only = "" if assignment is None else f" AND id={int(assignment)}"
        with self._tx(erasing=True) as db:
            r = db.execute(
                f"SELECT id FROM assignments WHERE label=? AND state IN {_ACTIVE_SQL}{only}", (label,)
            ).fetchone()
            if r is None:
                return None
            db.execute(
                "UPDATE assignments SET state='cancelled', closed_at=?, email_sealed=NULL WHERE id=?",
                (now, r[0]),
            )
        return self.get(r[0])

    def forget_ended(self) -> int:
        """Hashes of codes that ended (cancelled, expired, used) more than `ended_kept_s` ago are dropped; how many."""
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE assignments SET code_hash=NULL WHERE code_hash IS NOT NULL AND {_ENDED_AT}<=?",
                (self.clock() - self.ended_kept_s,),
            )
        return cur.rowcount

    def reset_tries(self, label: str) -> Assignment | None:
        with self._tx() as db:
            r = db.execute("SELECT id FROM assignments WHERE label=? AND state='reserved'", (label,)).fetchone()
            if r is None:
                return None
            db.execute("UPDATE assignments SET wrong=0 WHERE id=?", (r[0],))
        return self.get(r[0])


def _ended(db: sqlite3.Connection, label: str, digest: str, now: float, kept_s: float) -> tuple[CodeCheck, int] | None:
    """`check_code` against the compartment's codes that ended in the last `kept_s` (and a reserved one past its
    deadline that `expire` has not reached yet); None when the code is none of them."""
    rows = db.execute(
        "SELECT id, state, code_hash, expires_at, closed_at FROM assignments WHERE label=? AND code_hash IN (?, ?)",
        (label, digest, SPENT + digest),
    ).fetchall()
    for assignment_id, state, kept, expires_at, closed_at in rows:
        if kept.startswith(SPENT):
            if state == "collected" and closed_at > now - kept_s:
                return CodeCheck.USED, assignment_id
            continue  # an `opened` row seen open: its compartment is still this patron's (`_try_live`)
        if state == "cancelled" and min(closed_at, expires_at) > now - kept_s:
            return (CodeCheck.EXPIRED if expires_at <= closed_at else CodeCheck.CANCELLED), assignment_id
        if state in ("overdue", "reserved") and now - kept_s < expires_at <= now:
            return CodeCheck.EXPIRED, assignment_id
    return None


def _try_live(
    db: sqlite3.Connection, label: str, digest: str, now: float, max_wrong: int
) -> tuple[CodeCheck, int | None]:
    """`check_code` against the compartment's active assignment: a wrong code counts (in `db`'s transaction);
    the assignment's id only with OK."""
    r = db.execute(
        f"SELECT id, code_hash, wrong, expires_at, state FROM assignments WHERE label=? AND state IN {_ACTIVE_SQL}",
        (label,),
    ).fetchone()
    if r is None or r[1] is None or r[1].startswith(SPENT) or r[4] == "overdue" or (r[4] == "reserved" and now >= r[3]):
        return CodeCheck.NO_CODE, None
    if r[2] >= max_wrong:
        return CodeCheck.LOCKED, None
    if not hmac.compare_digest(r[1], digest):
        db.execute("UPDATE assignments SET wrong=wrong+1 WHERE id=?", (r[0],))
        return (CodeCheck.LOCKED if r[2] + 1 >= max_wrong else CodeCheck.WRONG), None
    if r[4] == "opened":
        return CodeCheck.UNCONFIRMED, None
    return CodeCheck.OK, r[0]


_KEY_BYTES = 32
_log = logging.getLogger(__name__)


def _key(path: Path) -> bytes:
    """The code-hashing key: made once, 0600, beside the database; never in a backup (gateway/backup KEPT_ON_BOX).

    Written whole through a file of its own and linked into place (two processes starting together
    keep one key). A key of the wrong length (an older release killed between creating the file and
    writing it left it empty, and codes were then hashed with an empty key) is moved aside and made
    again: codes issued under it no longer verify, and staff reassign those compartments.
    """
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = None
    if key is not None and len(key) == _KEY_BYTES:
        return key
    if key is not None:
        aside = path.with_name(f"{path.name}.bad-{int(time.time())}")
        os.replace(path, aside)
        _log.warning(
            "locker code key %s: %d bytes, not %d (left by a crash while it was made); moved to %s and made again: "
            "codes issued before no longer verify, cancel and reassign reserved compartments on /lockers",
            path,
            len(key),
            _KEY_BYTES,
            aside.name,
        )
    create_whole(path, secrets.token_bytes(_KEY_BYTES))
    key = path.read_bytes()  # ours, or the one another process linked first
    if len(key) != _KEY_BYTES:  # pragma: no cover - only a file written by something else than this function
        raise PickupError(f"locker code key {path}: {len(key)} bytes, not {_KEY_BYTES}; remove it and start again")
    return key
