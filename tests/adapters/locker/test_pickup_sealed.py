"""The patron's address at rest: sealed in the store's file, erased with its bytes, migrated from the first release."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import multiprocessing
import os
import shutil
import sqlite3
import tarfile
import time
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from adapters.locker.address_seal import AddressKeyInvalid, AddressSeal
from adapters.locker.pickup import SCHEMA_VERSION, Assignment, CodeCheck, PickupError, PickupState, PickupStore
from gateway.backup import archive
from gateway.secrets import SecretStore

ADDRESS = "hanako.patron@example.jp"
OTHER = "taro.patron@example.jp"
SECRET = "locker-x.address_key"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def store(directory: Path) -> PickupStore:
    return PickupStore(directory / "locker-x.db", clock=Clock())


def on_disk(directory: Path) -> bytes:
    """Every byte of the store's files as they are now (the WAL may be absent or empty)."""
    out = b""
    for name in ("locker-x.db", "locker-x.db-wal"):
        path = directory / name
        out += path.read_bytes() if path.exists() else b""
    return out


def got(s: PickupStore, assignment_id: int) -> Assignment:
    a = s.get(assignment_id)
    assert a is not None
    return a


def content(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


def sealed_of(directory: Path, assignment_id: int) -> bytes:
    db = sqlite3.connect(directory / "locker-x.db")
    try:
        value: bytes = db.execute("SELECT email_sealed FROM assignments WHERE id=?", (assignment_id,)).fetchone()[0]
    finally:
        db.close()
    return value


def test_the_address_is_sealed_in_the_file_and_opens_for_the_flow(tmp_path: Path) -> None:
    s = store(tmp_path)
    a, code = s.assign("A-01", email=ADDRESS, reference="R-1", valid_s=3600)
    assert a.has_email
    raw = on_disk(tmp_path)
    assert ADDRESS.encode() not in raw and b"hanako" not in raw
    assert s.email_of(a.id) == ADDRESS
    # the key is in the secret store, not in any file beside the database
    assert SECRET in SecretStore(tmp_path).names()
    assert (tmp_path / "locker-x.db").stat().st_mode & 0o777 == 0o600
    assert s.check_code("A-01", code)[0] is CodeCheck.OK
    assert s.email_of(a.id) == ADDRESS  # still there while the pickup event is owed
    s.close()


@pytest.mark.parametrize("end", ["pickup", "cancel"])
def test_an_erased_address_leaves_no_bytes_behind(tmp_path: Path, end: str) -> None:
    s = store(tmp_path)
    a, code = s.assign("A-01", email=ADDRESS, reference="R-1", valid_s=3600)
    sealed = sealed_of(tmp_path, a.id)
    assert sealed in on_disk(tmp_path)
    if end == "pickup":
        assert s.check_code("A-01", code)[0] is CodeCheck.OK
        s.seen_open(a.id)
        s.collected("A-01")
        s.event_sent(a.id)
    else:
        s.cancel("A-01")
    after = s.get(a.id)
    assert after is not None and not after.has_email and s.email_of(a.id) is None
    assert after.state is (PickupState.COLLECTED if end == "pickup" else PickupState.CANCELLED)
    raw = on_disk(tmp_path)  # with the store still open: secure_delete zeroed the cell, the WAL was emptied
    assert sealed not in raw and sealed[:12] not in raw and ADDRESS.encode() not in raw
    s.close()


def test_an_open_reader_does_not_hold_up_an_erasure_and_the_next_one_empties_the_wal(tmp_path: Path) -> None:
    s = store(tmp_path)
    first, _ = s.assign("A-01", email=ADDRESS, reference="R-1", valid_s=3600)
    s.assign("A-02", email=OTHER, reference="R-2", valid_s=3600)
    sealed = sealed_of(tmp_path, first.id)
    reader = sqlite3.connect(tmp_path / "locker-x.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM assignments").fetchone()  # a read transaction on an old snapshot
    started = time.monotonic()
    s.cancel("A-01")
    assert time.monotonic() - started < 1.0  # not the 5 s busy timeout
    reader.execute("COMMIT")
    reader.close()
    s.cancel("A-02")
    assert sealed not in on_disk(tmp_path)
    s.close()


def test_a_sealed_address_moved_to_another_row_reads_as_none_logged_once_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = store(tmp_path)
    a, _ = s.assign("A-01", email=ADDRESS, reference="R-1", valid_s=3600)
    b, _ = s.assign("A-02", email=OTHER, reference="R-2", valid_s=3600)
    db = sqlite3.connect(tmp_path / "locker-x.db")
    db.execute(
        "UPDATE assignments SET email_sealed=(SELECT email_sealed FROM assignments WHERE id=?) WHERE id=?", (a.id, b.id)
    )
    db.commit()
    db.close()
    with caplog.at_level(logging.DEBUG, logger="adapters.locker.pickup"):
        assert s.email_of(b.id) is None
        assert s.email_of(b.id) is None
    assert s.email_of(a.id) == ADDRESS  # its own row still opens
    assert s.unreadable_addresses == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"locker store {tmp_path / 'locker-x.db'}: the e-mail address of assignment {b.id} does not open, got a "
        "sealed value made under another key or for another row; treated as no address (the key in the secret "
        "store was replaced, or the database was altered); counted in unreadable_addresses"
    ]
    assert all(ADDRESS not in r.getMessage() and OTHER not in r.getMessage() for r in caplog.records)
    # the flow goes on (the adapter sends a pickup event without `patron`); the row is erased as usual
    s.cancel("A-02")
    assert not got(s, b.id).has_email
    s.close()


