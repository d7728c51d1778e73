"""The caveat the upgrade's log line and README give: destroying `secret:wifilog.session-lookup` unlinks the ids
and digests made with it from everything on the box except a copy of the secret store made before, as the
gateway's nightly backups hold one (`secrets.enc`) until they are rotated out; the box's own `secrets.key` opens
it. If this stopped being true the caveat would be wrong, and this test says so."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from gateway.secrets import KEY_FILE, STORE_FILE, SecretStore
from gateway.wifilog import WifiLogStore
from tests.wifilog.test_erasure_unlinks_ids import id_digest, keys_on_the_box
from tests.wifilog.test_lookup_key_upgrade import LEGACY_LOOKUP_SECRET, OLD, T0, legacy, sent_by_the_old_release, v2_box

__all__ = ["legacy", "v2_box"]  # the fixtures, found by pytest here


def test_a_secret_store_backed_up_before_the_upgrade_still_links_the_old_ids(
    v2_box: Path, legacy: bytes, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"  # what a nightly backup made before the upgrade holds of the secret store
    backup.mkdir()
    shutil.copy(v2_box / STORE_FILE, backup / STORE_FILE)
    store = WifiLogStore(v2_box)
    try:
        store.expire(T0)
    finally:
        store.close()
    assert LEGACY_LOOKUP_SECRET not in SecretStore(v2_box).names()
    sent = sent_by_the_old_release(legacy, OLD)
    assert not any(id_digest(k, "wlc1", OLD) == sent for k in keys_on_the_box(v2_box, []))
    # that copy, opened with the box's own key file (which every backup run leaves on the box)
    shutil.copy(v2_box / KEY_FILE, backup / KEY_FILE)
    old = base64.b64decode(SecretStore(backup).get(LEGACY_LOOKUP_SECRET))
    assert old == legacy and sent_by_the_old_release(old, OLD) == sent
