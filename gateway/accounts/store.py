"""The accounts of the admin web UI in sqlite: users, roles, lockout, password age, the one-time setup link.

Theory of operation. Every method is synchronous and opens its own connection (the web calls them in a
thread, the CLI directly; both may run at once), and every change runs in one `BEGIN IMMEDIATE`
transaction. `authenticate` reads the row, verifies the password outside any lock (Argon2 takes a
tenth of a second on purpose), then records the outcome in a write transaction that reads the row
again, so two attempts at once both count and start one lockout, not two.

Lockout is per (typed name, client address), in `login_failures`: `lockout_failures` consecutive failures
from one address lock that name for that address only, for `lockout_minutes`; then the count starts
again. A stranger guessing from one address thus locks out only that address, never the admin at
another (an account-wide lock let anyone keep the only admin out for good). A success clears its own
address's count. A streak without a failure for `FAILURES_KEPT_S` is forgotten, which also bounds the table.
Counts and locks are in the file: a restart does not reset them. `failures_since_login` (every failed
attempt, locked or not, from any address) is shown to the user at the next login.
An unknown user name costs the same Argon2 verification as a wrong password (against a dummy hash),
is counted and locked the same way and gives the same answers, so neither the reply, nor its timing,
nor the lockout tells which names exist. A typed name is kept only as an HMAC (key in the file): it may
be a password typed into the wrong box.
The account-wide `users.locked_until` is started only by wrong current passwords at a logged-in session
(`confirm_password`): whoever types them already holds the user's session, so it is no stranger's lever.
`password_changed_at` is also the stamp a web session is checked against on every request (gateway.web.auth),
so a login whose password was replaced while it was being verified fails like a wrong password.

The file has a schema version in `PRAGMA user_version` and forward migrations (`MIGRATIONS`); it is
created with mode 0600 in a directory of mode 0700: it holds password hashes.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from argon2 import PasswordHasher

from gateway.accounts import passwords
from gateway.accounts.schema import migrate
from gateway.errors import GatewayError
from gateway.secret_key_file import present
from gateway.storage.files import durable_connection, immediate, open_store
from gateway.web.config import WebConfig

__all__ = [
    "ACCOUNTS_FILE",
    "AccountError",
    "AccountStore",
    "AuthResult",
    "InvalidUserName",
    "LastAdmin",
    "PasswordRejected",
    "Role",
    "SetupRefused",
    "UnknownUser",
    "User",
    "UserExists",
]

ACCOUNTS_FILE = "accounts.db"
STORE = "account store"  # as its errors name it
TABLES = ("users", "setup_tokens")  # its own since version 1: another store's file has none
FAILURE_KEY = "login_failure_key"
NAME_RULE = "1-64 characters of A-Z a-z 0-9 _ . @ - starting with a letter or digit"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
DAY_S = 86_400.0
HASH_SLOTS = 2
# A streak of failures from one address with no new failure for this long is forgotten (locks run out anyway):
# slow guessing gains little, and a scan of many names from many addresses cannot grow the file without end.
FAILURES_KEPT_S = DAY_S


def _add_login_failures(db: sqlite3.Connection) -> None:
    # users.failed_streak and users.locked_until stay for confirm_password's account-wide lock; a lock of
    # version 1 in force at the upgrade holds for every address until it ends, as it did before
    db.execute(
        """CREATE TABLE login_failures (
            name_key TEXT NOT NULL,
            address TEXT NOT NULL,
            failed_streak INTEGER NOT NULL,
            locked_until REAL,
            last_failed_at REAL NOT NULL,
            PRIMARY KEY (name_key, address)
        )"""
    )
    db.execute(f"CREATE TABLE {FAILURE_KEY} (key BLOB NOT NULL)")
    db.execute(f"INSERT INTO {FAILURE_KEY} (key) VALUES (?)", (secrets.token_bytes(32),))


# Forward migrations: MIGRATIONS[i] takes the file from version i to i + 1; never edit a shipped one.
MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        password_changed_at REAL NOT NULL,
        must_change INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        locked_until REAL,
        failed_streak INTEGER NOT NULL DEFAULT 0,
        failures_since_login INTEGER NOT NULL DEFAULT 0,
        last_login_at REAL,
        last_login_address TEXT,
        language TEXT
    );
    CREATE TABLE setup_tokens (
        token_hash TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL
    );
    """,
    _add_login_failures,
)
SCHEMA_VERSION = len(MIGRATIONS)


