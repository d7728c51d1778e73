"""Acct-Session-Id never in the file in clear: some controllers build it from the client MAC (Cisco AireOS
`<hex>/<client MAC>/<n>`), and a clear column outlives the period's key in every backup of the database.

The store keeps a keyed digest of (NAS, session id) as the lookup column and as the rows' associated data; the
id itself is only inside the encrypted record. A file of schema version 1 (clear ids) is rewritten when the
gateway opens it: built here by hand from the version 1 format, an oracle independent of the store's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.secrets import SecretStore
from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogError, WifiLogStore
from gateway.wifilog.export import render_csv
from gateway.wifilog.sessions import Session
from gateway.wifilog.store import DB_FILE, JST, KEYS_SECRET, SCHEMA_V1, STORE_DIR

T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
MAC_HEX = "3c22fb123456"
SID = "5a2e8f17/3c:22:fb:12:34:56/3409"  # Cisco AireOS: the client MAC inside the session id
NAS = "wlc1"


def spellings(hex12: str) -> list[bytes]:
    """Every way a MAC is commonly written (colons, dashes, Cisco dots, bare), upper and lower case."""
    pairs = [hex12[i : i + 2] for i in range(0, 12, 2)]
    forms = [":".join(pairs), "-".join(pairs), ".".join(hex12[i : i + 4] for i in range(0, 12, 4)), hex12]
    return [f.encode() for form in forms for f in (form.lower(), form.upper())]


def files_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (data_dir / STORE_DIR).glob(DB_FILE + "*"))


def clear_spellings(data_dir: Path, hex12: str = MAC_HEX) -> list[bytes]:
    raw = files_bytes(data_dir)
    return [s for s in spellings(hex12) if s in raw]


def event(kind: EventKind, t: datetime, sid: str = SID, nas: str = NAS, **kw: object) -> SessionEvent:
    return SessionEvent(nas=nas, session_id=sid, kind=kind, time=t, **kw)  # type: ignore[arg-type]


def test_a_session_id_holding_the_mac_is_not_in_the_files_and_start_and_stop_still_merge(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    try:
        store.apply([event(EventKind.START, T0, client_mac="3c:22:fb:12:34:56", user_name="hanako@example.jp")])
        store.apply(
            [event(EventKind.STOP, T0 + timedelta(minutes=7), session_time=420, terminate_cause="User Request")]
        )
        assert clear_spellings(tmp_path) == []  # the WAL, while the store holds it open
        [s] = store.search(Query(mac="3c:22:fb:12:34:56"))
        assert (s.session_id, s.start, s.stop, s.duration_s) == (SID, T0, T0 + timedelta(minutes=7), 420)
        assert store.stats()["sessions_per_period"] == {"2026-12": 1}
        assert f",{NAS},{SID},".encode() in render_csv([s])  # the export shows the id as before
    finally:
        store.close()
    assert clear_spellings(tmp_path) == [] and SID.encode() not in files_bytes(tmp_path)


def test_a_session_crossing_a_month_boundary_is_found_by_its_stop(tmp_path: Path) -> None:
    # a Stop in December still finds the November session, whose digest is under November's lookup key
    start = datetime(2026, 11, 30, 23, 50, tzinfo=JST)
    store = WifiLogStore(tmp_path)
    try:
        store.apply([event(EventKind.START, start, client_mac="3c:22:fb:12:34:56")])
        store.apply([event(EventKind.STOP, start + timedelta(minutes=20))])
        [s] = store.search(Query(mac="3c:22:fb:12:34:56"))
        assert (s.start, s.stop) == (start, start + timedelta(minutes=20))
        assert store.stats()["sessions_per_period"] == {"2026-11": 1}
    finally:
        store.close()


def test_a_nas_restart_closes_its_open_sessions_by_their_real_ids(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    try:
        store.apply(
            [
                event(EventKind.START, T0, sid="a/3c:22:fb:12:34:56/1", client_mac="3c:22:fb:12:34:56"),
                event(EventKind.START, T0, sid="b/3c:22:fb:12:34:57/1", client_mac="3c:22:fb:12:34:57"),
                event(EventKind.START, T0, sid="c", nas="wlc2", client_mac="3c:22:fb:12:34:58"),
            ]
        )
        assert store.close_nas(NAS, T0 + timedelta(hours=1), "NAS-Reboot") == 2
        found = {s.session_id: (s.stop, s.terminate_cause) for s in store.search(Query(time_from=T0, time_to=T0))}
        assert found == {
            "a/3c:22:fb:12:34:56/1": (T0 + timedelta(hours=1), "NAS-Reboot"),
            "b/3c:22:fb:12:34:57/1": (T0 + timedelta(hours=1), "NAS-Reboot"),
            "c": (None, None),
        }
        assert store.open_session_id("wlc2", "3c:22:fb:12:34:58") == "c"
        assert store.open_session_id(NAS, "3c:22:fb:12:34:56") is None  # closed
    finally:
        store.close()


def test_open_session_id_answers_the_real_id(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    try:
        store.apply([event(EventKind.START, T0, client_mac="3c:22:fb:12:34:56")])
        assert store.open_session_id(NAS, "3c:22:fb:12:34:56") == SID
    finally:
        store.close()


# -- a file of schema version 1 -------------------------------------------------------------------------------

# what version 1 made: the store's own first migration step, which never changes, then its version
V1_SCHEMA = SCHEMA_V1 + ";\nPRAGMA user_version = 1;"


def _seal(key: bytes, plain: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, plain, aad)


def write_v1(data_dir: Path, sessions: list[Session]) -> None:
    """A version 1 file as the store wrote it: a KEK per period in the ring, the DEK wrapped by it, rows sealed
    with the associated data `NAS \\0 session id` and the session id in clear."""
    (data_dir / STORE_DIR).mkdir(parents=True)
    db = sqlite3.connect(data_dir / STORE_DIR / DB_FILE)
    db.executescript(V1_SCHEMA)
    ring: dict[str, dict[str, str]] = {}
    deks: dict[str, bytes] = {}
    for s in sessions:
        period = s.start.astimezone(JST).strftime("%Y-%m")
        if period not in deks:
            kek, deks[period] = secrets.token_bytes(32), secrets.token_bytes(32)
            key_id = f"wifilog-{period}-0000beef"
            ring[period] = {"id": key_id, "kek": base64.b64encode(kek).decode()}
            db.execute(
                "INSERT INTO periods VALUES (?, ?, ?, ?)",
                (period, key_id, _seal(kek, deks[period], key_id.encode()), T0.isoformat()),
            )
        dek = deks[period]
        index_key = hmac.new(dek, b"edgegw wifilog blind index", hashlib.sha256).digest()
        mac_idx = hmac.new(index_key, (s.client_mac or "").encode(), hashlib.sha256).digest()[:16]
        db.execute(
            "INSERT INTO sessions (period, nas, session_id, start, end_at, open, mac_idx, blob)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                period,
                s.nas,
                s.session_id,
                s.start.timestamp(),
                s.end.timestamp(),
                int(s.stop is None),
                mac_idx,
                _seal(dek, s.to_json(), f"{s.nas}\0{s.session_id}".encode()),
            ),
        )
    db.commit()
    db.close()
    SecretStore(data_dir).set(KEYS_SECRET, json.dumps(ring, sort_keys=True))


def v1_session(sid: str, start: datetime, mac: str, stop: datetime | None = None) -> Session:
    return Session(nas=NAS, session_id=sid, source="radius", start=start, last_update=start, stop=stop, client_mac=mac)


def test_a_version_1_file_is_rewritten_without_clear_ids_and_its_sessions_still_merge(tmp_path: Path) -> None:
    old = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    write_v1(
        tmp_path,
        [
            v1_session(SID, T0, "3c:22:fb:12:34:56"),
            v1_session("x/3c:22:fb:00:00:01/1", old, "3c:22:fb:00:00:01", stop=old + timedelta(minutes=5)),
        ],
    )
    assert clear_spellings(tmp_path) != []  # the oracle writes what version 1 wrote
    store = WifiLogStore(tmp_path)
    try:
        assert store.schema_version() == 3
        store.apply([event(EventKind.STOP, T0 + timedelta(minutes=3))])  # the Stop of a session opened before
        [s] = store.search(Query(mac="3c:22:fb:12:34:56"))
        assert (s.session_id, s.start, s.stop) == (SID, T0, T0 + timedelta(minutes=3))
        assert [s.session_id for s in store.search(Query(mac="3c:22:fb:00:00:01"))] == ["x/3c:22:fb:00:00:01/1"]
        assert store.stats()["sessions_per_period"] == {"2026-11": 1, "2026-12": 1}
    finally:
        store.close()
    assert clear_spellings(tmp_path) == [] and clear_spellings(tmp_path, "3c22fb000001") == []


def test_rows_of_an_erased_period_lose_their_clear_id_and_are_still_counted_by_the_certificate(
    tmp_path: Path,
) -> None:
    # a crash between destroying November's key and deleting its rows: they cannot be re-sealed, but the
    # lookup column needs no key to be replaced, and the erasure still certifies them
    old = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    write_v1(tmp_path, [v1_session(SID, T0, "3c:22:fb:12:34:56"), v1_session("y/3c:22:fb:00:00:02/1", old, "n/a")])
    ring = json.loads(SecretStore(tmp_path).get(KEYS_SECRET))
    del ring["2026-11"]
    SecretStore(tmp_path).set(KEYS_SECRET, json.dumps(ring))
    store = WifiLogStore(tmp_path, retention_months=1)
    try:
        assert clear_spellings(tmp_path, "3c22fb000002") == []
        [cert] = store.expire(T0)
        assert (cert["period"], cert["records"]) == ("2026-11", 1)
        assert [s.session_id for s in store.search(Query(mac="3c:22:fb:12:34:56"))] == [SID]
    finally:
        store.close()


def test_a_version_1_file_beside_another_boxs_secret_store_is_left_unchanged(tmp_path: Path) -> None:
    write_v1(tmp_path, [v1_session(SID, T0, "3c:22:fb:12:34:56")])
    ring = json.loads(SecretStore(tmp_path).get(KEYS_SECRET))
    ring["2026-12"]["kek"] = base64.b64encode(bytes(32)).decode()  # the right key id, not the right key
    SecretStore(tmp_path).set(KEYS_SECRET, json.dumps(ring))
    path = tmp_path / STORE_DIR / DB_FILE
    rows = "SELECT * FROM sessions ORDER BY id"
    before = sqlite3.connect(path).execute(rows).fetchall()
    with pytest.raises(WifiLogError) as caught:
        WifiLogStore(tmp_path)
    assert str(caught.value) == (
        f"Wi-Fi log: migration of {path} from schema version 1 to 2 failed, got ValueError: wifilog period "
        "2026-12: the wrapped data key does not open with key wifilog-2026-12-0000beef; the database and the "
        "secret store do not belong together; the file is unchanged at version 1, run the previous edgegw "
        "release or restore a backup"
    )
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1 and db.execute(rows).fetchall() == before


def test_a_damaged_record_of_a_version_1_file_is_kept_and_the_others_are_rewritten(tmp_path: Path) -> None:
    write_v1(tmp_path, [v1_session(SID, T0, "3c:22:fb:12:34:56"), v1_session("z/3c:22:fb:00:00:03/1", T0, "n/a")])
    db = sqlite3.connect(tmp_path / STORE_DIR / DB_FILE)
    db.execute("UPDATE sessions SET blob = zeroblob(80) WHERE session_id LIKE 'z/%'")  # unreadable already
    db.commit()
    db.close()
    store = WifiLogStore(tmp_path)
    try:
        assert [s.session_id for s in store.search(Query(mac="3c:22:fb:12:34:56"))] == [SID]
        assert store.stats()["sessions_per_period"] == {"2026-12": 2}
        assert clear_spellings(tmp_path, "3c22fb000003") == []
    finally:
        store.close()
