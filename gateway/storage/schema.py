"""Schema versions and forward migrations for every sqlite store: `PRAGMA user_version` is the version.

Every store (buffer, accounts, audit log, config versions, mail queue, …) declares its migrations as a
sequence: `migrations[i]` takes a file from version i to i + 1, either an SQL script (statements split
on ";", so none may hold a ";" inside a literal) or a callable doing data work on the connection.
`migrate` runs every missing step in ONE write transaction: a step that fails rolls the whole file
back to the version it had (SQLite's DDL is transactional), and the error says so. A file written by
a newer edgegw is refused (a downgrade), never opened and never changed; so is one that is no SQLite
database, or a damaged one (StoreUnreadable, from gateway.storage.files, naming the file).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError
from gateway.storage.files import StoreUnreadable, unreadable

__all__ = [
    "Migration",
    "MigrationFailed",
    "Migrations",
    "SchemaTooNew",
    "StoreUnreadable",
    "Upgrade",
    "migrate",
    "read_version",
]

log = logging.getLogger("gateway.storage")

Migration = str | Callable[[sqlite3.Connection], None]
Migrations = Sequence[Migration]


class SchemaTooNew(GatewayError):
    """The file was written by a newer edgegw: a downgrade, refused."""

    code = "schema_too_new"


class MigrationFailed(GatewayError):
    """A forward migration failed; the file was rolled back and is as it was."""

    code = "migration_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Upgrade:
    """What `migrate` did to one file: `before == after` when it was current already."""

    store: str
    path: Path
    before: int
    after: int

    @property
    def changed(self) -> bool:
        return self.before != self.after


def read_version(db: sqlite3.Connection, path: Path | None = None, *, store: str = "") -> int:
    """The file's schema version; StoreUnreadable (naming `store` and `path`, else the connection's file) for a
    file that is no database or a damaged one."""
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        refused = unreadable(path or _file_of(db), exc, store=store)
        if refused is None:
            raise
        raise refused from exc


def _file_of(db: sqlite3.Connection) -> Path:
    # database_list reads no page of the file: it answers for one that is no database too
    for _, name, file in db.execute("PRAGMA database_list"):
        if name == "main":
            return Path(file or ":memory:")
    return Path(":memory:")


def _run(db: sqlite3.Connection, step: Migration) -> None:
    if callable(step):
        step(db)
        return
    # one statement at a time (execute() takes one; executescript() would commit the open transaction),
    # cut at the semicolons that end a statement, not those inside a comment or a string
    statement = ""
    for piece in step.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \t\n;"):
                db.execute(statement)
            statement = ""
    if statement.strip(" \t\n;"):
        db.execute(statement)  # sqlite names what is incomplete


def migrate(
    db: sqlite3.Connection,
    path: Path,
    migrations: Migrations,
    error: type[GatewayError] | None = None,
    *,
    store: str = "",
) -> Upgrade:
    """Bring the file to version len(migrations) in one transaction; nothing written when it is current.

    `db` must be in autocommit mode (isolation_level=None). The version is read inside the write
    transaction, so two processes opening a new file at once migrate it once. A newer file raises
    `error` (or SchemaTooNew) with `version=`; a failing step raises `error` (or MigrationFailed)
    after the rollback, the file left at the version it had.
    """
    target = len(migrations)
    name = store or path.name
    # Read first without the write lock: a current file (every start after the first) takes no lock
    # and writes nothing, so a store opens on a full disk or a read-only mount.
    version = read_version(db, path, store=store)
    if version == target:
        return Upgrade(store=name, path=path, before=version, after=version)
    if version > target:
        raise _too_new(error, name, path, version, target)
    db.execute("BEGIN IMMEDIATE")
    try:
        version = read_version(db, path, store=store)
        if version > target:
            raise _too_new(error, name, path, version, target)
        for number, step in enumerate(migrations[version:], start=version):
            try:
                _run(db, step)
            except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
                raise (error or MigrationFailed)(
                    f"{name}: migration of {path} from schema version {number} to {number + 1} failed, "
                    f"got {type(exc).__name__}: {exc}; the file is unchanged at version {version}, "
                    "run the previous edgegw release or restore a backup",
                    version=version,
                    path=str(path),
                ) from exc
        if version != target:
            db.execute(f"PRAGMA user_version = {target}")
    except BaseException:
        _roll_back(db)
        raise
    try:
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        _roll_back(db)
        # COMMIT itself (a full disk): SQLite rolled the file back, and its words name neither store nor file
        raise (error or MigrationFailed)(
            f"{name}: migration of {path} from schema version {version} to {target} failed, got "
            f"{type(exc).__name__} on commit: {exc}; the file is unchanged at version {version}, free space in "
            f"{path.parent} if the disk is full, else run the previous edgegw release or restore a backup",
            version=version,
            path=str(path),
        ) from exc
    if version != target:
        log.info("%s: %s migrated from schema version %d to %d", name, path, version, target)
    return Upgrade(store=name, path=path, before=version, after=target)


def _roll_back(db: sqlite3.Connection) -> None:
    # SQLite ends the transaction by itself on some errors (a full disk): a ROLLBACK then would raise
    # "no transaction is active" and hide the error that says what went wrong
    if db.in_transaction:
        db.execute("ROLLBACK")


def _too_new(error: type[GatewayError] | None, name: str, path: Path, version: int, target: int) -> GatewayError:
    # A downgrade: the file is neither read nor changed. The wording is the one every store used
    # before this module (tests and operators' runbooks quote it).
    log.error(
        "%s: %s has schema version %d, newer than this edgegw's %d; refusing a downgrade", name, path, version, target
    )
    return (error or SchemaTooNew)(
        f"{path}: schema version newer than this edgegw knows ({target}), got version {version}; upgrade edgegw",
        version=version,
        path=str(path),
    )
