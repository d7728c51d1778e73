"""The Wi-Fi log store: sessions encrypted per period, searchable by blind index, erased by destroying keys.

Theory of operation. `<data_dir>/wifilog/wifilog.db` (sqlite, WAL, synchronous=FULL, secure_delete,
`PRAGMA user_version` = schema version) is the record of truth for inquiries, separate from the
outbox. Every session belongs to the period (calendar month in JST) of its start. Each period has
a random 256-bit data key (DEK), stored in the database only wrapped (AES-256-GCM) by the period's
key-encryption key (KEK); the KEKs live in the secret store (`secret:wifilog.keys`), never in the
database. A row holds the session as AES-256-GCM ciphertext and three blind indexes, HMAC-SHA-256
of the normalised MAC, IP and user name under a key derived from the DEK: a search computes the
period's index value and reads only matching rows; nothing in the file names a MAC, IP or e-mail
address in clear. Nor a session id: some controllers build it from the client MAC (Cisco AireOS
`<hex>/<MAC>/<n>`), so a row is found by `session_idx`, HMAC-SHA-256 of (NAS, session id) under the
period's lookup key, and that digest with the NAS is the ciphertext's associated data, so a blob cannot
be moved to another row. The id itself is only in the ciphertext.

The lookup key, like the blind index key, is derived from the period's DEK, and so are the keys of the
ids the platform receives about the period's sessions (`session_keys`): destroying the KEK takes them
all, so that after the erasure nothing on the box can confirm a guessed MAC behind the period's lookup
digests (in any copy of the file) or behind the ids the platform holds. A session belongs to the period
of its start, so an event of it in a later month (a Stop) is found by probing the live periods' digests
(the period its events' start falls in first, then the others in one indexed query), and its ids stay
those of its period. Versions 1 and 2 keyed the digests under one box key, `secret:wifilog.session-lookup`,
never erased; version 3 re-keys the rows, and the first `expire` after that destroys the old key, since
nothing needs it any more.

Retention: a period is kept `retention_months` full months after it ends. `expire(now)` then
destroys its KEK in the secret store first (from that moment every copy of the database, backups
included, holds only undecryptable rows for that period: crypto-erasure), deletes its rows and
wrapped DEK, vacuums the file, and stores a signed erasure certificate. A crash between the steps is
finished by the next `expire`: a period whose KEK is gone is erased and certified.

Writes come in batches (`apply`): one transaction, one fsync, then the caller answers the NAS. A
data key made in a batch is cached only once the batch committed: a batch rolled back (disk full)
leaves no key that the database does not hold wrapped.

Several stores share one key ring (the radius and syslog receivers each open one, the CLI and the
web UI too), so every change to it is a `SecretStore.update` applied to the ring as it is on disk
under the secret store's lock, never a ring read earlier written back: a key added by one store
cannot be dropped by another's erasure, nor an erased key brought back by another's addition.

A reader (Access.READ_ONLY: the web UI, whose unit may only read the data directory) opens the file with
SQLite's mode=ro and the secret store without its lock, and writes nothing: not the file, not the key ring,
not the signing key nor its public key file. It needs a process that may write to hold the file open (the
gateway's receivers do): SQLite's reader of a WAL file needs the -shm that only such a process makes there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets as _random
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.radius.errors import MacAddressError
from adapters.radius.mac import normalize_mac
from gateway.accounts.schema import migrate
from gateway.errors import GatewayError
from gateway.logs import component_logger
from gateway.secrets import SecretStore
from gateway.storage.files import Access, immediate, open_reader, open_store
from gateway.storage.schema import read_version
from gateway.wifilog.sessions import EventKind, Session, SessionEvent, merge
from gateway.wifilog.signing import Signer, public_pem

__all__ = [
    "CERTIFICATE_TYPE",
    "JST",
    "Query",
    "WifiLogError",
    "WifiLogMissing",
    "WifiLogStore",
    "normalize_ip",
    "period_of",
]

log = component_logger(__name__, "wifilog")

JST = ZoneInfo("Asia/Tokyo")
STORE_DIR = "wifilog"
DB_FILE = "wifilog.db"
STORE = "Wi-Fi log"  # as its errors name it
TABLES = ("periods", "sessions", "certificates")  # its own since version 1: another store's file has none
RETENTION_MONTHS = 12  # unless the receivers' config says otherwise
# who makes the file and holds it open, which a reader needs (see the module's docstring)
KEEPER = (
    "the gateway holds it open while a radius or wifi_syslog adapter runs: start it (systemctl start edgegw), or "
    "read the log on the box with `edgegw wifi` as the gateway's user"
)
PUBLIC_KEY_FILE = "signing-public.pem"
KEYS_SECRET = "wifilog.keys"
# sessions whose period `session_keys` knows from the batch that stored them: as many as the session events'
# queue holds (runner.PENDING_LIMIT), so even a queue the buffer refuses for a while finds each with one digest;
# about 1 MB when full (Cisco-length ids)
REMEMBERED = 10_000
CERTIFICATE_TYPE = "edgegw.wifilog.erasure-certificate"
ERASURE_METHOD = (
    "crypto-erasure: the period's AES-256-GCM data key, from which its blind index and session lookup keys and "
    "the keys of the session ids sent to the platform are derived, was wrapped by a key-encryption key held only "
    "in the gateway's secret store; that key was destroyed, then the rows and the wrapped data key were deleted "
    "(sqlite secure_delete) and the database vacuumed. Copies of the database made earlier cannot be decrypted "
    "without a copy of the secret store made before the erasure together with this gateway's store key: the "
    "gateway's own backups from before the erasure hold such a copy until they are rotated out "
    "([backup] generations), and the store key only if include_secret_key is set."
)

SCHEMA_V1 = """
    CREATE TABLE periods (period TEXT PRIMARY KEY, key_id TEXT NOT NULL, wrapped_key BLOB NOT NULL,
                          created_at TEXT NOT NULL);
    CREATE TABLE sessions (id INTEGER PRIMARY KEY, period TEXT NOT NULL, nas TEXT NOT NULL,
                           session_id TEXT NOT NULL, start REAL NOT NULL, end_at REAL NOT NULL, open INTEGER NOT NULL,
                           mac_idx BLOB, ip_idx BLOB, user_idx BLOB, blob BLOB NOT NULL, UNIQUE (nas, session_id));
    CREATE INDEX sessions_mac ON sessions (mac_idx, start);
    CREATE INDEX sessions_ip ON sessions (ip_idx, start);
    CREATE INDEX sessions_user ON sessions (user_idx, start);
    CREATE INDEX sessions_time ON sessions (period, start);
    CREATE INDEX sessions_open ON sessions (nas, open);
    CREATE TABLE certificates (period TEXT PRIMARY KEY, erased_at TEXT NOT NULL, document TEXT NOT NULL)
    """
# version 2: the session id's keyed digest instead of the id (see the module's docstring), as `_hash_session_ids`
# rewrites the table
SESSIONS_V2 = """
    CREATE TABLE sessions_v2 (id INTEGER PRIMARY KEY, period TEXT NOT NULL, nas TEXT NOT NULL,
                              session_idx BLOB NOT NULL, start REAL NOT NULL, end_at REAL NOT NULL,
                              open INTEGER NOT NULL, mac_idx BLOB, ip_idx BLOB, user_idx BLOB, blob BLOB NOT NULL,
                              UNIQUE (nas, session_idx))
    """
SESSIONS_V2_INDEXES = """
    CREATE INDEX sessions_mac ON sessions (mac_idx, start);
    CREATE INDEX sessions_ip ON sessions (ip_idx, start);
    CREATE INDEX sessions_user ON sessions (user_idx, start);
    CREATE INDEX sessions_time ON sessions (period, start);
    CREATE INDEX sessions_open ON sessions (nas, open)
    """
SCHEMA_VERSION = 3
# versions 1 and 2's one lookup key for every period, which no erasure destroyed: `expire` deletes it once the
# file is re-keyed (version 3), as the ids made with it (event entity ids sent before the upgrade, digests in
# older copies of the file) must not stay linkable to a MAC for as long as the box runs
LEGACY_LOOKUP_SECRET = "wifilog.session-lookup"
LOOKUP_LABEL = b"edgegw wifilog session lookup"  # the period's lookup key, from its DEK


class WifiLogError(GatewayError):
    code = "wifilog_error"


class WifiLogMissing(WifiLogError, FileNotFoundError):
    """No Wi-Fi log where a reader (`must_exist`) looks: the gateway makes it, a read never does."""

    code = "wifilog_missing"


def period_of(t: datetime) -> str:
    """The retention period (calendar month, JST) an event time belongs to: `2026-12`."""
    return t.astimezone(JST).strftime("%Y-%m")


def _month_start(period: str, add: int = 0) -> datetime:
    year, month = (int(x) for x in period.split("-"))
    index = year * 12 + (month - 1) + add
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=JST)


def normalize_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise WifiLogError(f"wifi search ip: not an IPv4 or IPv6 address, got {text.strip()!r}") from None


def _normalize_user(text: str) -> str:
    return text.strip().casefold()


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """An inquiry: any of MAC (any spelling), IP, user name, and a time range the session must overlap."""

    mac: str | None = None
    ip: str | None = None
    user: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None
    limit: int = 10_000

    def __post_init__(self) -> None:
        if self.mac is None and self.ip is None and self.user is None and self.time_from is None:
            raise WifiLogError("wifi search: give a MAC, an IP, a user name or a time range, got none")
        for t in (self.time_from, self.time_to):
            if t is not None and t.tzinfo is None:
                raise WifiLogError(f"wifi search time: must carry a zone, got {t.isoformat()}")
        if self.mac is not None:
            try:
                object.__setattr__(self, "mac", normalize_mac(self.mac, where="wifi search mac"))
            except MacAddressError as exc:
                raise WifiLogError(str(exc)) from None
        if self.ip is not None:
            object.__setattr__(self, "ip", normalize_ip(self.ip))

    def describe(self) -> dict[str, str]:
        """The query as recorded in an export manifest (the inquiry's own terms, kept with the export)."""
        out = {k: v for k in ("mac", "ip", "user") if (v := getattr(self, k)) is not None}
        for k in ("time_from", "time_to"):
            t = getattr(self, k)
            if t is not None:
                out[k] = t.astimezone(JST).isoformat()
        return out


class _PeriodKeys:
    """A period's data key and what is derived from it: gone with the KEK that wraps the data key."""

    __slots__ = ("_lookup", "aead", "index_key", "key_id", "lookup_key")

    def __init__(self, key_id: str, dek: bytes) -> None:
        self.key_id = key_id
        self.aead = AESGCM(dek)
        self.index_key = hmac.new(dek, b"edgegw wifilog blind index", hashlib.sha256).digest()
        self.lookup_key = hmac.new(dek, LOOKUP_LABEL, hashlib.sha256).digest()
        self._lookup = hmac.new(self.lookup_key, digestmod=hashlib.sha256)  # copied per digest: the writer's hot path

    def session_index(self, pair: bytes) -> bytes:
        """The lookup digest of `_pair(NAS, session id)` in this period."""
        h = self._lookup.copy()
        h.update(pair)
        return h.digest()[:16]

    def derive(self, purpose: bytes) -> bytes:
        """The period's key for `purpose` (ids of its sessions sent off the box); purposes are not JSON arrays,
        so no such key equals a lookup digest's input."""
        return hmac.new(self.lookup_key, purpose, hashlib.sha256).digest()

    def index(self, value: str | None) -> bytes | None:
        if value is None:
            return None
        return hmac.new(self.index_key, value.encode(), hashlib.sha256).digest()[:16]

    def seal(self, session: Session, aad: bytes) -> bytes:
        nonce = _random.token_bytes(12)
        return nonce + self.aead.encrypt(nonce, session.to_json(), aad)

    def open(self, blob: bytes, aad: bytes) -> Session:
        return Session.from_json(self.aead.decrypt(blob[:12], blob[12:], aad))


def _pair(nas: str, session_id: str) -> bytes:
    return json.dumps([nas, session_id]).encode()  # unambiguous whatever the two hold


def _aad(nas: str, session_idx: bytes) -> bytes:
    return nas.encode() + b"\0" + session_idx  # the digest has a fixed length: no two pairs give one value


def _aad_v1(nas: str, session_id: str) -> bytes:
    """Schema version 1's associated data, read only by the migration to version 2."""
    return f"{nas}\0{session_id}".encode()


def _reseal(keys: _PeriodKeys, blob: bytes, old_aad: bytes, new_aad: bytes) -> bytes | None:
    """`blob` sealed again under `new_aad`; None when it does not open (a damaged record: unreadable already)."""
    try:
        return keys.seal(keys.open(blob, old_aad), new_aad)
    except InvalidTag:
        return None


def _ring(text: str | None) -> dict[str, dict[str, str]]:
    """`secret:wifilog.keys`: period → {"id": key id, "kek": base64 KEK}; None (absent) is the empty ring."""
    ring: dict[str, dict[str, str]] = json.loads(text) if text is not None else {}
    return ring


class _ReadSecrets(SecretStore):
    """The secret store as a reader of the log uses it: read without the store's lock (a change is a rename: a
    read sees the whole store before or after it), never changed. A key that is not there is the gateway's to
    make."""

    def update(self, name: str, change: Callable[[str | None], str | None]) -> str | None:
        raise WifiLogError(
            f"secret:{name}: not changed by a reader of the Wi-Fi log, got a change; the gateway's Wi-Fi log makes "
            "and destroys its keys"
        )

    def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        if name not in self.names():
            raise WifiLogError(
                f"secret:{name}: not in the secret store {self.directory}, got none; the gateway makes it when its "
                "Wi-Fi log starts (a radius or wifi_syslog adapter): start it (systemctl start edgegw)"
            )
        return self.get(name)


class WifiLogStore:
    """The store in `<data_dir>/wifilog/`; one writer (the gateway), readers (CLI, web) may open it meanwhile."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        retention_months: int = RETENTION_MONTHS,
        gateway_id: str = "",
        access: Access = Access.READ_WRITE,
        must_exist: bool = False,
    ) -> None:
        if retention_months < 1:
            raise WifiLogError(f"wifilog retention_months: must be at least 1, got {retention_months}")
        self.data_dir = Path(data_dir)
        self.directory = self.data_dir / STORE_DIR
        self.path = self.directory / DB_FILE
        if must_exist and not self.path.exists():
            # checked before anything opens it: opening makes the file, its directory and a missing data directory,
            # as whoever runs the read (root), and an empty log would then answer an inquiry with "no sessions"
            raise WifiLogMissing(
                f"{STORE} {self.path}: not found, got no such file; the gateway makes it when a radius or "
                "wifi_syslog adapter runs, so check [gateway] data_dir (or --data-dir); nothing was made",
                path=str(self.path),
            )
        self.retention_months = retention_months
        self.gateway_id = gateway_id
        self.access = access
        self._lock = threading.Lock()
        self._keys: dict[str, _PeriodKeys] = {}
        self._made: dict[str, _PeriodKeys] = {}  # keys made in the open transaction: cached once it commits
        # `_pair` → period of the sessions the latest batches stored, oldest first: a hint `_find` checks, so a
        # stale one (the period erased since, a batch rolled back) costs a digest, never a wrong key
        self._periods_of: dict[bytes, str] = {}
        self._stored: dict[bytes, str] = {}  # by the open transaction: remembered once it commits
        # (period, key id) whose KEK is destroyed: never back, and not asked of the secret store on every batch
        self._gone: set[tuple[str, str]] = set()
        self._signer: Signer | None = None
        if access is Access.READ_ONLY:
            self.secrets: SecretStore = _ReadSecrets(self.data_dir)
            self._db = open_reader(self.path, STORE, tables=TABLES, keeper=KEEPER)
        else:
            self.secrets = SecretStore(self.data_dir)  # the gateway's secret store, as `edgegw secret` uses it
            self._db = open_store(self.path, STORE, tables=TABLES, pragmas=("synchronous=FULL", "secure_delete=ON"))
        try:
            if access is Access.READ_ONLY:
                self._check_version()
            else:
                upgrade = migrate(self._db, self.path, self._migrations(), WifiLogError, store=STORE)
                if upgrade.changed:
                    self._drop_freed_pages()
        except BaseException:
            self._db.close()
            raise

    def _migrations(self) -> tuple[str | Callable[[sqlite3.Connection], None], ...]:
        return (SCHEMA_V1, self._hash_session_ids, self._key_lookups_per_period)

    def _check_version(self) -> None:
        """A reader's: the file at this edgegw's version, which only the gateway brings it to."""
        version = read_version(self._db, self.path, store=STORE)
        if version > SCHEMA_VERSION:  # refuses a downgrade, unwritten
            migrate(self._db, self.path, self._migrations(), WifiLogError, store=STORE)
        if version < SCHEMA_VERSION:
            raise WifiLogError(
                f"{STORE} {self.path}: not readable before the gateway migrates it, got schema version {version} "
                f"(this edgegw reads {SCHEMA_VERSION}); {KEEPER}"
            )

    def _hash_session_ids(self, db: sqlite3.Connection) -> None:
        """Schema 1 → 2, in the migration's transaction: each row's clear session id replaced by its digest and
        the record sealed again under the new associated data. Rows that cannot be opened (their period's KEK is
        destroyed but the rows not yet deleted, or a damaged record) were unreadable already: they keep their
        ciphertext and lose the clear id for a random digest, and the erasure still counts them. Version 2 made
        the digests under the box key; this release makes them under the period's lookup key at once, so step 3
        finds them current."""
        db.execute(SESSIONS_V2)
        resealed = kept = 0
        columns = "id, period, nas, start, end_at, open, mac_idx, ip_idx, user_idx"
        # row by row from a cursor: a year of sessions does not fit in the appliance's memory at once
        for row in db.execute(f"SELECT {columns}, session_id, blob FROM sessions ORDER BY id"):
            nas, session_id, blob = str(row[2]), str(row[9]), bytes(row[10])
            try:
                keys = self._period_keys(db, str(row[1]), create=False)
            except WifiLogError as exc:
                raise ValueError(str(exc)) from None  # `migrate` names the step and rolls the file back
            sealed = None
            if keys is not None:
                idx = keys.session_index(_pair(nas, session_id))
                sealed = _reseal(keys, blob, _aad_v1(nas, session_id), _aad(nas, idx))
            if sealed is None:
                idx = _random.token_bytes(16)  # unreadable: no later event may find it, and nothing names its id
            resealed += sealed is not None
            kept += sealed is None
            db.execute(
                f"INSERT INTO sessions_v2 ({columns}, session_idx, blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row[:9], idx, blob if sealed is None else sealed),
            )
        db.execute("DROP TABLE sessions")  # secure_delete zeroes its pages, the clear ids with them
        db.execute("ALTER TABLE sessions_v2 RENAME TO sessions")
        for statement in SESSIONS_V2_INDEXES.split(";"):
            db.execute(statement)
        if resealed or kept:
            log.info(
                "wifilog: session ids replaced by their keyed digests in %d sessions (%d unreadable ones, of erased "
                "periods or damaged, kept as they were)",
                resealed + kept,
                kept,
            )

    def _key_lookups_per_period(self, db: sqlite3.Connection) -> None:
        """Schema 2 → 3, in the migration's transaction: each row's lookup digest, made under the box key, made
        again under its period's lookup key and the record sealed again under the new associated data, in place
        (secure_delete zeroes the old cells). Rows that cannot be opened keep their ciphertext and old digest:
        unreadable already, erased on their period's schedule."""
        rekeyed = kept = 0
        last = 0
        while True:  # in slices: a year of sessions does not fit in the appliance's memory at once
            rows = db.execute(
                "SELECT id, period, nas, session_idx, blob FROM sessions WHERE id > ? ORDER BY id LIMIT 1000", (last,)
            ).fetchall()
            if not rows:
                break
            for row_id, period, nas, old_idx, blob in rows:
                last = int(row_id)
                try:
                    keys = self._period_keys(db, str(period), create=False)
                except WifiLogError as exc:
                    raise ValueError(str(exc)) from None  # `migrate` names the step and rolls the file back
                try:
                    session = None if keys is None else keys.open(bytes(blob), _aad(str(nas), bytes(old_idx)))
                except InvalidTag:
                    session = None
                if keys is None or session is None:
                    kept += 1
                    continue
                idx = keys.session_index(_pair(str(nas), session.session_id))
                if idx == bytes(old_idx):
                    continue  # made by step 2 in this same migration
                db.execute(
                    "UPDATE sessions SET session_idx = ?, blob = ? WHERE id = ?",
                    (idx, keys.seal(session, _aad(str(nas), idx)), last),
                )
                rekeyed += 1
        if rekeyed or kept:
            log.info(
                "wifilog: lookup digests of %d sessions re-keyed under their periods' keys (%d unreadable ones, of "
                "erased periods or damaged, kept as they were)",
                rekeyed + kept,
                kept,
            )

    def _drop_freed_pages(self) -> None:
        """After a migration: the WAL and free pages may hold the old rows' clear ids (a new file: the pages of
        version 1's table, which would be taken for room on a full disk)."""
        try:
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.execute("VACUUM")
        except sqlite3.OperationalError as exc:
            # the migration is committed; another process reading the file keeps old WAL frames until its next
            # checkpoint, which overwrites them
            log.warning(
                "wifilog: %s migrated, but not vacuumed, got %s; it is vacuumed at the next erasure", self.path, exc
            )

    def close(self) -> None:
        with self._lock:  # a commit running in a worker thread finishes first
            self._db.close()

    def schema_version(self) -> int:
        with self._lock:  # the connection is shared with worker threads' commits and close()
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = Signer(self.secrets)
            if self.access is Access.READ_ONLY:
                return self._signer  # the file is the gateway's to publish
            pem = self.directory / PUBLIC_KEY_FILE
            if not pem.exists() or pem.read_bytes() != public_pem(self._signer.public_key):
                pem.write_bytes(public_pem(self._signer.public_key))
        return self._signer

    def publish_public_key(self) -> Path:
        """Make the signing key if there is none and write its public key beside the store; returns the file."""
        return self.public_key_path

    @property
    def public_key_path(self) -> Path:
        _ = self.signer
        return self.directory / PUBLIC_KEY_FILE

    # -- keys -------------------------------------------------------------------------------------------

    def _keks(self) -> dict[str, dict[str, str]]:
        """The key ring as read now: for decisions and reading only, never to be written back (see `update`)."""
        if KEYS_SECRET not in self.secrets.names():
            return {}
        return _ring(self.secrets.get(KEYS_SECRET))

    def _period_keys(self, db: sqlite3.Connection, period: str, create: bool) -> _PeriodKeys | None:
        keys = self._keys.get(period) or self._made.get(period)
        if keys is not None:
            return keys
        row = db.execute("SELECT key_id, wrapped_key FROM periods WHERE period = ?", (period,)).fetchone()
        if row is None:
            if not create:
                return None
            keys = self._make_period_key(db, period)
            self._made[period] = keys
            return keys
        key_id, wrapped = str(row[0]), bytes(row[1])
        if (period, key_id) in self._gone:
            return None
        entry = self._keks().get(period)
        if entry is None or entry["id"] != key_id:
            # erased (or being erased): the period's rows can no longer be read. The KEK is saved before its
            # period's row is inserted, so a row without it is a destroyed key, never one still to come
            self._gone.add((period, key_id))
            return None
        try:
            dek = AESGCM(base64.b64decode(entry["kek"])).decrypt(wrapped[:12], wrapped[12:], key_id.encode())
        except InvalidTag:
            raise WifiLogError(
                f"wifilog period {period}: the wrapped data key does not open with key {key_id}; "
                "the database and the secret store do not belong together"
            ) from None
        keys = _PeriodKeys(key_id, dek)
        self._keys[period] = keys
        return keys

    def _make_period_key(self, db: sqlite3.Connection, period: str) -> _PeriodKeys:
        """In the write transaction, which holds the database's write lock: a new period's DEK, wrapped by its KEK."""
        fresh = {
            "id": f"wifilog-{period}-{_random.token_hex(4)}",
            "kek": base64.b64encode(_random.token_bytes(32)).decode(),
        }

        def add(current: str | None) -> str | None:
            ring = _ring(current)
            if period in ring:
                # left by a batch rolled back after it was saved; no other store is between saving a
                # KEK and inserting its period's row now (we hold the write lock), so none uses it
                return current
            ring[period] = fresh
            return json.dumps(ring, sort_keys=True)

        # the KEK is durable in the secret store before any row depends on it
        entry = _ring(self.secrets.update(KEYS_SECRET, add))[period]
        key_id, kek = entry["id"], base64.b64decode(entry["kek"])
        dek = _random.token_bytes(32)
        nonce = _random.token_bytes(12)
        wrapped = nonce + AESGCM(kek).encrypt(nonce, dek, key_id.encode())
        db.execute(
            "INSERT INTO periods (period, key_id, wrapped_key, created_at) VALUES (?, ?, ?, ?)",
            (period, key_id, wrapped, datetime.now(UTC).isoformat()),
        )
        log.info("wifilog: created the data key %s for period %s", key_id, period)
        return _PeriodKeys(key_id, dek)

    def _live(self, db: sqlite3.Connection) -> dict[str, _PeriodKeys]:
        """The keys of every period the file lists whose KEK is still there, read in the caller's transaction
        (another store may have made or erased one); keys of periods no longer listed leave memory."""
        periods = {str(r[0]) for r in db.execute("SELECT period FROM periods")}
        for period in self._keys.keys() - periods:
            del self._keys[period]
        live = {}
        for period in sorted(periods):
            keys = self._period_keys(db, period, create=False)
            if keys is not None:
                live[period] = keys
        return live

    def _find(
        self, db: sqlite3.Connection, nas: str, pair: bytes, live: dict[str, _PeriodKeys], likely: str | None = None
    ) -> tuple[int, str, bytes, bytes] | None:
        """The row of `pair` (id, period, lookup digest, blob): its digest under each live period's key, probed
        in one indexed query (a session's later events may come months after its start). The `likely` period
        (that of the events' start, or the one remembered from the batch that stored the session) is tried
        first on its own: most events are a known session's interim or stop, found with one digest instead of
        one per period (13 over a year's retention, 121 at most). A new session's first event misses there and
        pays the digest of every live period, as its session may already be in any of them (a Stop stored
        before its Start made it a later period's; an id the NAS reused, or a clock that was wrong, an earlier
        one's): skipping one would split a session into two rows and two ids."""
        periods = list(live)
        if likely in live:
            row = db.execute(
                "SELECT id, period, session_idx, blob FROM sessions WHERE nas = ? AND session_idx = ?",
                (nas, live[likely].session_index(pair)),
            ).fetchone()
            if row is not None and str(row[1]) == likely:
                return int(row[0]), likely, bytes(row[2]), bytes(row[3])
            periods.remove(likely)
        if not periods:
            return None
        digests = [live[period].session_index(pair) for period in periods]
        row = db.execute(
            f"SELECT id, period, session_idx, blob FROM sessions WHERE nas = ? AND session_idx IN "
            f"({', '.join('?' * len(digests))})",
            (nas, *digests),
        ).fetchone()
        if row is None or str(row[1]) not in live:
            return None
        return int(row[0]), str(row[1]), bytes(row[2]), bytes(row[3])

    # -- writing ----------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with immediate(self._db) as db:
                    yield db
                self._keys.update(self._made)  # their wrapped copies are committed with the batch
                self._remember(self._stored)
            finally:
                self._made.clear()  # a batch rolled back took its keys' `periods` rows with it
                self._stored.clear()

    def _remember(self, stored: dict[bytes, str]) -> None:
        for pair, period in stored.items():
            self._periods_of.pop(pair, None)  # to the end of the line: the newest are asked about next
            self._periods_of[pair] = sys.intern(period)  # a few periods, not one string per session
        for _ in range(len(self._periods_of) - REMEMBERED):
            del self._periods_of[next(iter(self._periods_of))]

    def apply(self, events: Sequence[SessionEvent]) -> None:
        """Merge `events` into their sessions in one durable transaction (returns once committed)."""
        if not events:
            return
        # the events of one session are merged in memory first: one read and one write per session
        groups: dict[tuple[str, str], list[SessionEvent]] = {}
        for event in events:
            groups.setdefault((event.nas, event.session_id), []).append(event)
        with self._transaction() as db:
            live = self._live(db)
            for (nas, session_id), group in groups.items():
                self._merge_group(db, nas, session_id, group, live)

    def _merge_group(
        self,
        db: sqlite3.Connection,
        nas: str,
        session_id: str,
        events: Sequence[SessionEvent],
        live: dict[str, _PeriodKeys],
    ) -> None:
        pair = _pair(nas, session_id)
        began = min(event.time - timedelta(seconds=event.session_time or 0) for event in events)
        row = self._find(db, nas, pair, live, period_of(began))
        old = None if row is None else live[row[1]].open(row[3], _aad(nas, row[2]))
        new = old
        for event in events:
            new = merge(new, event)
        if row is not None:
            self._stored[pair] = row[1]  # even a retransmission's event goes to the platform again
        if new is None or new == old:
            return  # a retransmission: the row already holds it
        if row is not None:
            period, idx = row[1], row[2]
            keys = live[period]
        else:
            # a session of an erased period is not found (its key is gone), nor is one whose period's KEK is
            # destroyed and its erasure not finished yet: a late event of it stays forgotten
            period = period_of(new.start)
            if db.execute("SELECT 1 FROM certificates WHERE period = ?", (period,)).fetchone():
                return
            made = live.get(period) or self._period_keys(db, period, create=True)
            if made is None:
                return
            keys = live[period] = made
            idx = keys.session_index(pair)
            self._stored[pair] = period
        values = (
            new.start.timestamp(),
            new.end.timestamp(),
            int(new.stop is None),
            keys.index(new.client_mac),
            keys.index(new.framed_ip),
            keys.index(_normalize_user(new.user_name) if new.user_name else None),
            keys.seal(new, _aad(nas, idx)),
        )
        if row is None:
            db.execute(
                "INSERT INTO sessions (period, nas, session_idx, start, end_at, open, mac_idx, ip_idx, user_idx, blob)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (period, nas, idx, *values),
            )
        else:
            db.execute(
                "UPDATE sessions SET start = ?, end_at = ?, open = ?, mac_idx = ?, ip_idx = ?, user_idx = ?, blob = ?"
                " WHERE id = ?",
                (*values, row[0]),
            )

    def close_nas(self, nas: str, at: datetime, cause: str) -> int:
        """Accounting-On/Off: the NAS restarted, so every session it had open ended at `at`; returns how many."""
        with self._transaction() as db:
            ids = []
            live = self._live(db)
            rows = db.execute("SELECT period, session_idx, blob FROM sessions WHERE nas = ? AND open = 1", (nas,))
            for period, idx, blob in rows.fetchall():
                keys = live.get(str(period))
                if keys is not None:  # else erased: the session stays forgotten
                    ids.append(keys.open(bytes(blob), _aad(nas, bytes(idx))).session_id)
            for sid in ids:
                stop = SessionEvent(nas=nas, session_id=sid, kind=EventKind.STOP, time=at, terminate_cause=cause)
                self._merge_group(db, nas, sid, (stop,), live)
        if ids:
            log.info("wifilog: NAS %s restarted (%s); closed %d open sessions", nas, cause, len(ids))
        return len(ids)

    def open_session_id(self, nas: str, mac: str) -> str | None:
        """The open session of `mac` on `nas` (syslog has no session ids: association lines pair by MAC)."""
        with self._lock:
            rows = self._db.execute("SELECT period FROM periods ORDER BY period DESC").fetchall()
            for (period,) in rows:
                keys = self._period_keys(self._db, str(period), create=False)
                if keys is None:
                    continue
                row = self._db.execute(
                    "SELECT session_idx, blob FROM sessions WHERE mac_idx = ? AND nas = ? AND open = 1"
                    " ORDER BY start DESC",
                    (keys.index(mac), nas),
                ).fetchone()
                if row is not None:
                    return keys.open(bytes(row[1]), _aad(nas, bytes(row[0]))).session_id
        return None

    def session_keys(self, purpose: bytes, sessions: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """For each (NAS, session id), the key for `purpose` of the period holding that session, or None when no
        live period does (never stored, or its period erased: no key for its ids is left). Ids made with it (the
        session events' entity ids) are the same for every event of the session, across a restart and a month
        boundary, and erased with the period. One lookup digest for a session this store stored lately (its
        period remembered from the batch), else one per live period. Blocking (the file, the secret store): call
        it from a thread."""
        with self._lock:
            db = self._db
            live = self._live(db)
            out: list[bytes | None] = []
            for nas, session_id in sessions:
                pair = _pair(nas, session_id)
                row = self._find(db, nas, pair, live, self._periods_of.get(pair))
                out.append(None if row is None else live[row[1]].derive(purpose))
        return out

    # -- reading ----------------------------------------------------------------------------------------

    def search(self, query: Query) -> list[Session]:
        """Sessions matching every given term and overlapping the time range, oldest first."""
        out: list[Session] = []
        with self._lock:
            db = self._db
            periods = [str(r[0]) for r in db.execute("SELECT period FROM periods ORDER BY period")]
            for period in periods:
                if query.time_to is not None and _month_start(period) > query.time_to:
                    continue
                if query.time_from is not None and _month_start(period, 2) <= query.time_from:
                    continue  # sessions start in their period; few last a month
                keys = self._period_keys(db, period, create=False)
                if keys is None:
                    continue
                where: list[str] = ["period = ?"]
                args: list[object] = [period]
                for column, value in (
                    ("mac_idx", query.mac),
                    ("ip_idx", query.ip),
                    ("user_idx", _normalize_user(query.user) if query.user else None),
                ):
                    if value is not None:
                        where.append(f"{column} = ?")
                        args.append(keys.index(value))
                if query.time_to is not None:
                    where.append("start <= ?")
                    args.append(query.time_to.timestamp())
                if query.time_from is not None:
                    where.append("(end_at >= ? OR open = 1)")  # no Stop yet: it may still be going on
                    args.append(query.time_from.timestamp())
                sql = f"SELECT nas, session_idx, blob FROM sessions WHERE {' AND '.join(where)} ORDER BY start LIMIT ?"
                for nas, idx, blob in db.execute(sql, (*args, query.limit - len(out))):
                    out.append(keys.open(bytes(blob), _aad(str(nas), bytes(idx))))
                if len(out) >= query.limit:
                    break
        return out

    def stats(self) -> dict[str, Any]:
        """Counts per period and the certificates issued (no personal data), for diagnostics and the UI."""
        with self._lock:
            periods = {
                str(p): int(n)
                for p, n in self._db.execute("SELECT period, COUNT(*) FROM sessions GROUP BY period ORDER BY period")
            }
            certs = [str(r[0]) for r in self._db.execute("SELECT period FROM certificates ORDER BY period")]
        return {"sessions_per_period": periods, "erased_periods": certs, "retention_months": self.retention_months}

    # -- retention --------------------------------------------------------------------------------------

    def erase_after(self, period: str) -> datetime:
        """When `period` must be erased: `retention_months` full months after it ends."""
        return _month_start(period, 1 + self.retention_months)

    def expire(self, now: datetime) -> list[dict[str, Any]]:
        """Erase every period past retention; returns the signed erasure certificates issued."""
        self._destroy_legacy_lookup_key()
        with self._lock:
            rows = self._db.execute("SELECT period, key_id FROM periods ORDER BY period").fetchall()
        certificates = []
        keks = self._keks()
        for period, key_id in rows:
            entry = keks.get(str(period))
            if self.erase_after(str(period)) <= now or entry is None or entry["id"] != key_id:
                cert = self._erase(str(period), str(key_id), now)
                if cert is not None:
                    certificates.append(cert)
        return certificates

    def _destroy_legacy_lookup_key(self) -> None:
        """Versions 1 and 2's box-wide lookup key, once the file no longer needs it (this store migrated it)."""
        if LEGACY_LOOKUP_SECRET not in self.secrets.names():
            return
        self.secrets.update(LEGACY_LOOKUP_SECRET, lambda _current: None)
        log.info(
            "wifilog: destroyed secret:%s, the lookup key of releases before per-period lookup keys: the session "
            "event ids sent with it and the lookup digests in older copies of %s can no longer be linked to a MAC, "
            "except with a copy of the secret store made before now: the gateway's backups made before now hold one "
            "until they are rotated out ([backup] generations; it opens with this gateway's secrets.key, in a "
            "backup only with include_secret_key)",
            LEGACY_LOOKUP_SECRET,
            self.path,
        )

    def _erase(self, period: str, key_id: str, now: datetime) -> dict[str, Any] | None:
        with self._lock:
            if self._db.execute("SELECT 1 FROM periods WHERE period = ?", (period,)).fetchone() is None:
                return None  # the other receiver's store erased it meanwhile and holds its certificate
            records = int(self._db.execute("SELECT COUNT(*) FROM sessions WHERE period = ?", (period,)).fetchone()[0])
            destroyed: list[str] = []

            def drop(current: str | None) -> str | None:
                ring = _ring(current)
                entry = ring.pop(period, None)
                if entry is None:
                    return current
                destroyed.append(entry["id"])
                return json.dumps(ring, sort_keys=True)

            # first the key: from here on no copy of this period's rows can be read anywhere
            self.secrets.update(KEYS_SECRET, drop)
            self._keys.pop(period, None)
            self._gone.add((period, key_id))
        document = self.signer.sign(
            {
                "type": CERTIFICATE_TYPE,
                "version": 1,
                "gateway_id": self.gateway_id,
                "period": period,
                "period_start": _month_start(period).isoformat(),
                "period_end": _month_start(period, 1).isoformat(),
                "retention_months": self.retention_months,
                "records": records,
                "key_ids_destroyed": sorted({key_id, *destroyed}),
                "method": ERASURE_METHOD,
                "erased_at": now.astimezone(JST).isoformat(),
            }
        )
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE period = ?", (period,))
            db.execute("DELETE FROM periods WHERE period = ?", (period,))
            db.execute(
                "INSERT OR IGNORE INTO certificates (period, erased_at, document) VALUES (?, ?, ?)",
                (period, document["erased_at"], json.dumps(document, ensure_ascii=False, sort_keys=True)),
            )
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
        log.info(
            "wifilog: erased period %s (%d sessions, key %s destroyed); certificate issued", period, records, key_id
        )
        return document

    def certificates(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT document FROM certificates ORDER BY period").fetchall()
        return [json.loads(r[0]) for r in rows]


def sessions_of(events: Iterable[SessionEvent]) -> dict[tuple[str, str], Session]:
    """Sessions merged in memory (tests and the per-AP counters use the same rule as the store)."""
    out: dict[tuple[str, str], Session] = {}
    for ev in events:
        out[(ev.nas, ev.session_id)] = merge(out.get((ev.nas, ev.session_id)), ev)
    return out
