"""The child-token key: in the secret store, never in `stations.db`; moved there from the first releases' files."""

from __future__ import annotations

import base64
import multiprocessing
import shutil
import sqlite3
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from adapters.scanner.child_key import ChildKeyMismatch, ChildKeyMissing, child_key
from adapters.scanner.classify import IdKind, ScanClass, ScanKind
from adapters.scanner.station import Purpose, Station, StationConfig, child_token
from adapters.scanner.store import SCHEMA_VERSION, StationStore, StationStoreError
from gateway.secrets import SecretStore

SECRET = "stations.child_key"
OLD_KEY = bytes(range(0x40, 0x60))  # distinctive, so its bytes are easy to find in a file
OTHER_KEY = bytes(range(0x80, 0xA0))
CARDS = [f"7310{n:06d}" for n in range(1, 6)]  # the low-entropy numbers the key must not give away
T0 = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo, the day the first release checked them in
DAY = "2026-12-04"
IN_US = int(T0.timestamp() * 1_000_000)

# The first releases' schema (version 1) as they wrote it, the key in clear in `meta`.
FIRST_RELEASE_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE counters (station TEXT PRIMARY KEY, next_no INTEGER NOT NULL);
CREATE TABLE children (
    station TEXT NOT NULL, token TEXT NOT NULL, day TEXT NOT NULL, present INTEGER NOT NULL,
    last_us INTEGER NOT NULL, in_us INTEGER NOT NULL, out_us INTEGER,
    PRIMARY KEY (station, token));
CREATE TABLE shelves (station TEXT PRIMARY KEY, shelf TEXT, count INTEGER NOT NULL);
CREATE TABLE recent (
    id INTEGER PRIMARY KEY AUTOINCREMENT, station TEXT NOT NULL, scan_no INTEGER NOT NULL,
    at_us INTEGER NOT NULL, reason TEXT NOT NULL, feedback TEXT NOT NULL, entity_ids TEXT NOT NULL);
CREATE INDEX recent_station ON recent (station, id);
CREATE TABLE outreach (
    station TEXT NOT NULL, scan_no INTEGER NOT NULL, at_us INTEGER NOT NULL,
    PRIMARY KEY (station, scan_no));
"""


def on_disk(directory: Path) -> bytes:
    """Every byte of the store's files as they are now (the WAL may be absent or empty)."""
    out = b""
    for name in ("stations.db", "stations.db-wal"):
        path = directory / name
        out += path.read_bytes() if path.exists() else b""
    return out


def holds(raw: bytes, key: bytes) -> bool:
    """The key or any 8-byte piece of it."""
    return any(key[i : i + 8] in raw for i in range(len(key) - 7))