class Role(enum.Enum):
    """The box's roles. Admin, technician and viewer are a ladder (an admin may do what a technician may, a
    technician what a viewer may); the others are duties of their own, beside it:

    - librarian: the library's pages (lockers, scanner stations); admins may use them too;
    - wifi-auditor: the Wi-Fi log inquiries, and only they (separation of duties: searching who was
      connected when is for the person answering an inquiry, not for whoever administers the box).
    """

    ADMIN = "admin"
    TECHNICIAN = "technician"
    VIEWER = "viewer"
    LIBRARIAN = "librarian"
    WIFI_AUDITOR = "wifi-auditor"

    def allows(self, needed: Role) -> bool:
        if needed in _LADDER:
            return self in _LADDER and _LADDER[self] >= _LADDER[needed]
        return self is needed or self in _ALSO_ALLOWED.get(needed, ())


_LADDER = {Role.VIEWER: 0, Role.TECHNICIAN: 1, Role.ADMIN: 2}
_ALSO_ALLOWED: dict[Role, frozenset[Role]] = {Role.LIBRARIAN: frozenset({Role.ADMIN})}
# roles whose password ages (the procurement rules' "privileged accounts")
PRIVILEGED = frozenset({Role.ADMIN, Role.TECHNICIAN, Role.WIFI_AUDITOR})  # the inquiry role reads personal data


class AccountError(GatewayError, ValueError):
    """A refused account operation; `key` is the message key the web shows (its catalogs), the CLI maps it."""

    code = "account_error"
    key = "account.error"


class UnknownUser(AccountError, LookupError):
    code = "user_unknown"
    key = "user.unknown"


class UserExists(AccountError):
    code = "user_exists"
    key = "user.exists"


class InvalidUserName(AccountError):
    code = "user_name_invalid"
    key = "user.name_invalid"


class LastAdmin(AccountError):
    """Removing or demoting the only admin would leave nobody able to manage users."""

    code = "user_last_admin"
    key = "user.last_admin"


class PasswordRejected(AccountError):
    """The password breaks the policy; `reasons` are its message keys (gateway.accounts.passwords)."""

    code = "password_rejected"
    key = "password.rejected"

    def __init__(self, where: str, reasons: list[str]) -> None:
        super().__init__(f"{where}: password refused, got {', '.join(reasons)}", reasons=reasons)
        self.reasons = tuple(reasons)


class SetupRefused(AccountError):
    """A setup link that is unknown, used or expired (key "setup.invalid"), or an admin exists ("setup.admin_exists")."""

    code = "setup_refused"
    key = "setup.invalid"

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, kw_only=True)
class User:
    """`locked_until`: the end of the latest lockout of the account, for every address or for one only."""

    name: str
    role: Role
    created_at: float
    password_changed_at: float
    must_change: bool
    locked_until: float | None
    last_login_at: float | None
    last_login_address: str | None
    language: str | None
    disabled: bool = False

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and now < self.locked_until


AuthReason = Literal["ok", "bad_credentials", "locked", "disabled"]


@dataclass(frozen=True, kw_only=True)
class AuthResult:
    """The outcome of one login attempt.

    On success `previous_login` is the login before this one (time, address) and
    `failures_since_last_login` the failed attempts since then, for the page after login to show.
    `locked_now` is true on the one failure that started a lockout (the web audits `lockout` once).
    """

    ok: bool
    reason: AuthReason
    user: User | None = None
    previous_login: tuple[float, str] | None = None
    failures_since_last_login: int = 0
    locked_until: float | None = None
    password_expired: bool = False
    locked_now: bool = False


