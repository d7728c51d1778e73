"""Every configuration applied from the control socket, with who, when and why: `<data_dir>/config_versions.db`.

A store of record (DESIGN.md "Stores"): its own sqlite file with the schema version in
`PRAGMA user_version` and forward migrations, so a rollback can go to any version ever applied.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE = "config_versions.db"
SCHEMA_VERSION = 1

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
        new = not self.path.exists()
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        if new:
            os.chmod(self.path, 0o600)  # configurations may name hosts and users: owner only
        self._migrate()

    def _migrate(self) -> None:
        (current,) = self.conn.execute("PRAGMA user_version").fetchone()
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path}: schema version {current} is newer than this edgegw's {SCHEMA_VERSION}; "
                "upgrade edgegw or restore the file from a backup"
            )
        for version in range(current, SCHEMA_VERSION):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _MIGRATIONS[version].split(";")):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {version + 1}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def record(self, text: str, *, actor: str, at: float, comment: str = "") -> int:
        cur = self.conn.execute(
            "INSERT INTO versions (sha256, text, actor, applied_at, comment) VALUES (?, ?, ?, ?, ?)",
            (sha256_text(text), text, actor, at, comment),
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
