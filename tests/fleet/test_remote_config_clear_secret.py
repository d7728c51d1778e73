"""A remote bundle applied over a hand edit holding a secret in clear: the versions store keeps no clear value.

The bundle's apply goes through ConfigOps, which recorded the file it found unrecorded (the hand edit, token
and all) as version "file" before writing the bundle.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.control.config_versions import FILE
from gateway.control.ops_config import NOT_KEPT
from tests.fleet.conftest import Clock, until
from tests.fleet.test_remote_config import bundle, config_text, runtime_on, settled
from tests.support.orion_double import OrionDouble

TOKEN = "S3cr3t-Token-In-Clear"


async def test_a_bundle_over_a_hand_edit_with_a_token_in_clear_keeps_no_clear_token_in_the_versions(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    async with runtime_on(path, original) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        hand = original.replace("retry_max_s = 0.2", f'retry_max_s = 0.2\nx_auth_token = "{TOKEN}"')
        assert hand != original
        path.write_text(hand)  # refused by a reload: never runs
        sent = original.replace("rate = 0.001", "rate = 0.002")
        assert (await fleet.offer(bundle(sent, 1), via="push"))["applied"] is True
        await until(lambda: settled(1))
        assert path.read_text() == sent
    conn = sqlite3.connect(tmp_path / "data" / FILE)
    try:
        rows = conn.execute("SELECT version, actor, text, comment FROM versions ORDER BY version").fetchall()
    finally:
        conn.close()
    assert TOKEN not in repr(rows)
    assert [(v, actor) for v, actor, _, _ in rows] == [(1, "file"), (2, "remote-config")]
    assert rows[0][2] == "" and NOT_KEPT in rows[0][3] and "uplinks[0].x_auth_token" in rows[0][3]