def _user(row: sqlite3.Row, address_lock: float | None = None) -> User:
    locks = [t for t in (row["locked_until"], address_lock) if t is not None]
    return User(
        name=row["name"],
        role=Role(row["role"]),
        created_at=row["created_at"],
        password_changed_at=row["password_changed_at"],
        must_change=bool(row["must_change"]),
        locked_until=max(locks) if locks else None,
        last_login_at=row["last_login_at"],
        last_login_address=row["last_login_address"],
        language=row["language"],
        disabled=bool(row["disabled"]),
    )


def _admin_exists() -> SetupRefused:
    return SetupRefused("setup link: an admin exists, got a setup link; log in", "setup.admin_exists")


def _setup_invalid() -> SetupRefused:
    return SetupRefused(
        "setup link: unknown, used or expired, got a link that cannot be used; "
        "make a new one with `edgegw user setup-link`",
        "setup.invalid",
    )


def _token_hash(token: str) -> str:
    # the token is 256 random bits: a plain hash is enough to keep a copy of the file from being a setup link
    return hashlib.sha256(token.encode()).hexdigest()


def check_user_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise InvalidUserName(f"user name: must be {NAME_RULE}, got {shown!r}", name=shown)
    return name


class AccountStore:
    """Users of the web UI in `<state_dir>/accounts.db`, with the rules of the `[web]` section.

    `hasher` defaults to Argon2id's RFC 9106 low-memory profile; tests may pass a cheaper one. `create=False`
    opens an existing store only (FileNotFoundError when there is none, nothing made): a command that only
    reads, or changes an account that must exist, leaves no empty store, nor a directory, behind.
    """

    def __init__(
        self, state_dir: Path, config: WebConfig, *, hasher: PasswordHasher | None = None, create: bool = True
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / ACCOUNTS_FILE
        if not create and not present(self.path):  # a PermissionError when this user may not look
            raise FileNotFoundError(errno.ENOENT, "no accounts", str(self.path))
        self.config = config
        self.hasher = hasher or passwords.default_hasher()
        self._lock = threading.Lock()
        # each Argon2 run takes 64 MiB: a burst of logins from many addresses must not exhaust a 1 GB box
        self._hash_slots = threading.BoundedSemaphore(HASH_SLOTS)
        self._dummy_hash = self._hash(secrets.token_urlsafe(16))
        self._open_file()

    # -- file and schema -------------------------------------------------------------------------------

    def _open_file(self) -> None:
        # every later use opens the file again (durable_connection): the checks of a whole open are made once
        db = open_store(self.path, STORE, tables=TABLES, pragmas=("synchronous=FULL",))
        try:
            migrate(db, self.path, MIGRATIONS, AccountError, store=STORE)
            self._failure_key: bytes = db.execute(f"SELECT key FROM {FAILURE_KEY}").fetchone()[0]
        finally:
            db.close()

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return durable_connection(self.path, STORE)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._connect() as db, immediate(db):
            yield db

    def schema_version(self) -> int:
        with self._connect() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    # -- reading ---------------------------------------------------------------------------------------

    def get_user(self, name: str) -> User | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
            return self._read_user(db, row) if row is not None else None

    def list_users(self) -> list[User]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM users ORDER BY name").fetchall()
            return [self._read_user(db, r) for r in rows]

    def account_name(self, name: str) -> str | None:
        """The stored name of the account `name` is, whatever its case, or None when it is none."""
        with self._connect() as db:
            row = db.execute("SELECT name FROM users WHERE lower(name) = lower(?)", (name,)).fetchone()
        return str(row["name"]) if row is not None else None

    def _read_user(self, db: sqlite3.Connection, row: sqlite3.Row) -> User:
        query = "SELECT max(locked_until) FROM login_failures WHERE name_key = ?"
        return _user(row, db.execute(query, (self._name_key(row["name"]),)).fetchone()[0])

    def _name_key(self, name: str) -> str:
        # keyed, not a plain hash: a password typed as a name must not be found again by hashing guesses
        typed = name.lower().encode("utf-8", "surrogatepass")
        return hmac.new(self._failure_key, typed, hashlib.sha256).hexdigest()

    def has_admin(self) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM users WHERE role = ? LIMIT 1", (Role.ADMIN.value,)).fetchone() is not None

    def password_expired(self, user: User, *, now: float) -> bool:
        """Admins and technicians must change their password every `password_max_age_days`; viewers never."""
        if user.role not in PRIVILEGED:
            return False
        return now - user.password_changed_at >= self.config.password_max_age_days * DAY_S

    # -- changing --------------------------------------------------------------------------------------

    def _checked_hash(self, where: str, name: str, password: str) -> str:
        reasons = passwords.check_policy(password, min_length=self.config.password_min_length, user_name=name)
        if reasons:
            raise PasswordRejected(where, reasons)
        return self._hash(password)

    def _hash(self, password: str) -> str:
        with self._hash_slots:
            return self.hasher.hash(password)

    def _verify(self, password_hash: str, password: str) -> bool:
        with self._hash_slots:
            return passwords.verify(self.hasher, password_hash, password)

    def add_user(self, name: str, role: Role, password: str, *, now: float, must_change: bool = False) -> User:
        check_user_name(name)
        password_hash = self._checked_hash(f"user {name}", name, password)
        with self._write() as db:
            self._insert(db, name, role, password_hash, now=now, must_change=must_change)
        return self._require(name)

    def _insert(
        self, db: sqlite3.Connection, name: str, role: Role, password_hash: str, *, now: float, must_change: bool
    ) -> None:
        # user names are compared case-insensitively at creation: "Alice" and "alice" would be one person
        if db.execute("SELECT 1 FROM users WHERE lower(name) = lower(?)", (name,)).fetchone():
            raise UserExists(f"user {name}: already exists, got a second user of that name", name=name)
        db.execute(
            "INSERT INTO users (name, role, password_hash, created_at, password_changed_at, must_change) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (name, role.value, password_hash, now, now, int(must_change)),
        )

    def _require(self, name: str) -> User:
        user = self.get_user(name)
        if user is None:
            raise UnknownUser(f"user {name}: no such user, got {name!r}", name=name)
        return user

    def _update(self, name: str, sql: str, params: tuple[Any, ...]) -> User:
        with self._write() as db:
            if db.execute(f"UPDATE users SET {sql} WHERE name = ?", (*params, name)).rowcount == 0:
                raise UnknownUser(f"user {name}: no such user, got {name!r}", name=name)
        return self._require(name)

    def set_role(self, name: str, role: Role) -> User:
        with self._write() as db:
            row = db.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownUser(f"user {name}: no such user, got {name!r}", name=name)
            if row["role"] == Role.ADMIN.value and role is not Role.ADMIN:
                self._check_not_last_admin(db, name)
            db.execute("UPDATE users SET role = ? WHERE name = ?", (role.value, name))
        return self._require(name)

    def _check_not_last_admin(self, db: sqlite3.Connection, name: str) -> None:
        admins = db.execute("SELECT count(*) FROM users WHERE role = ?", (Role.ADMIN.value,)).fetchone()[0]
        if admins <= 1:
            raise LastAdmin(
                f"user {name}: is the only admin, got a change that would leave none; add another admin first",
                name=name,
            )

    def set_password(self, name: str, password: str, *, now: float, must_change: bool = False) -> User:
        """A new password (policy checked, not the current one); `must_change` when an admin sets it for someone."""
        user = self.get_user(name)
        if user is None:
            raise UnknownUser(f"user {name}: no such user, got {name!r}", name=name)
        reasons = passwords.check_policy(password, min_length=self.config.password_min_length, user_name=name)
        with self._connect() as db:
            current = db.execute("SELECT password_hash FROM users WHERE name = ?", (name,)).fetchone()
        if current is not None and self._verify(current["password_hash"], password):
            reasons.append(passwords.SAME_AS_CURRENT)
        if reasons:
            raise PasswordRejected(f"user {name}", reasons)
        password_hash = self._hash(password)
        return self._update(
            name,
            "password_hash = ?, password_changed_at = ?, must_change = ?",
            (password_hash, now, int(must_change)),
        )

    def remove_user(self, name: str) -> None:
        with self._write() as db:
            row = db.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownUser(f"user {name}: no such user, got {name!r}", name=name)
            if row["role"] == Role.ADMIN.value:
                self._check_not_last_admin(db, name)
            db.execute("DELETE FROM users WHERE name = ?", (name,))

    def unlock(self, name: str) -> User:
        """Ends the account's lockouts, for every address."""
        with self._write() as db:
            if (
                db.execute("UPDATE users SET locked_until = NULL, failed_streak = 0 WHERE name = ?", (name,)).rowcount
                == 0
            ):
                raise UnknownUser(f"user {name}: no such user, got {name!r}", name=name)
            db.execute("DELETE FROM login_failures WHERE name_key = ?", (self._name_key(name),))
        return self._require(name)

    def set_language(self, name: str, lang: str | None) -> User:
        return self._update(name, "language = ?", (lang,))

    def set_disabled(self, name: str, disabled: bool) -> User:
        return self._update(name, "disabled = ?", (int(disabled),))

    # -- login -----------------------------------------------------------------------------------------

    def authenticate(self, name: str, password: str, *, address: str, now: float) -> AuthResult:
        """One login attempt; `name` matched whatever its case (names are unique that way), `now` injected."""
        key = self._name_key(name)
        with self._connect() as db:
            row = db.execute("SELECT * FROM users WHERE lower(name) = lower(?)", (name,)).fetchone()
            pair = db.execute(
                "SELECT locked_until FROM login_failures WHERE name_key = ? AND address = ?", (key, address)
            ).fetchone()
        # an unknown name costs the time a real account takes, and from here on is treated like one
        matches = self._verify(self._dummy_hash if row is None else row["password_hash"], password)
        account = None if row is None else str(row["name"])  # as stored, for the updates below
        locks = [t for t in (pair and pair["locked_until"], row and row["locked_until"]) if t and now < t]
        if locks:
            # a locked name answers "locked" whatever the password: no guessing while locked
            self._count_locked_attempt(account, key, address, now)
            return AuthResult(ok=False, reason="locked", locked_until=max(locks))
        if row is None or not matches:
            return self._failed(account, key, address, now)
        if row["disabled"]:
            return AuthResult(ok=False, reason="disabled")
        return self._succeeded(row, password, key, address, now)

    def confirm_password(self, name: str, password: str, *, now: float) -> AuthResult:
        """The current password asked again by a logged-in user (before changing it): wrong ones lock the account
        for every address (the guesser holds the session already), a right one is not a login (the last login
        stays). A stranger's lockout of the user's login address does not bar the user's own session."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM users WHERE lower(name) = lower(?)", (name,)).fetchone()
        if row is None:
            self._verify(self._dummy_hash, password)
            return AuthResult(ok=False, reason="bad_credentials")
        matches = self._verify(row["password_hash"], password)
        user = _user(row)
        if user.locked(now):
            self._count_locked_attempt(user.name, None, "", now)
            return AuthResult(ok=False, reason="locked", locked_until=user.locked_until)
        if not matches:
            return self._failed_at_session(user.name, now)
        return AuthResult(ok=True, reason="ok", user=user)

    def _count_locked_attempt(self, account: str | None, key: str | None, address: str, now: float) -> None:
        # the same write for a name that exists and one that does not: a commit's fsync takes measurable time
        with self._write() as db:
            db.execute(
                "UPDATE login_failures SET last_failed_at = ? WHERE name_key = ? AND address = ?", (now, key, address)
            )
            db.execute("UPDATE users SET failures_since_login = failures_since_login + 1 WHERE name = ?", (account,))

    def _failed(self, account: str | None, key: str, address: str, now: float) -> AuthResult:
        """A wrong password or an unknown name from `address`: one more in that pair's streak, a lock at the limit."""
        locked_until: float | None = None
        with self._write() as db:
            # ended locks (their streak is 0 already) and streaks idle too long go: the table stays small
            db.execute(
                "DELETE FROM login_failures WHERE locked_until <= ? OR (locked_until IS NULL AND last_failed_at <= ?)",
                (now, now - FAILURES_KEPT_S),
            )
            counted = db.execute(
                "UPDATE users SET failures_since_login = failures_since_login + 1 WHERE name = ?", (account,)
            ).rowcount
            row = db.execute(
                "SELECT failed_streak, locked_until FROM login_failures WHERE name_key = ? AND address = ?",
                (key, address),
            ).fetchone()
            if row is not None and row["locked_until"] is not None:
                # another attempt locked it while this one was verifying: one lockout, not a second
                return AuthResult(ok=False, reason="locked", locked_until=row["locked_until"])
            streak = (row["failed_streak"] if row is not None else 0) + 1
            if streak >= self.config.lockout_failures:
                streak, locked_until = 0, now + self.config.lockout_minutes * 60.0
            db.execute(
                "INSERT INTO login_failures (name_key, address, failed_streak, locked_until, last_failed_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name_key, address) DO UPDATE SET "
                "failed_streak = excluded.failed_streak, locked_until = excluded.locked_until, "
                "last_failed_at = excluded.last_failed_at",
                (key, address, streak, locked_until, now),
            )
        if locked_until is None:
            return AuthResult(ok=False, reason="bad_credentials")
        # `locked_now` (the web's audit entry and log line) only for an account: nobody outside sees either
        return AuthResult(ok=False, reason="locked", locked_until=locked_until, locked_now=counted == 1)

    def _failed_at_session(self, name: str, now: float) -> AuthResult:
        locked_until = now + self.config.lockout_minutes * 60.0
        with self._write() as db:
            row = db.execute("SELECT failed_streak, locked_until FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:  # removed meanwhile
                return AuthResult(ok=False, reason="bad_credentials")
            if row["locked_until"] is not None and now < row["locked_until"]:
                # another attempt locked it while this one was verifying: one lockout, not a second
                db.execute("UPDATE users SET failures_since_login = failures_since_login + 1 WHERE name = ?", (name,))
                return AuthResult(ok=False, reason="locked", locked_until=row["locked_until"])
            if row["failed_streak"] + 1 < self.config.lockout_failures:
                db.execute(
                    "UPDATE users SET failures_since_login = failures_since_login + 1, "
                    "failed_streak = failed_streak + 1 WHERE name = ?",
                    (name,),
                )
                return AuthResult(ok=False, reason="bad_credentials")
            db.execute(
                "UPDATE users SET failures_since_login = failures_since_login + 1, failed_streak = 0, "
                "locked_until = ? WHERE name = ?",
                (locked_until, name),
            )
        return AuthResult(ok=False, reason="locked", locked_until=locked_until, locked_now=True)

    def _succeeded(self, row: sqlite3.Row, password: str, key: str, address: str, now: float) -> AuthResult:
        name = row["name"]
        # parameters raised since the password was set: hashed again now that it is known, outside the lock
        rehashed = self._hash(password) if self.hasher.check_needs_rehash(row["password_hash"]) else None
        with self._write() as db:
            before = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
            if before is None:  # removed while the password was being verified
                return AuthResult(ok=False, reason="bad_credentials")
            # A new password set while this one was being verified (the CLI, say, because it leaked): the
            # password proved is no longer the account's, and a web session stamped with the new one would
            # outlive the change. A rehash keeps the stamp: it is the same password.
            proved_current = before["password_changed_at"] == row["password_changed_at"]
            if proved_current:
                db.execute(
                    "UPDATE users SET last_login_at = ?, last_login_address = ?, failures_since_login = 0, "
                    "failed_streak = 0, locked_until = NULL WHERE name = ?",
                    (now, address, name),
                )
                # this address's streak ends; a stranger's elsewhere goes on (ended locks go: nothing to keep)
                db.execute(
                    "DELETE FROM login_failures WHERE name_key = ? AND (address = ? OR locked_until <= ?)",
                    (key, address, now),
                )
                if rehashed is not None:
                    db.execute(
                        "UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?",
                        (rehashed, name, row["password_hash"]),
                    )
                # read in this transaction: its password_changed_at is that of the password just proved
                user = self._read_user(db, db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone())
        if not proved_current:
            return self._failed(name, key, address, now)
        previous = (
            (float(before["last_login_at"]), str(before["last_login_address"] or ""))
            if before["last_login_at"] is not None
            else None
        )
        return AuthResult(
            ok=True,
            reason="ok",
            user=user,
            previous_login=previous,
            failures_since_last_login=int(before["failures_since_login"]),
            password_expired=self.password_expired(user, now=now),
        )

    # -- the one-time setup link -----------------------------------------------------------------------

    def create_setup_token(self, *, now: float, ttl_s: float = 3600) -> str:
        """A token for `/setup/<token>`, valid `ttl_s` and once; only its hash is stored."""
        if self.has_admin():
            raise SetupRefused(
                "setup link: an admin exists, got a request for a setup link; log in", "setup.admin_exists"
            )
        token = secrets.token_urlsafe(32)
        with self._write() as db:
            db.execute("DELETE FROM setup_tokens WHERE expires_at <= ? OR used_at IS NOT NULL", (now,))
            db.execute(
                "INSERT INTO setup_tokens (token_hash, created_at, expires_at) VALUES (?, ?, ?)",
                (_token_hash(token), now, now + ttl_s),
            )
        return token

    def setup_token_valid(self, token: str, *, now: float) -> bool:
        """Whether `/setup/<token>` may show its form: known, unused, unexpired, and no admin yet."""
        if self.has_admin():
            return False
        with self._connect() as db:
            row = db.execute(
                "SELECT expires_at, used_at FROM setup_tokens WHERE token_hash = ?", (_token_hash(token),)
            ).fetchone()
        return row is not None and row["used_at"] is None and now < row["expires_at"]

    def use_setup_token(self, token: str, name: str, password: str, *, now: float) -> User:
        """Create the first admin with a setup token; the token is spent, and refused once any admin exists."""
        check_user_name(name)
        # Refused before the password is hashed: anyone who can reach the page may post to it, and a
        # guess must not take an Argon2 slot (64 MiB, ~0.1 s) from the logins. Checked again below,
        # in the transaction, for two posts racing with one link.
        if self.has_admin():
            raise _admin_exists()
        if not self.setup_token_valid(token, now=now):
            raise _setup_invalid()
        password_hash = self._checked_hash(f"user {name}", name, password)
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE role = ?", (Role.ADMIN.value,)).fetchone():
                raise _admin_exists()
            row = None
            for candidate in db.execute("SELECT * FROM setup_tokens WHERE used_at IS NULL"):
                if hmac.compare_digest(candidate["token_hash"], _token_hash(token)):
                    row = candidate
            if row is None or now >= row["expires_at"]:
                raise _setup_invalid()
            self._insert(db, name, Role.ADMIN, password_hash, now=now, must_change=False)
            # one admin ends the setup: every other link is spent too
            db.execute("UPDATE setup_tokens SET used_at = ? WHERE used_at IS NULL", (now,))
        return self._require(name)
