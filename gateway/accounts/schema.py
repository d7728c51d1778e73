"""Forward migrations for the small stores of record (accounts, audit log): `PRAGMA user_version` is the version."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from gateway.errors import GatewayError

__all__ = ["migrate"]


def migrate(db: sqlite3.Connection, path: Path, migrations: Sequence[str], error: type[GatewayError]) -> None:
    """Bring the file to version len(migrations); `migrations[i]` takes it from version i to i + 1.

    The version is read inside the write transaction, so two processes opening a new file at once
    (the web UI and the CLI) migrate it once. A file newer than this code is refused with `error`.
    """
    target = len(migrations)
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > target:
            raise error(
                f"{path}: schema version newer than this edgegw knows ({target}), got version {version}; upgrade edgegw",
                version=version,
            )
        for step in migrations[version:]:
            for statement in step.split(";"):  # the migrations hold no ";" inside a literal
                if statement.strip():
                    db.execute(statement)
        if version != target:
            db.execute(f"PRAGMA user_version = {target}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