def first_release_file(directory: Path, key: bytes = OLD_KEY) -> None:
    """A version 1 `stations.db` with `key` in `meta` (also in old WAL frames) and the children it checked in."""
    build = directory / "build"
    build.mkdir()
    db = sqlite3.connect(build / "stations.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript("BEGIN IMMEDIATE;" + FIRST_RELEASE_SCHEMA + "PRAGMA user_version=1;COMMIT;")
    db.execute("INSERT INTO meta VALUES ('child_key', ?)", (key,))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the key in the main file
    for card in CARDS:  # as the first release recorded them, the key's page rewritten into the WAL on the way
        db.execute("INSERT INTO meta VALUES (?, x'00')", (f"seen-{card[-2:]}",))
        db.execute(
            "INSERT INTO children VALUES ('nursery', ?, ?, 1, ?, ?, NULL)", (child_token(key, card), DAY, IN_US, IN_US)
        )
    for name in ("stations.db", "stations.db-wal"):  # copied as a kill -9 leaves them
        shutil.copy(build / name, directory / name)
    db.close()
    shutil.rmtree(build)


def stored_secret(directory: Path) -> bytes:
    return base64.b64decode(SecretStore(directory).get(SECRET))


def meta_rows(directory: Path) -> dict[str, bytes]:
    db = sqlite3.connect(directory / "stations.db")
    try:
        return {k: bytes(v) for k, v in db.execute("SELECT key, value FROM meta WHERE key LIKE 'child_key%'")}
    finally:
        db.close()


def check_out(key: bytes, store: StationStore, card: str) -> tuple[str, str]:
    """The attendance station's answer to `card` an hour later, on the state the store kept: action and entity id."""
    station = Station(
        StationConfig(station_id="nursery", purpose=Purpose.ATTENDANCE), adapter="scan", device="d", local_key=key
    )
    station.state = store.load_state("nursery")
    at = T0.replace(hour=1)
    step = station.scan(ScanClass(kind=ScanKind.PATRON, value=card, id_kind=IdKind.PATRON), at, 7)
    event, state = step.readings
    return str(event.attributes["action"].value), state.entity_id


def test_a_new_store_keeps_its_key_in_the_secret_store_not_in_its_file(tmp_path: Path) -> None:
    store = StationStore(tmp_path / "stations.db")
    try:
        key = store.local_key()
        assert len(key) == 32
        assert stored_secret(tmp_path) == key
        assert not holds(on_disk(tmp_path), key)
        assert store.schema_version() == SCHEMA_VERSION == 2
    finally:
        store.close()
    assert not holds(on_disk(tmp_path), key)
    assert list(meta_rows(tmp_path)) == ["child_key_check"]
    again = StationStore(tmp_path / "stations.db")
    try:
        assert again.local_key() == key  # the same key at every start, the same tokens
    finally:
        again.close()


def _start(directory: str, in_file: bytes | None, together: Barrier, keys: Queue[bytes]) -> None:
    together.wait()
    keys.put(child_key(Path(directory), SECRET, in_file=in_file, check=None, where="stations.db"))


@pytest.mark.parametrize("in_file", [None, OLD_KEY], ids=["made", "adopted_from_meta"])
def test_four_processes_starting_together_end_with_one_key(tmp_path: Path, in_file: bytes | None) -> None:
    # each making its own key, a process could tokenise children with a key another's write replaced
    ctx = multiprocessing.get_context("spawn")
    together, keys = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_start, args=(str(tmp_path), in_file, together, keys)) for _ in range(4)]
    for proc in procs:
        proc.start()
    got_keys = {keys.get(timeout=120) for _ in procs}
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert got_keys == {stored_secret(tmp_path)}
    if in_file is not None:
        assert got_keys == {OLD_KEY}  # the meta value itself, never a new key


