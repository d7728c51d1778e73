"""A log written by the release before per-period lookup keys (schema version 2) stays readable, its periods are
erased on their schedule, and its one box-wide lookup key is destroyed: else the session event ids that release
sent, and the lookup digests in copies of its file, would stay linkable to a MAC after their periods' erasure.

The version 2 file is built here by hand from that release's format (an oracle independent of the store's code):
a KEK per period in the ring, the DEK wrapped by it, each row found by HMAC-SHA-256 of (NAS, session id) under
`secret:wifilog.session-lookup` and sealed with the NAS and that digest as associated data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.secrets import SecretStore
from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogError, WifiLogStore
from gateway.wifilog.runner import SESSION_EVENT_ID
from gateway.wifilog.sessions import Session
from gateway.wifilog.store import (
    DB_FILE,
    JST,
    KEYS_SECRET,
    SCHEMA_V1,
    SESSIONS_V2,
    SESSIONS_V2_INDEXES,
    STORE_DIR,
)
from tests.wifilog.test_erasure_unlinks_ids import id_digest, keys_on_the_box

LEGACY_LOOKUP_SECRET = "wifilog.session-lookup"  # the previous release's one lookup key
T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
NAS = "wlc1"
OPEN = "5a2e8f17/3c:22:fb:12:34:56/3409"  # December's, open across the upgrade
OPEN_MAC = "3c:22:fb:12:34:56"
OLD = "x/3c:22:fb:00:00:01/1"  # November 2025's: past its 12 months at T0
OLD_MAC = "3c:22:fb:00:00:01"
V2_SCHEMA = (
    f"{SCHEMA_V1};\n{SESSIONS_V2};\nDROP TABLE sessions;\nALTER TABLE sessions_v2 RENAME TO sessions;\n"
    f"{SESSIONS_V2_INDEXES};\nPRAGMA user_version = 2;"
)


def _seal(key: bytes, plain: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, plain, aad)


def legacy_digest(legacy: bytes, sid: str) -> bytes:
    return hmac.new(legacy, json.dumps([NAS, sid]).encode(), hashlib.sha256).digest()[:16]


def write_v2(data_dir: Path, sessions: list[Session], legacy: bytes) -> None:
    (data_dir / STORE_DIR).mkdir(parents=True)
    db = sqlite3.connect(data_dir / STORE_DIR / DB_FILE)
    db.executescript(V2_SCHEMA)
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
        idx = legacy_digest(legacy, s.session_id)
        db.execute(
            "INSERT INTO sessions (period, nas, session_idx, start, end_at, open, mac_idx, blob)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                period,
                s.nas,
                idx,
                s.start.timestamp(),
                s.end.timestamp(),
                int(s.stop is None),
                mac_idx,
                _seal(dek, s.to_json(), s.nas.encode() + b"\0" + idx),
            ),
        )
    db.commit()
    db.close()
    store = SecretStore(data_dir)
    store.set(KEYS_SECRET, json.dumps(ring, sort_keys=True))
    store.set(LEGACY_LOOKUP_SECRET, base64.b64encode(legacy).decode())


def v2_session(sid: str, start: datetime, mac: str, stop: datetime | None = None) -> Session:
    return Session(nas=NAS, session_id=sid, source="radius", start=start, last_update=start, stop=stop, client_mac=mac)


def sent_by_the_old_release(legacy: bytes, sid: str) -> str:
    """The WifiSessionEvent id the release before sent for the session: under the box-wide lookup key."""
    key = hmac.new(legacy, SESSION_EVENT_ID, hashlib.sha256).digest()
    return hmac.new(key, json.dumps([NAS, sid]).encode(), hashlib.sha256).hexdigest()[:24]


@pytest.fixture
def legacy() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def v2_box(tmp_path: Path, legacy: bytes) -> Path:
    """December's open session and a damaged record of December, November 2025's closed session, and a row of
    October 2025 whose KEK is destroyed (the release crashed between destroying it and deleting the rows)."""
    box = tmp_path / "box"
    november_2025 = datetime(2025, 11, 20, 3, 0, tzinfo=UTC)
    write_v2(
        box,
        [
            v2_session(OPEN, T0, OPEN_MAC),
            v2_session("z/3c:22:fb:00:00:03/1", T0, "3c:22:fb:00:00:03"),
            v2_session(OLD, november_2025, OLD_MAC, stop=november_2025 + timedelta(minutes=5)),
            v2_session("y/3c:22:fb:00:00:02/1", datetime(2025, 10, 20, 3, 0, tzinfo=UTC), "3c:22:fb:00:00:02"),
        ],
        legacy,
    )
    db = sqlite3.connect(box / STORE_DIR / DB_FILE)
    db.execute("UPDATE sessions SET blob = zeroblob(80) WHERE period = '2026-12' AND id = 2")
    db.commit()
    db.close()
    ring = json.loads(SecretStore(box).get(KEYS_SECRET))
    del ring["2025-10"]
    SecretStore(box).set(KEYS_SECRET, json.dumps(ring))
    return box


def test_a_version_2_file_is_rekeyed_and_its_sessions_still_merge(v2_box: Path, legacy: bytes) -> None:
    store = WifiLogStore(v2_box)
    try:
        assert store.schema_version() == 3
        # the Stop of the session open across the upgrade finds it under December's lookup key
        store.apply([SessionEvent(nas=NAS, session_id=OPEN, kind=EventKind.STOP, time=T0 + timedelta(minutes=3))])
        [s] = store.search(Query(mac=OPEN_MAC))
        assert (s.session_id, s.start, s.stop) == (OPEN, T0, T0 + timedelta(minutes=3))
        assert [s.session_id for s in store.search(Query(mac=OLD_MAC))] == [OLD]
        assert store.stats()["sessions_per_period"] == {"2025-10": 1, "2025-11": 1, "2026-12": 2}
        [key] = store.session_keys(SESSION_EVENT_ID, [(NAS, OPEN)])
        assert key is not None  # its later events get an entity keyed by December: a new one, once
        assert id_digest(key, NAS, OPEN) != sent_by_the_old_release(legacy, OPEN)
    finally:
        store.close()
    db = sqlite3.connect(v2_box / STORE_DIR / DB_FILE)
    digests = {bytes(r[0]) for r in db.execute("SELECT session_idx FROM sessions WHERE id IN (1, 3)")}
    assert digests.isdisjoint({legacy_digest(legacy, OPEN), legacy_digest(legacy, OLD)})


def test_the_first_expiry_destroys_the_old_key_and_erases_old_periods_on_schedule(
    v2_box: Path, legacy: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backup = tmp_path / "backup-v2.db"  # a copy the nightly backup made before the upgrade
    shutil.copy(v2_box / STORE_DIR / DB_FILE, backup)
    sent = sent_by_the_old_release(legacy, OLD)
    # the attack that the upgrade must end: with the box's keys, November's MAC confirmed behind what the old
    # release sent, and behind its lookup digest in the copy
    before = keys_on_the_box(v2_box, [v2_box / STORE_DIR / DB_FILE])
    assert any(id_digest(k, NAS, OLD) == sent for k in before)
    pair = json.dumps([NAS, OLD]).encode()
    assert any(hmac.new(k, pair, hashlib.sha256).digest()[:16] == legacy_digest(legacy, OLD) for k in before)

    store = WifiLogStore(v2_box)
    try:
        with caplog.at_level(logging.INFO, logger="gateway.wifilog.store"):
            certificates = store.expire(T0)
        assert [(c["period"], c["records"]) for c in certificates] == [("2025-10", 1), ("2025-11", 1)]
        assert store.stats()["sessions_per_period"] == {"2026-12": 2}
        assert [s.session_id for s in store.search(Query(mac=OPEN_MAC))] == [OPEN]
    finally:
        store.close()
    assert LEGACY_LOOKUP_SECRET not in SecretStore(v2_box).names()
    assert (
        "wifilog: destroyed secret:wifilog.session-lookup, the lookup key of releases before per-period lookup "
        "keys: the session event ids sent with it and the lookup digests in older copies of "
        f"{v2_box / STORE_DIR / DB_FILE} can no longer be linked to a MAC, except with a copy of the secret store "
        "made before now: the gateway's backups made before now hold one until they are rotated out ([backup] "
        "generations; it opens with this gateway's secrets.key, in a backup only with include_secret_key)"
    ) in caplog.messages

    after = keys_on_the_box(v2_box, [v2_box / STORE_DIR / DB_FILE, backup])
    assert not any(id_digest(k, NAS, OLD) == sent for k in after)
    assert not any(hmac.new(k, pair, hashlib.sha256).digest()[:16] == legacy_digest(legacy, OLD) for k in after)


def test_a_version_2_file_beside_another_boxs_secret_store_is_left_unchanged(v2_box: Path) -> None:
    ring = json.loads(SecretStore(v2_box).get(KEYS_SECRET))
    ring["2026-12"]["kek"] = base64.b64encode(bytes(32)).decode()  # the right key id, not the right key
    SecretStore(v2_box).set(KEYS_SECRET, json.dumps(ring))
    path = v2_box / STORE_DIR / DB_FILE
    rows = "SELECT * FROM sessions ORDER BY id"
    before = sqlite3.connect(path).execute(rows).fetchall()
    with pytest.raises(WifiLogError) as caught:
        WifiLogStore(v2_box)
    assert str(caught.value) == (
        f"Wi-Fi log: migration of {path} from schema version 2 to 3 failed, got ValueError: wifilog period "
        "2026-12: the wrapped data key does not open with key wifilog-2026-12-0000beef; the database and the "
        "secret store do not belong together; the file is unchanged at version 2, run the previous edgegw "
        "release or restore a backup"
    )
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2 and db.execute(rows).fetchall() == before
    assert LEGACY_LOOKUP_SECRET in SecretStore(v2_box).names()  # the previous release still needs it
