"""`edgegw wifi export --out FILE`: the export holds personal data (MACs, user names, IPs) and is evidence.

Both files are made 0600 and never replace one already there (a symbolic link included); the manifest names the
gateway ([gateway] id); an `--out` that cannot be made is refused before the audit log records an export that never
happened. Found by running the command as a technician would (review s20, F2).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.audit.log import AuditLog
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from gateway.wifilog.export import verify_export

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
MAC, USER = "aa:bb:cc:01:02:03", "hanako@example.jp"
GATEWAY_ID = "gw-kobe-07"


def edgegw(*args: str) -> subprocess.CompletedProcess[str]:
    # the umask of a technician's shell: a file made without an explicit mode would be 0644
    return subprocess.run(
        [sys.executable, "-m", "gateway", "wifi", *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o022),
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A gateway config whose data directory holds a Wi-Fi log with one session of MAC and USER."""
    data_dir = tmp_path / "data"
    store = WifiLogStore(data_dir)
    store.apply(
        [
            SessionEvent(
                nas="id:ap1",
                session_id="s1",
                kind=EventKind.START,
                time=T0,
                client_mac=MAC,
                user_name=USER,
                framed_ip="10.0.0.5",
            ),
            SessionEvent(nas="id:ap1", session_id="s1", kind=EventKind.STOP, time=T0 + timedelta(hours=1)),
        ]
    )
    store.close()
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nid = "{GATEWAY_ID}"\ndata_dir = "{data_dir}"\n\n'
        '[[adapters]]\nname = "gauges"\ntype = "simulated"\nrate = 0.001\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
    )
    return path


def exports(config: Path) -> list[str]:
    return [e.target for e in AuditLog(config.parent / "data" / "web").entries() if e.action == "wifi.export"]


def export(config: Path, out: Path, reference: str = "R-1") -> subprocess.CompletedProcess[str]:
    return edgegw("export", "-c", str(config), "--reference", reference, "--mac", MAC, "--out", str(out))


def test_the_csv_and_its_manifest_are_readable_by_their_owner_only(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "inquiry.csv"
    r = export(config, out)
    assert r.returncode == 0, r.stderr
    assert MAC in out.read_text(encoding="utf-8-sig")
    manifest = out.with_name("inquiry.csv.manifest.json")
    assert (stat.S_IMODE(out.stat().st_mode), stat.S_IMODE(manifest.stat().st_mode)) == (0o600, 0o600)


def test_the_manifest_names_the_gateway_of_the_configuration(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "inquiry.csv"
    assert export(config, out).returncode == 0
    manifest = json.loads(out.with_name("inquiry.csv.manifest.json").read_text(encoding="utf-8"))
    assert manifest["gateway_id"] == GATEWAY_ID
    key = load_pem_public_key((config.parent / "data" / "wifilog" / "signing-public.pem").read_bytes())
    assert verify_export(out, manifest, key) == []  # type: ignore[arg-type]


def test_an_existing_file_is_never_replaced_and_nothing_is_audited(config: Path, tmp_path: Path) -> None:
    kept = tmp_path / "keep.txt"
    kept.write_text("the technician's notes\n")
    r = export(config, kept)
    assert (r.returncode, r.stderr) == (
        2,
        f"wifi export: --out {kept}: exists already, got a file of 23 bytes; an export never replaces a file: "
        "name a new one; nothing was exported\n",
    )
    assert kept.read_text() == "the technician's notes\n"
    assert not kept.with_name("keep.txt.manifest.json").exists()
    assert exports(config) == []


def test_an_existing_manifest_is_never_replaced_and_no_csv_is_left(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "inquiry.csv"
    manifest = out.with_name("inquiry.csv.manifest.json")
    manifest.write_text("{}\n")
    r = export(config, out)
    assert (r.returncode, r.stderr) == (
        2,
        f"wifi export: --out {out}: its manifest {manifest} exists already, got a file of 3 bytes; an export never "
        "replaces a file: name a new one; nothing was exported\n",
    )
    assert manifest.read_text() == "{}\n" and not out.exists()
    assert exports(config) == []


def test_a_symbolic_link_is_not_followed(config: Path, tmp_path: Path) -> None:
    # a link planted in a shared directory (/tmp) would make a root export write over its target
    target = tmp_path / "target"
    target.write_text("x\n")
    link = tmp_path / "planted.csv"
    link.symlink_to(target)
    r = export(config, link)
    assert r.returncode == 2 and f"--out {link}: exists already, got a symbolic link;" in r.stderr, r.stderr
    assert target.read_text() == "x\n"


def test_an_out_that_cannot_be_made_is_refused_before_the_audit_log(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "x.csv"
    r = export(config, out, reference="R-8")
    assert r.returncode == 2
    assert exports(config) == []
    assert r.stderr == (
        f"wifi export: --out {out}: cannot be made, got No such file or directory (ENOENT); name a file in a "
        "directory this user may write; nothing was exported\n"
    )
    # and an export that does happen is audited
    assert export(config, tmp_path / "ok.csv", reference="R-9").returncode == 0
    assert exports(config) == ["R-9"]


def test_without_a_configuration_the_export_is_refused_since_it_must_name_its_gateway(
    config: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "none.toml"
    out = tmp_path / "inquiry.csv"
    data_dir = config.parent / "data"
    r = edgegw(
        "export", "--data-dir", str(data_dir), "-c", str(missing), "--reference", "R-1", "--mac", MAC, "--out", str(out)
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(
        f"wifi export: the manifest names the gateway ([gateway] id), got no configuration: {missing}"
    )
    assert not out.exists() and exports(config) == []


def test_an_audit_log_that_refuses_the_entry_leaves_no_export_file(config: Path, tmp_path: Path) -> None:
    # the files are made before the audit entry: when the entry cannot be written, they go again
    not_a_directory = tmp_path / "state"
    not_a_directory.write_text("")
    out = tmp_path / "inquiry.csv"
    r = edgegw(
        "export",
        "-c",
        str(config),
        "--state-dir",
        str(not_a_directory),
        "--reference",
        "R-1",
        "--mac",
        MAC,
        "--out",
        str(out),
    )
    assert r.returncode == 2, r.stderr
    assert not out.exists() and not out.with_name("inquiry.csv.manifest.json").exists()