def test_a_first_release_file_moves_its_key_and_keeps_every_token(tmp_path: Path) -> None:
    first_release_file(tmp_path)
    raw = on_disk(tmp_path)
    assert OLD_KEY in (tmp_path / "stations.db").read_bytes() and OLD_KEY in (tmp_path / "stations.db-wal").read_bytes()
    store = StationStore(tmp_path / "stations.db")
    try:
        assert store.local_key() == OLD_KEY
        assert not holds(on_disk(tmp_path), OLD_KEY)  # the store still open: file vacuumed, WAL emptied
        assert sorted(store.load_state("nursery").children) == sorted(child_token(OLD_KEY, c) for c in CARDS)
        # the children checked in before the move are checked out under the tokens the platform already has
        action, entity_id = check_out(store.local_key(), store, CARDS[0])
        assert action == "checkOut"
        assert entity_id == f"urn:ngsi-ld:ChildAttendance:nursery:{child_token(OLD_KEY, CARDS[0])}"
        assert child_token(OLD_KEY, CARDS[0]).encode() in raw  # what a backup of the old file held with its key
    finally:
        store.close()
    assert stored_secret(tmp_path) == OLD_KEY
    assert not holds(on_disk(tmp_path), OLD_KEY)
    assert list(meta_rows(tmp_path)) == ["child_key_check"]
    db = sqlite3.connect(tmp_path / "stations.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


def test_a_start_that_stopped_after_the_secret_store_write_finishes_the_move(tmp_path: Path) -> None:
    first_release_file(tmp_path)
    # what a crash between the two steps leaves: the key durable in the secret store, the row still in meta
    SecretStore(tmp_path).set(SECRET, base64.b64encode(OLD_KEY).decode())
    assert meta_rows(tmp_path) == {"child_key": OLD_KEY}
    store = StationStore(tmp_path / "stations.db")
    try:
        assert store.local_key() == OLD_KEY
        assert check_out(store.local_key(), store, CARDS[1])[0] == "checkOut"
    finally:
        store.close()
    assert stored_secret(tmp_path) == OLD_KEY
    assert list(meta_rows(tmp_path)) == ["child_key_check"]
    assert not holds(on_disk(tmp_path), OLD_KEY)


def test_two_different_keys_are_an_error_naming_both_places_and_nothing_changes(tmp_path: Path) -> None:
    first_release_file(tmp_path)
    SecretStore(tmp_path).set(SECRET, base64.b64encode(OTHER_KEY).decode())
    path = tmp_path / "stations.db"
    with pytest.raises(ChildKeyMismatch) as caught:
        StationStore(path)
    assert str(caught.value) == (
        f"station store {path}: the child-token key in the store's meta table and secret:stations.child_key in the "
        f"secret store {tmp_path / 'secrets.enc'} differ, got two keys (not shown); the tokens already issued were "
        "made with the one in meta: put back the secret store this box had, or set secret:stations.child_key to "
        "meta.child_key in base64 (`edgegw secret set stations.child_key`), and start again"
    )
    assert caught.value.code == "scanner_child_key_mismatch"
    assert caught.value.params == {"secret": SECRET}
    assert meta_rows(tmp_path) == {"child_key": OLD_KEY}  # the tokens' key stays where it was, the file at 1
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()
    assert stored_secret(tmp_path) == OTHER_KEY
    # the fix the message gives: the secret set to meta's key, then the move completes
    SecretStore(tmp_path).set(SECRET, base64.b64encode(OLD_KEY).decode())
    store = StationStore(path)
    try:
        assert store.local_key() == OLD_KEY
    finally:
        store.close()
    assert not holds(on_disk(tmp_path), OLD_KEY)


def test_a_replaced_or_lost_key_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / "stations.db"
    StationStore(path).close()
    store_file = tmp_path / "secrets.enc"
    SecretStore(tmp_path).set(SECRET, base64.b64encode(OTHER_KEY).decode())  # another box's, say
    with pytest.raises(ChildKeyMismatch) as mismatch:
        StationStore(path)
    assert str(mismatch.value) == (
        f"station store {path}: its child tokens were made with another key than secret:stations.child_key in the "
        f"secret store {store_file}, got a key that does not match the store's meta.child_key_check; restore the "
        "secret store (secrets.enc with its secrets.key) that belongs to this station store"
    )
    shutil.move(tmp_path / "secrets.key", tmp_path / "old.key")
    store_file.unlink()  # the secret store started anew
    with pytest.raises(ChildKeyMissing) as missing:
        StationStore(path)
    assert str(missing.value) == (
        f"station store {path}: its child tokens were made with secret:stations.child_key, got a secret store "
        f"{store_file} without it; restore the secret store (secrets.enc with its secrets.key) that belongs to this "
        "station store (a new key would give every child a new token)"
    )
    assert missing.value.code == "scanner_child_key_missing"
    assert SECRET not in SecretStore(tmp_path).names()  # no key was made


def test_a_newer_file_is_refused_before_the_secret_store_is_touched(tmp_path: Path) -> None:
    path = tmp_path / "stations.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 3")
    db.close()
    with pytest.raises(StationStoreError) as caught:
        StationStore(path)
    assert (
        str(caught.value) == f"{path}: schema version newer than this edgegw knows (2), got version 3; upgrade edgegw"
    )
    assert not (tmp_path / "secrets.enc").exists() and not (tmp_path / "secrets.key").exists()
