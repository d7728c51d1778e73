"""A store's file that SQLite opens but cannot read, or another store's file: refused at open, naming both.

The Wi-Fi log, station, locker and mail stores raised SQLite's bare "database disk image is malformed" or
"file is not a database" for a file with SQLite's header and a damaged first page; the accounts and the
audit log a UnicodeDecodeError for a schema whose text does not decode; config versions opened a damaged
file and failed at its first request. Another store's file said "no such table", or "schema version
newer", or opened. Real stores are written, then bytes are changed on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.storage.files import StoreUnreadable
from tests.storage.test_store_unreadable import FIX, STORES

MALFORMED = 'a damaged SQLite database, got SQLite\'s "database disk image is malformed"'
# each store's own tables, as its first schema version made them: what the refusal of another's file names
OWN_TABLES = {
    "account store": "setup_tokens, users",
    "audit log": "entries",
    "Wi-Fi log": "certificates, periods, sessions",
    "config versions": "versions",
    "station store": "children, counters, outreach, recent, shelves",
    "locker store": "assignments",
    "mail queue": "mails",
}


def _close(opened: object) -> None:
    close = getattr(opened, "close", None)
    if close is not None:
        close()


def _written(tmp_path: Path, store: str) -> Path:
    """The store's file as the store leaves it when closed: whole, no -wal beside it."""
    name, opener = STORES[store]
    _close(opener(tmp_path))
    path = tmp_path / name
    assert not path.with_name(f"{path.name}-wal").exists()  # every page is in the file, where the test damages it
    return path


def _tables(path: Path) -> dict[str, int]:
    """Table → root page, read without a lock or a -shm (immutable): the test must not change the file."""
    db = sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True)
    try:
        return dict(db.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'").fetchall())
    finally:
        db.close()


def _page_size(data: bytes) -> int:
    size = int.from_bytes(data[16:18], "big")
    return 65536 if size == 1 else size


def _refused(tmp_path: Path, store: str, damaged: bytes) -> StoreUnreadable:
    name, opener = STORES[store]
    path = tmp_path / name
    path.write_bytes(damaged)
    with pytest.raises(StoreUnreadable) as info:
        _close(opener(tmp_path))
    assert path.read_bytes() == damaged  # left as it is, for the technician's backup or move
    assert isinstance(info.value, ConfigError)
    assert info.value.params["path"] == str(path) and info.value.params["store"] == store
    return info.value


def _schema_text(data: bytes, old: bytes, new: bytes) -> bytes:
    page = _page_size(data)
    at = data.index(b"CREATE TABLE", 100, page)  # a table's statement, in the schema on the first page
    return data[:at] + data[at : at + len(old)].replace(old, new) + data[at + len(old) :]


DAMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    # the first page's b-tree header: SQLite reads it for any statement after the file's header
    "first page's b-tree header": (lambda d: d[:100] + b"\xff" * 12 + d[112:], MALFORMED),
    # a page size that is no power of two: the header is SQLite's, the file is not a database to it
    "page size": (
        lambda d: d[:16] + b"\x00\x03" + d[18:],
        'not an SQLite database, got SQLite\'s "file is not a database"',
    ),
    # the schema's statements, kept in the first page
    "schema statement": (
        lambda d: _schema_text(d, b"CREATE TABLE", b"CREATE TABLX"),
        "a damaged SQLite database, got SQLite's \"malformed database schema (",
    ),
    # bytes that are no UTF-8 in a statement: SQLite quotes them in its error, which Python cannot decode
    "schema text that is no UTF-8": (
        lambda d: _schema_text(d, b"CREATE TABLE", b"CREATE \xffABLE"),
        "a damaged SQLite database, got text that is no UTF-8 (invalid start byte) where SQLite keeps the schema",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("store", sorted(STORES))
def test_a_damaged_file_with_sqlites_header_is_refused_naming_the_store_and_the_file(
    tmp_path: Path, store: str, damage: str
) -> None:
    path = _written(tmp_path, store)
    change, said = DAMAGES[damage]
    refused = _refused(tmp_path, store, change(path.read_bytes()))
    assert str(refused).startswith(f"{store} {path}: {said}"), str(refused)
    assert str(refused).endswith(f"; {FIX}")
    expected = sqlite3.SQLITE_NOTADB if damage == "page size" else sqlite3.SQLITE_CORRUPT
    assert refused.sqlite_errorcode & 0xFF == expected


@pytest.mark.parametrize("store", sorted(STORES))
def test_a_damaged_root_page_of_any_table_is_refused_at_open(tmp_path: Path, store: str) -> None:
    path = _written(tmp_path, store)
    sound = path.read_bytes()
    page = _page_size(sound)
    tables = _tables(path)
    assert tables, "the store made no table"
    for table, root in sorted(tables.items()):
        at = (root - 1) * page  # the page's b-tree header: a type byte no page has
        refused = _refused(tmp_path, store, sound[:at] + b"\xff" * 12 + sound[at + 12 :])
        assert str(refused) == f"{store} {path}: {MALFORMED}; {FIX}", table
    path.write_bytes(sound)
    _close(STORES[store][1](tmp_path))  # the sound file still opens: the probe reads, it does not refuse


# (store opened, store whose file is put in its place): each store once, and the pairs that said something
# else: the mail queue's file as the Wi-Fi log (no such table), stations' as config versions (a newer schema),
# config versions' as stations (no such table: meta), stations' as the locker's (both have a meta table)
FOREIGN = [
    ("Wi-Fi log", "mail queue"),
    ("config versions", "station store"),
    ("station store", "config versions"),
    ("locker store", "station store"),
    ("mail queue", "locker store"),
    ("account store", "audit log"),
    ("audit log", "account store"),
]


@pytest.mark.parametrize(("store", "other"), FOREIGN)
def test_another_stores_file_is_refused_as_such_and_left_unchanged(
    tmp_path: Path, store: str, other: str, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = _written(tmp_path / "other", other)
    name, opener = STORES[store]
    path = tmp_path / "box" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = theirs.read_bytes()
    path.write_bytes(data)
    found = ", ".join(sorted(t for t in _tables(path) if not t.startswith("sqlite_")))
    with pytest.raises(StoreUnreadable) as info:  # a ForeignStore, by its code
        _close(opener(tmp_path / "box"))
    message = (
        f"{store} {path}: another store's file (none of the tables {OWN_TABLES[store]}), got tables {found}; {FIX}"
    )
    assert str(info.value) == message
    params = info.value.params
    assert (info.value.code, params["path"], params["store"]) == ("store_foreign", str(path), store)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, sqlite3.DatabaseError)
    # refused before any write: not converted to WAL, no migration, no -wal or -shm left beside it
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)) == [path.name]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("gateway.storage")] == [message]


@pytest.mark.parametrize("store", sorted(STORES))
def test_each_stores_own_tables_are_the_ones_it_makes(tmp_path: Path, store: str) -> None:
    # the list a refusal quotes is the store's: a new file of it holds every one of them
    path = _written(tmp_path, store)
    assert set(OWN_TABLES[store].split(", ")) <= set(_tables(path))
