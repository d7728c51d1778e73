"""`edgegw wifi …` as a process: inquiries need a reference and are audited without their terms; proofs verify."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.audit.log import AuditLog
from gateway.secrets import SecretStore
from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogStore
from gateway.wifilog.cli import audit_detail, inquiry_key, query_hmac
from gateway.wifilog.signing import SIGNING_SECRET
from gateway.wifilog.store import JST

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
MAC, USER = "aa:bb:cc:01:02:03", "hanako@example.jp"


def edgegw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "wifi", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    store = WifiLogStore(tmp_path)
    ev = SessionEvent(
        nas="id:ap1",
        session_id="s1",
        kind=EventKind.START,
        time=T0,
        client_mac=MAC,
        user_name=USER,
        framed_ip="10.0.0.5",
    )
    store.apply([ev, SessionEvent(nas="id:ap1", session_id="s1", kind=EventKind.STOP, time=T0 + timedelta(hours=1))])
    store.close()
    return tmp_path


def test_search_prints_csv_and_audits_reference_without_terms(data_dir: Path) -> None:
    r = edgegw(
        "search",
        "--data-dir",
        str(data_dir),
        "--reference",
        "兵庫県警-2026-77",
        "--ip",
        "10.0.0.5",
        "--from",
        "2026-01-15T19:30",
    )
    assert r.returncode == 0, r.stderr
    assert "2026-01-15 19:00:00,2026-01-15 20:00:00" in r.stdout and MAC in r.stdout
    [entry] = AuditLog(data_dir / "web").entries()
    assert (entry.action, entry.target, entry.detail["rows"], entry.detail["terms"]) == (
        "wifi.search",
        "兵庫県警-2026-77",
        1,
        ["ip", "time_from"],
    )
    assert "10.0.0.5" not in json.dumps(dict(entry.detail))
    # whoever holds the terms and the box's secret store can show which inquiry the entry records
    query = Query(ip="10.0.0.5", time_from=datetime(2026, 1, 15, 19, 30, tzinfo=JST))
    assert entry.detail["query_hmac"] == query_hmac(query, inquiry_key(SecretStore(data_dir)))
    assert "query_sha256" not in entry.detail


def test_search_without_reference_is_refused(data_dir: Path) -> None:
    r = edgegw("search", "--data-dir", str(data_dir), "--mac", MAC)
    assert r.returncode == 2 and "--reference" in r.stderr


def test_export_verifies_and_a_tampered_file_fails(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "inq.csv"
    config = tmp_path / "gw.toml"  # the manifest names the gateway: its id comes from the configuration
    config.write_text(
        f'[gateway]\nid = "gw-1"\ndata_dir = "{data_dir}"\n\n'
        '[[adapters]]\nname = "gauges"\ntype = "simulated"\nrate = 0.001\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
    )
    r = edgegw(
        "export",
        "-c",
        str(config),
        "--data-dir",
        str(data_dir),
        "--reference",
        "R-1",
        "--user",
        USER.upper(),
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert AuditLog(data_dir / "web").entries()[0].action == "wifi.export"
    ok = edgegw("verify-export", "--data-dir", str(data_dir), str(out))
    assert ok.returncode == 0 and "OK" in ok.stdout
    out.write_bytes(out.read_bytes().replace(b"10.0.0.5", b"10.0.0.6"))
    bad = edgegw("verify-export", "--data-dir", str(data_dir), str(out))
    assert bad.returncode == 1 and "SHA-256 differs from the manifest" in bad.stderr


def test_certificate_verifies_and_a_tampered_one_fails(data_dir: Path, tmp_path: Path) -> None:
    store = WifiLogStore(data_dir, retention_months=1)
    [cert] = store.expire(datetime(2026, 3, 1, tzinfo=JST))
    store.close()
    path = tmp_path / "cert.json"
    path.write_text(json.dumps(cert, ensure_ascii=False))
    assert edgegw("verify-certificate", "--data-dir", str(data_dir), str(path)).returncode == 0
    listed = edgegw("certificates", "--data-dir", str(data_dir))
    assert json.loads(listed.stdout.splitlines()[0])["period"] == "2026-01"
    path.write_text(json.dumps({**cert, "records": cert["records"] + 1}))
    bad = edgegw("verify-certificate", "--data-dir", str(data_dir), str(path))
    assert bad.returncode == 1 and "altered after signing" in bad.stderr


# -- the audit entry's digest (an unkeyed hash of such low-entropy terms was reversed in 0.02 s) -----------

TIME = datetime(2026, 1, 15, 19, 30, tzinfo=JST)
KEY_A, KEY_B = b"a" * 32, b"b" * 32


def _unkeyed(query: Query) -> str:
    """The digest entries carried before `query_hmac` (field `query_sha256`)."""
    return hashlib.sha256(json.dumps(query.describe(), sort_keys=True).encode()).hexdigest()


def test_audit_detail_holds_no_term_and_no_unkeyed_hash() -> None:
    query = Query(mac="AA-BB-CC-01-02-03", user=USER, time_from=TIME)
    detail = audit_detail(query, "R-1", 3, key=KEY_A)
    assert detail == {
        "reference": "R-1",
        "terms": ["mac", "time_from", "user"],
        "query_hmac": detail["query_hmac"],
        "rows": 3,
    }
    text = json.dumps(detail)
    assert MAC not in text and USER not in text and _unkeyed(query) not in text


def test_same_terms_same_key_same_digest_another_key_another() -> None:
    one = Query(mac="aa:bb:cc:01:02:03", user=USER, time_from=TIME)
    same = Query(mac="AABB.CC01.0203", user=f" {USER.upper()} ", time_from=TIME.astimezone(UTC))  # other spellings
    assert query_hmac(one, KEY_A) == query_hmac(same, KEY_A)
    assert query_hmac(one, KEY_A) != query_hmac(one, KEY_B)
    assert query_hmac(one, KEY_A) != query_hmac(Query(mac="aa:bb:cc:01:02:04", user=USER, time_from=TIME), KEY_A)


def test_brute_force_without_the_key_finds_nothing() -> None:
    secret = Query(ip="10.0.7.42")
    digest = audit_detail(secret, "R-1", 1, key=KEY_A)["query_hmac"]
    candidates = [Query(ip=str(ip)) for ip in ipaddress.ip_network("10.0.0.0/20")]
    assert _unkeyed(secret) in {_unkeyed(c) for c in candidates}  # the old field fell to this search
    assert digest not in {_unkeyed(c) for c in candidates}
    assert digest not in {query_hmac(c, KEY_B) for c in candidates}  # a guessed key does not help either
    assert [c.ip for c in candidates if query_hmac(c, KEY_A) == digest] == ["10.0.7.42"]  # with the key it matches


def test_the_key_is_made_once_per_box_and_differs_between_boxes(tmp_path: Path) -> None:
    box_a, box_b = SecretStore(tmp_path / "a"), SecretStore(tmp_path / "b")
    key = inquiry_key(box_a)
    assert len(key) == 32 and inquiry_key(SecretStore(tmp_path / "a")) == key
    assert inquiry_key(box_b) != key
    assert key != base64.b64decode(box_a.get(SIGNING_SECRET))  # derived for this use, not the signing key itself
