"""The Wi-Fi log store on real sqlite files and a real secret store: merge, search, retention, erasure, exports."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogError, WifiLogStore
from gateway.wifilog.export import manifest_path, render_csv, verify_export, write_export
from gateway.wifilog.signing import load_public_key, verify_document
from gateway.wifilog.store import JST

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
MAC = "aa:bb:cc:01:02:03"
USER = "hanako@example.jp"


def ev(kind: EventKind, t: datetime, sid: str = "s1", **kw: object) -> SessionEvent:
    base: dict[str, object] = {
        "client_mac": MAC,
        "user_name": USER,
        "framed_ip": "10.0.0.5",
        "ap_mac": "00:11:22:33:44:55",
        "ssid": "Library-Free",
    }
    base.update(kw)
    return SessionEvent(nas="id:ap1", session_id=sid, kind=kind, time=t, **base)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> WifiLogStore:
    return WifiLogStore(tmp_path, retention_months=3, gateway_id="lib-gw")


def test_start_interim_stop_merge_into_one_session_and_replays_change_nothing(store: WifiLogStore) -> None:
    events = [
        ev(EventKind.START, T0),
        ev(EventKind.INTERIM, T0 + timedelta(minutes=5), session_time=300, input_octets=10, output_octets=20),
        ev(
            EventKind.STOP,
            T0 + timedelta(minutes=9),
            session_time=540,
            input_octets=30,
            output_octets=40,
            terminate_cause="User Request",
        ),
    ]
    store.apply(events)
    store.apply(events)  # retransmitted after a kill -9 before the responses: stored once
    [s] = store.search(Query(mac="AA-BB-CC-01-02-03"))
    assert (s.start, s.stop, s.duration_s, s.input_octets, s.output_octets) == (
        T0,
        T0 + timedelta(minutes=9),
        540,
        30,
        40,
    )
    assert s.terminate_cause == "User Request" and s.user_name == USER and s.framed_ip == "10.0.0.5"
    assert store.schema_version() == 3


def test_search_by_any_mac_spelling_ip_and_time_user_and_range(store: WifiLogStore) -> None:
    store.apply([ev(EventKind.START, T0), ev(EventKind.STOP, T0 + timedelta(hours=1))])
    store.apply(
        [
            ev(
                EventKind.START,
                T0 + timedelta(hours=2),
                sid="s2",
                client_mac="aa:bb:cc:09:09:09",
                framed_ip="10.0.0.6",
                user_name="taro@example.jp",
            )
        ]
    )
    for spelling in ("aabb.cc01.0203", "AABBCC010203", "aa:bb:cc:1:2:3"):
        assert [s.session_id for s in store.search(Query(mac=spelling))] == ["s1"]
    at = T0 + timedelta(minutes=30)
    assert [s.session_id for s in store.search(Query(ip="10.0.0.5", time_from=at, time_to=at))] == ["s1"]
    assert store.search(Query(ip="10.0.0.5", time_from=T0 + timedelta(hours=3), time_to=T0 + timedelta(hours=4))) == []
    assert [s.session_id for s in store.search(Query(user="Taro@Example.JP"))] == ["s2"]
    assert [s.session_id for s in store.search(Query(time_from=T0, time_to=T0 + timedelta(days=1)))] == ["s1", "s2"]


def test_query_errors_name_the_field(store: WifiLogStore) -> None:
    with pytest.raises(WifiLogError, match="give a MAC, an IP, a user name or a time range, got none"):
        Query()
    with pytest.raises(WifiLogError, match=r"wifi search ip: not an IPv4 or IPv6 address, got '10\.0\.0'"):
        Query(ip="10.0.0")
    with pytest.raises(WifiLogError, match="wifi search mac: not a MAC address"):
        Query(mac="zz")


def test_nothing_personal_in_clear_in_the_database_file(store: WifiLogStore, tmp_path: Path) -> None:
    store.apply([ev(EventKind.START, T0), ev(EventKind.STOP, T0 + timedelta(hours=1))])
    store.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "wifilog").glob("wifilog.db*"))
    for needle in (MAC, "aabbcc010203", USER, "10.0.0.5", "Library-Free"):
        assert needle.encode() not in raw


def test_expiry_destroys_the_key_deletes_rows_and_a_copy_made_before_cannot_be_read(
    store: WifiLogStore, tmp_path: Path
) -> None:
    store.apply([ev(EventKind.START, T0), ev(EventKind.START, T0 + timedelta(days=31), sid="feb")])
    copy = tmp_path / "copy.db"
    store._db.execute("PRAGMA wal_checkpoint(FULL)")
    shutil.copy(store.path, copy)
    assert store.expire(datetime(2026, 4, 30, 23, 59, tzinfo=JST)) == []  # January kept 3 full months
    [cert] = store.expire(datetime(2026, 5, 1, 0, 0, tzinfo=JST))
    assert (cert["period"], cert["records"], cert["type"]) == ("2026-01", 1, "edgegw.wifilog.erasure-certificate")
    assert store.search(Query(mac=MAC)) == [store.search(Query(mac=MAC))[0]]  # February's session stays
    assert [s.session_id for s in store.search(Query(mac=MAC))] == ["feb"]
    assert store.certificates() == [cert]
    assert verify_document(cert, load_public_key(store.public_key_path)) == []
    # the old copy still holds January's wrapped data key, but its wrapping key is gone from the secret store
    keys = json.loads(store.secrets.get("wifilog.keys"))
    assert "2026-01" not in keys and cert["key_ids_destroyed"][0].startswith("wifilog-2026-01-")
    old = sqlite3.connect(copy)
    key_id, wrapped = old.execute("SELECT key_id, wrapped_key FROM periods WHERE period = '2026-01'").fetchone()
    assert key_id == cert["key_ids_destroyed"][0]
    for entry in keys.values():  # no key left in the store opens it
        import base64

        with pytest.raises(InvalidTag):
            AESGCM(base64.b64decode(entry["kek"])).decrypt(wrapped[:12], wrapped[12:], key_id.encode())
    old.close()
    # the reopened store neither reads nor recreates the erased period
    store.close()
    again = WifiLogStore(tmp_path, retention_months=3)
    assert [s.session_id for s in again.search(Query(mac=MAC))] == ["feb"]


def test_tampered_certificate_fails_verification(store: WifiLogStore) -> None:
    store.apply([ev(EventKind.START, T0)])
    [cert] = store.expire(datetime(2027, 1, 1, tzinfo=JST))
    key = load_public_key(store.public_key_path)
    assert verify_document({**cert, "records": 0}, key) == [
        "signature: does not match the document (altered after signing)"
    ]
    other = WifiLogStore(store.data_dir / "other").signer.public_key
    assert verify_document(cert, other)[0].startswith("signing_key_sha256: signed by another key")


def test_export_is_excel_csv_in_jst_with_a_signed_manifest_and_tampering_shows(
    store: WifiLogStore, tmp_path: Path
) -> None:
    store.apply([ev(EventKind.START, T0), ev(EventKind.STOP, T0 + timedelta(minutes=1), session_time=60)])
    q = Query(mac=MAC)
    out = tmp_path / "inq.csv"
    manifest = write_export(
        store.search(q),
        q,
        signer=store.signer,
        reference="R8-123",
        who="auditor1",
        now=T0,
        csv_path=out,
        gateway_id="gw-test",
    )
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[1].startswith("2026-01-15 19:00:00,2026-01-15 19:01:00,")  # JST
    assert manifest["reference"] == "R8-123" and manifest["rows"] == 1 and manifest["query"] == {"mac": MAC}
    key = load_public_key(store.public_key_path)
    loaded = json.loads(manifest_path(out).read_text())
    assert verify_export(out, loaded, key) == []
    out.write_bytes(data.replace(b"19:00:00", b"19:00:01"))
    assert verify_export(out, loaded, key)[0].startswith("inq.csv: SHA-256 differs from the manifest")
    out.write_bytes(data)
    assert verify_export(out, {**loaded, "reference": "R8-999"}, key) == [
        "signature: does not match the document (altered after signing)"
    ]


def test_another_document_signed_by_the_same_key_is_not_an_export_manifest(store: WifiLogStore, tmp_path: Path) -> None:
    store.apply([ev(EventKind.START, T0)])
    q = Query(mac=MAC)
    out = tmp_path / "inq.csv"
    manifest = write_export(
        store.search(q),
        q,
        signer=store.signer,
        reference="R8-123",
        who="auditor1",
        now=T0,
        csv_path=out,
        gateway_id="gw-test",
    )
    [cert] = store.expire(datetime(2027, 1, 1, tzinfo=JST))
    key = load_public_key(store.public_key_path)
    assert verify_document(cert, key) == []  # a genuine document of this key, only not a manifest
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert verify_export(out, cert, key) == [
        "type: not an export manifest, got 'edgegw.wifilog.erasure-certificate'",
        f"inq.csv: SHA-256 differs from the manifest (file altered), got {digest[:16]}…",
    ]
    # the same key's signature over the file's own hash under another type: only the type tells it apart
    retyped = store.signer.sign({**manifest, "type": "edgegw.wifilog.erasure-certificate"})
    assert verify_document(retyped, key) == [] and retyped["sha256"] == digest
    assert verify_export(out, retyped, key) == [
        "type: not an export manifest, got 'edgegw.wifilog.erasure-certificate'"
    ]


def test_csv_quotes_formula_cells(store: WifiLogStore) -> None:
    store.apply([ev(EventKind.START, T0, user_name="=HYPERLINK(1)")])
    assert b",'=HYPERLINK(1)," in render_csv(store.search(Query(mac=MAC)))


def test_a_new_session_from_any_event_equals_the_general_merge_rule() -> None:
    from gateway.wifilog.sessions import Session, merge

    for kind in EventKind:
        e = ev(kind, T0, session_time=60, input_octets=5, terminate_cause="Idle-Timeout")
        fresh = merge(None, e)
        seeded = Session(nas=e.nas, session_id=e.session_id, source=e.source, start=fresh.start, last_update=e.time)
        assert merge(seeded, e) == fresh == merge(fresh, e)


def test_two_stores_on_one_file_erase_a_period_once_with_one_certificate(tmp_path: Path) -> None:
    radius, syslog = WifiLogStore(tmp_path, retention_months=1), WifiLogStore(tmp_path, retention_months=1)
    radius.apply([ev(EventKind.START, T0)])
    later = datetime(2026, 3, 1, tzinfo=JST)
    [cert] = radius.expire(later)
    assert syslog.expire(later) == []
    assert syslog.certificates() == [cert] and cert["records"] == 1


def test_a_late_event_of_an_erased_period_is_not_stored(store: WifiLogStore) -> None:
    store.apply([ev(EventKind.START, T0)])
    store.expire(datetime(2026, 5, 1, tzinfo=JST))
    store.apply([ev(EventKind.STOP, T0 + timedelta(hours=1), sid="late")])
    assert store.search(Query(mac=MAC)) == [] and store.stats()["sessions_per_period"] == {}
