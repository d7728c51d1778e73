"""Every configuration applied from the control socket, with who, when and why: `<data_dir>/config_versions.db`.

A store of record (DESIGN.md "Stores"): its own sqlite file with the schema version in
`PRAGMA user_version` and forward migrations, so a rollback can go to any version ever applied.
"""

from __future__ import annotations

import errno
import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.storage.files import NOT_WRITABLE, open_store
from gateway.storage.schema import migrate

FILE = "config_versions.db"
STORE = "config versions"  # as its errors name it
TABLES = ("versions",)  # its own since version 1: another store's file has none
SCHEMA_VERSION = 1  # len(_MIGRATIONS)

# index i takes a file from user_version i to i+1
_MIGRATIONS = (
    """
    CREATE TABLE versions (
        version INTEGER PRIMARY KEY AUTOINCREMENT,
        sha256 TEXT NOT NULL,
        text TEXT NOT NULL,
        actor TEXT NOT NULL,
        applied_at REAL NOT NULL,
        comment TEXT NOT NULL DEFAULT ''
    );
    """,
)


def os_words(path: Path, exc: OSError) -> str:
    """`exc`, raised opening the store at `path`, as the OS says it: `<its words> (<code>)[ at <the path it
    names, when another: the directory>]`."""
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    at = f" at {exc.filename}" if exc.filename is not None and str(exc.filename) != str(path) else ""
    return f"{exc.strerror or exc} ({code}){at}"


def cannot_open(path: Path, exc: OSError) -> str:
    """`exc`, raised opening the store at `path`, in the store's words: `config versions <path>: cannot be
    opened, got <os_words>`."""
    return f"{STORE} {path}: cannot be opened, got {os_words(path, exc)}"


def not_writable(exc: BaseException) -> bool:
    """Whether `exc`, from opening or writing the store, says this process may not write it (or make it) there;
    SQLite says so as SQLITE_READONLY for a file it could open only for reading."""
    if isinstance(exc, OSError):
        return exc.errno in NOT_WRITABLE
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_READONLY


def access_fix(path: Path) -> str:
    """What to do when the gateway may not write (or read) the store at `path`."""
    return (
        "a disk remounted read-only after an error shows in `dmesg`; otherwise give the gateway's user "
        f"(systemd: User=) read and write access to {path} and {path.parent}"
    )


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigVersion:
    version: int
    sha256: str
    actor: str
    applied_at: float  # UTC epoch seconds
    comment: str
    text: str = ""  # filled by `get`, left out of listings

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "sha256": self.sha256,
            "actor": self.actor,
            "applied_at": self.applied_at,
            "comment": self.comment,
        }


class ConfigVersions:
    """Synchronous and small (one row per apply): the control ops call it from a thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # private from its first byte, as every store (configurations may name hosts and users); its rollback
        # journal kept, as this store always had it. On a file it may only read (a read-only disk) it reads, and
        # a write fails with SQLITE_READONLY (not_writable); an OSError is the file's open (cannot_open)
        self.conn = open_store(self.path, STORE, tables=TABLES, wal=False, timeout=5.0)
        try:
            migrate(self.conn, self.path, _MIGRATIONS, store=STORE)
        except BaseException:
            self.conn.close()
            raise

    def record(self, text: str, *, actor: str, at: float, comment: str = "") -> int:
        cur = self.conn.execute(
            "INSERT INTO versions (sha256, text, actor, applied_at, comment) VALUES (?, ?, ?, ?, ?)",
            (sha256_text(text), text, actor, at, comment),
        )
        return int(cur.lastrowid or 0)

    def record_digest(self, sha256: str, *, actor: str, at: float, comment: str) -> int:
        """A version whose text is not kept (it may hold a secret in clear, `comment` says): its sha256 alone, so
        the file it was is still known by it; its text is empty."""
        cur = self.conn.execute(
            "INSERT INTO versions (sha256, text, actor, applied_at, comment) VALUES (?, '', ?, ?, ?)",
            (sha256, actor, at, comment),
        )
        return int(cur.lastrowid or 0)

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM versions").fetchone()[0])

    def list(self, limit: int = 1000) -> list[ConfigVersion]:
        """Newest first."""
        rows = self.conn.execute(
            "SELECT version, sha256, actor, applied_at, comment FROM versions ORDER BY version DESC LIMIT ?", (limit,)
        ).fetchall()
        return [ConfigVersion(version=v, sha256=s, actor=a, applied_at=t, comment=c) for v, s, a, t, c in rows]

    def get(self, version: int) -> ConfigVersion | None:
        row = self.conn.execute(
            "SELECT version, sha256, actor, applied_at, comment, text FROM versions WHERE version = ?", (version,)
        ).fetchone()
        if row is None:
            return None
        v, s, a, t, c, text = row
        return ConfigVersion(version=v, sha256=s, actor=a, applied_at=t, comment=c, text=text)

    def version_of(self, sha256: str) -> int | None:
        """The newest version with this content (the running file's), None if it was never recorded."""
        row = self.conn.execute("SELECT max(version) FROM versions WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def close(self) -> None:
        self.conn.close()
