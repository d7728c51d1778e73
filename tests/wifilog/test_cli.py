"""`edgegw wifi …` as a process: inquiries need a reference and are audited without their terms; proofs verify."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.audit.log import AuditLog
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
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


def test_search_without_reference_is_refused(data_dir: Path) -> None:
    r = edgegw("search", "--data-dir", str(data_dir), "--mac", MAC)
    assert r.returncode == 2 and "--reference" in r.stderr


def test_export_verifies_and_a_tampered_file_fails(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "inq.csv"
    r = edgegw("export", "--data-dir", str(data_dir), "--reference", "R-1", "--user", USER.upper(), "--out", str(out))
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