def test_replacing_the_key_erases_every_address_in_every_copy(tmp_path: Path) -> None:
    s = store(tmp_path)
    a, _ = s.assign("A-01", email=ADDRESS, reference="R-1", valid_s=3600)
    s.close()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "locker-x.db", copy / "locker-x.db")
    shutil.copy(tmp_path / "secrets.enc", copy / "secrets.enc")  # the secret store as it was, without its key
    SecretStore(tmp_path).set(SECRET, base64.b64encode(os.urandom(32)).decode())
    s = store(tmp_path)
    assert s.email_of(a.id) is None and s.unreadable_addresses == 1
    assert got(s, a.id).has_email  # the row still says it has one: only the key is gone
    s.close()
    # the copy alone: no secrets.key, so the secret store does not open and neither does the address
    assert ADDRESS.encode() not in (copy / "locker-x.db").read_bytes()


def _seal_at_start(directory: str, together: Barrier, sealed: Queue[bytes]) -> None:
    together.wait()
    sealed.put(AddressSeal.from_secret_store(Path(directory), SECRET, where="locker-x").seal(1, ADDRESS))


def test_four_processes_opening_the_store_together_seal_with_one_key(tmp_path: Path) -> None:
    # each making its own key, all but one would seal addresses under a key the secret store lost
    ctx = multiprocessing.get_context("spawn")
    together, sealed = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_seal_at_start, args=(str(tmp_path), together, sealed)) for _ in range(4)]
    for proc in procs:
        proc.start()
    values = [sealed.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    seal = AddressSeal.from_secret_store(tmp_path, SECRET, where="locker-x")
    assert [seal.open(1, v) for v in values] == [ADDRESS] * 4


def test_a_secret_that_is_not_a_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    SecretStore(tmp_path).set(SECRET, "hunter2-not-a-key")
    with pytest.raises(AddressKeyInvalid) as caught:
        store(tmp_path)
    assert str(caught.value) == (
        f"locker store {tmp_path / 'locker-x.db'}: secret:{SECRET} is not a 32-byte key in base64, got a value that "
        "is not shown here; restore the secret store that belongs to this database (addresses sealed under the old "
        "key cannot be read without it)"
    )


def test_a_default_backup_of_a_live_store_holds_no_address_and_no_key_that_opens_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = store(data)
    s.assign("A-01", email=ADDRESS, reference="R-1", valid_s=3600)
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nid = "gw"\n')
    backup = archive.create(
        data_dir=data, config_path=config, gateway_id="gw", out_dir=tmp_path / "backups", now=datetime.now(UTC)
    )
    s.close()
    with tarfile.open(backup) as tar:
        members = {m.name: content(tar, m) for m in tar.getmembers() if m.isfile()}
    assert "data/locker-x.db" in members and "data/secrets.enc" in members
    assert "data/secrets.key" not in members  # include_secret_key is off by default
    assert not [name for name, content in members.items() if ADDRESS.encode() in content]


# --- the first release's file ----------------------------------------------------------------------------

# the first release's CREATE statements and its version row, verbatim
FIRST_RELEASE_SCHEMA = """
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
INSERT INTO meta VALUES ('schema_version', '1');
"""
ERASED = [f"erased{n}.patron@example.jp" for n in range(3, 83)]  # picked up under the first release


def first_release_file(directory: Path) -> None:
    """A box killed mid-flow under the first release: an address it erased left in free space of the file,
    clear addresses of live assignments in the WAL."""
    build = directory / "build"
    build.mkdir()
    key = os.urandom(32)
    (build / "locker-x.key").write_bytes(key)
    db = sqlite3.connect(build / "locker-x.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("PRAGMA secure_delete=OFF")  # a sqlite built without SQLITE_SECURE_DELETE, as many are
    db.executescript(FIRST_RELEASE_SCHEMA)
    insert = (
        "INSERT INTO assignments (label, reference, email, code_hash, state, created_at, expires_at, mail_id) "
        "VALUES (?, ?, ?, ?, 'reserved', 1799990000, 1900000000, 7)"
    )
    db.execute(insert, ("A-01", "R-1", ADDRESS, hmac.new(key, b"123456", hashlib.sha256).hexdigest()))
    db.execute(insert, ("A-02", "R-2", OTHER, None))
    for n, address in enumerate(ERASED, start=3):
        db.execute(insert, (f"B-{n:02d}", f"R-{n}", address, hmac.new(key, b"%06d" % n, hashlib.sha256).hexdigest()))
        # the first release's statements for a pickup: each shrinks the row, leaving its old bytes as free space
        db.execute("UPDATE assignments SET state='opened', code_hash=NULL, opened_at=1799990100 WHERE id=?", (n,))
        db.execute("UPDATE assignments SET state='collected', closed_at=1799990200, event_pending=1 WHERE id=?", (n,))
        db.execute("UPDATE assignments SET event_pending=0, email=NULL WHERE id=?", (n,))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("UPDATE assignments SET state='overdue' WHERE id=2")  # in the WAL only
    for name in ("locker-x.db", "locker-x.db-wal", "locker-x.key"):  # copied as a kill -9 leaves them
        shutil.copy(build / name, directory / name)
    db.close()


def residue(raw: bytes) -> list[str]:
    """The first release's addresses still found in `raw`: whole or their distinctive local part."""
    return [a for a in (ADDRESS, OTHER, *ERASED) if a.encode() in raw or a.partition("@")[0].encode() in raw]


def test_a_first_release_file_is_migrated_and_its_clear_addresses_leave_the_file(tmp_path: Path) -> None:
    first_release_file(tmp_path)
    found = residue(on_disk(tmp_path))
    assert found[:2] == [ADDRESS, OTHER] and found[2:]  # and some erased ones, in free space the next row left
    s = store(tmp_path)
    assert s.email_of(1) == ADDRESS and s.email_of(2) == OTHER and s.email_of(3) is None
    assert [got(s, i).has_email for i in (1, 2, 3)] == [True, True, False]
    assert got(s, 2).state is PickupState.OVERDUE
    assert s.check_code("A-01", "123456")[0] is CodeCheck.OK  # codes hashed by the first release still work
    assert residue(on_disk(tmp_path)) == []  # the store still open: the file was vacuumed and the WAL emptied
    s.close()
    db = sqlite3.connect(tmp_path / "locker-x.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    # the first release reads this row and refuses a file newer than its version 1
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    assert "email" not in [r[1] for r in db.execute("PRAGMA table_info(assignments)")]
    db.close()
    assert residue(on_disk(tmp_path)) == []


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "locker-x.db")
    db.execute("PRAGMA user_version = 3")
    db.close()
    before = on_disk(tmp_path)
    path = tmp_path / "locker-x.db"
    with pytest.raises(PickupError) as caught:
        store(tmp_path)
    assert (
        str(caught.value) == f"{path}: schema version newer than this edgegw knows (2), got version 3; upgrade edgegw"
    )
    assert caught.value.params == {"version": 3, "path": str(path)}
    assert on_disk(tmp_path) == before
