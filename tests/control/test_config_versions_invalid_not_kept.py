"""A config found on disk unrecorded that validation refuses is recorded by its sha256 alone, whatever it holds.

Only texts holding a secret the key-name rules could see were kept by digest: validation stops short of a section
whose type it does not know, so a mistyped `type = "scaner"` kept its hex visit key (`visit_keys.K1`) whole, and an
MQTT `host = "user:pw@…"` in a section of an unknown type kept its password, in config_versions.db and every
backup. A text that never ran is not needed to roll back to, so none that fails validation is kept whole.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.control.config_versions import FILE, sha256_text
from gateway.control.ops_config import FIRST, UNRECORDED
from gateway.control.protocol import ControlError
from tests.control.running import running_gateway
from tests.support.orion_double import OrionDouble

VISIT_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SCANNER_TYPO = f"""
[[adapters]]
name = "library"
type = "scaner"
visit_keys = {{ K1 = "{VISIT_KEY}" }}
"""
MQTT_UNKNOWN = """
[[uplinks]]
name = "m"
type = "mqttx"
host = "user:Pw-In-Clear@broker.example.jp"
"""
KEY_TYPO = """
[[adapters]]
name = "gauges2"
type = "simulated"
entitys = 3
"""
WHY = (
    "its text is not kept, only its sha256: validation refuses it, so it never ran, and a section validation cannot "
    "type may hold a secret no check reached (`edgegw check-config` says what is wrong)"
)


def _every_text(data_dir: Path) -> str:
    conn = sqlite3.connect(data_dir / FILE)
    try:
        return repr(conn.execute("SELECT * FROM versions").fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("added", "secret"),
    [(SCANNER_TYPO, VISIT_KEY), (MQTT_UNKNOWN, "Pw-In-Clear"), (KEY_TYPO, "entitys")],
    ids=["mistyped-scanner-visit-key", "mqtt-host-password-unknown-type", "mistyped-key-nothing-secret"],
)
async def test_a_hand_edit_validation_refuses_is_recorded_by_its_digest_alone(
    orion_double: OrionDouble, tmp_path: Path, added: str, secret: str
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        original = gw.config_path.read_text()
        await gw.client.call("config.apply", text=original + "\n", actor="tanaka", comment="first")
        hand = original + added
        gw.config_path.write_text(hand)  # never runs: a reload would refuse it
        assert await gw.client.call("config.apply", text=original, actor="suzuki", comment="fixed") == {
            "version": 4,
            "reloaded": True,
        }
        versions = await gw.client.call("config.versions")
        found = await gw.client.call("config.version", version=3)
        with pytest.raises(ControlError) as rollback:
            await gw.client.call("config.rollback", version=3, actor="suzuki")
        assert gw.config_path.read_text() == original
    assert secret not in _every_text(tmp_path / "data")
    assert [(v["version"], v["actor"]) for v in versions] == [(4, "suzuki"), (3, "file"), (2, "tanaka"), (1, "file")]
    assert (versions[1]["sha256"], versions[1]["comment"]) == (sha256_text(hand), f"{UNRECORDED}; {WHY}")
    assert found["text"] == ""
    assert rollback.value.code == "not_found"


async def test_a_first_file_validation_refuses_says_so_and_a_valid_one_after_it_is_kept_whole(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        original = gw.config_path.read_text()
        gw.config_path.write_text(original + SCANNER_TYPO)
        await gw.client.call("config.apply", text=original, actor="tanaka", comment="fixed")
        valid = original.replace("rate = 20.0", "rate = 10.0")
        assert valid != original
        gw.config_path.write_text(valid)  # a hand edit that validates: it may have run, so it is kept to go back to
        await gw.client.call("config.apply", text=original, actor="tanaka", comment="back")
        first = await gw.client.call("config.version", version=1)
        hand = await gw.client.call("config.version", version=3)
    assert VISIT_KEY not in _every_text(tmp_path / "data")
    assert (first["text"], first["comment"]) == ("", f"{FIRST}; {WHY}")
    assert (hand["text"], hand["comment"]) == (valid, UNRECORDED)
