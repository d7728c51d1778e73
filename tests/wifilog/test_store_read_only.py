"""The Wi-Fi log opened by a reader (the web UI, whose unit may only read the data directory): it searches,
lists and signs as the store does, and writes nothing: not the file, not its key ring, not the public key.

The store's open made the file private (O_RDWR|O_CREAT) and turned WAL on, its signer took the secret
store's lock (O_RDWR|O_CREAT on secrets.lock) and wrote signing-public.pem: each an OSError on a read-only
mount. Real read-only bind mounts; the log held open by a process of its own, as the gateway holds it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.secrets import SecretStore
from gateway.storage.files import Access
from gateway.wifilog import EventKind, Query, SessionEvent, WifiLogError, WifiLogStore
from gateway.wifilog.cli import inquiry_key
from gateway.wifilog.signing import SIGNING_SECRET, verify_document
from gateway.wifilog.store import JST
from tests.storage.read_only import Binds, held_open
from tests.storage.read_only import binds as binds

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
MAC = "aa:bb:cc:01:02:03"
HOLD = """
from gateway.wifilog.store import WifiLogStore
store = WifiLogStore(Path({data!r}), retention_months=1)
"""


def _events() -> list[SessionEvent]:
    return [
        SessionEvent(nas="id:ap1", session_id="s1", kind=EventKind.START, time=T0, client_mac=MAC),
        SessionEvent(nas="id:ap1", session_id="s0", kind=EventKind.START, time=T0 - timedelta(days=60), client_mac=MAC),
    ]


def _files(data: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data)): p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}


def test_a_reader_searches_lists_and_signs_from_a_read_only_directory(tmp_path: Path, binds: Binds) -> None:
    writer = WifiLogStore(tmp_path, retention_months=1)
    writer.apply(_events())
    writer.expire(datetime(2026, 1, 1, tzinfo=JST))  # November's period erased and certified
    writer.close()
    (tmp_path / "wifilog" / "signing-public.pem").unlink()  # a reader never publishes it
    with held_open(HOLD.format(data=str(tmp_path)), "store.close()"):
        before = _files(tmp_path)
        binds.read_only(tmp_path)
        reader = WifiLogStore(tmp_path, access=Access.READ_ONLY)
        try:
            assert [s.session_id for s in reader.search(Query(mac=MAC))] == ["s1"]
            [certificate] = reader.certificates()
            assert certificate["period"] == "2025-11"
            assert reader.stats()["sessions_per_period"] == {"2026-01": 1}
            # the gateway's key, which signed the certificate
            assert reader.signer.fingerprint == certificate["signing_key_sha256"]
            signed = reader.signer.sign({"type": "test"})
            assert verify_document(signed, reader.signer.public_key) == []
            assert len(inquiry_key(reader.secrets)) == 32
            with pytest.raises(sqlite3.OperationalError, match="attempt to write a readonly database"):
                reader.apply(_events()[:1])
        finally:
            reader.close()
        assert _files(tmp_path) == before
    assert not (tmp_path / "wifilog" / "signing-public.pem").exists()


def test_a_reader_leaves_the_signing_key_to_the_gateway(tmp_path: Path, binds: Binds) -> None:
    writer = WifiLogStore(tmp_path, retention_months=1)
    writer.apply(_events())  # a data key made, the signing key not yet (the receivers' start makes it)
    writer.close()
    assert SIGNING_SECRET not in SecretStore(tmp_path).names()
    with held_open(HOLD.format(data=str(tmp_path)), "store.close()"):
        binds.read_only(tmp_path)
        reader = WifiLogStore(tmp_path, access=Access.READ_ONLY)
        try:
            for use in (lambda: reader.signer, lambda: inquiry_key(reader.secrets)):
                with pytest.raises(WifiLogError) as info:
                    use()
                assert str(info.value) == (
                    f"secret:{SIGNING_SECRET}: not in the secret store {tmp_path}, got none; the gateway makes it "
                    "when its Wi-Fi log starts (a radius or wifi_syslog adapter): start it (systemctl start edgegw)"
                )
        finally:
            reader.close()
