"""A config found on disk unrecorded is kept in the history only when it holds no secret in clear.

A technician's hand edit with `x_auth_token = "S3cr3t-Token-In-Clear"` (which validation refuses, so the box
never ran it) was recorded whole as version "file" by the next apply: the version op, the web UI's version view
and every backup then carried the token for good. Such a text is now recorded by its sha256 alone, its comment
naming the key paths and why.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.control.config_versions import FILE, sha256_text
from gateway.control.ops_config import clear_secrets
from gateway.control.protocol import ControlError
from tests.control.running import running_gateway
from tests.support.orion_double import OrionDouble

TOKEN = "S3cr3t-Token-In-Clear"


def _every_text(data_dir: Path) -> str:
    """Everything the versions store holds, as one text: its rows, whatever column."""
    conn = sqlite3.connect(data_dir / FILE)
    try:
        return repr(conn.execute("SELECT * FROM versions").fetchall())
    finally:
        conn.close()


async def test_a_hand_edit_with_a_token_in_clear_is_recorded_by_its_digest_alone(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        original = gw.config_path.read_text()
        await gw.client.call("config.apply", text=original + "\n", actor="tanaka", comment="first")
        hand = original.replace('type = "orion"\n', f'type = "orion"\nx_auth_token = "{TOKEN}"\n')
        assert hand != original
        gw.config_path.write_text(hand)  # the hand edit; a reload would refuse it, so it never runs
        assert await gw.client.call("config.apply", text=original, actor="suzuki", comment="fixed") == {
            "version": 4,
            "reloaded": True,
        }
        versions = await gw.client.call("config.versions")
        found = await gw.client.call("config.version", version=3)
        with pytest.raises(ControlError) as rollback:
            await gw.client.call("config.rollback", version=3, actor="suzuki")
        assert gw.config_path.read_text() == original
    assert TOKEN not in _every_text(tmp_path / "data")
    assert [(v["version"], v["actor"]) for v in versions] == [(4, "suzuki"), (3, "file"), (2, "tanaka"), (1, "file")]
    assert versions[1]["comment"] == (
        "found on disk, not recorded: edited by hand, or an apply cut short before it was recorded; its text is "
        "not kept, only its sha256: it held a secret in clear at uplinks[0].x_auth_token (never run: validation "
        'refuses it; write it as "secret:<name>")'
    )
    assert versions[1]["sha256"] == sha256_text(hand)
    assert found["text"] == ""
    assert rollback.value.code == "not_found"
    assert rollback.value.message == (
        "config.rollback: version 3's text was not kept (see its comment), got nothing to roll back to; "
        "choose another version"
    )


async def test_a_first_file_with_a_url_password_is_recorded_by_its_digest_and_the_next_apply_knows_it(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        original = gw.config_path.read_text()
        # a header in clear, and a password in a URL that no section validation reaches (an unknown type)
        hand = original.replace('type = "orion"\n', 'type = "orion"\nheaders = { Authorization = "Bearer abc123" }\n')
        hand += '\n[[uplinks]]\nname = "spare"\ntype = "orionx"\nurl = "https://admin:pa55w0rd@spare.example.jp"\n'
        gw.config_path.write_text(hand)
        await gw.client.call("config.apply", text=original, actor="tanaka", comment="fixed")
        versions = await gw.client.call("config.versions")
    held = _every_text(tmp_path / "data")
    assert "abc123" not in held and "pa55w0rd" not in held
    assert [(v["version"], v["actor"]) for v in versions] == [(2, "tanaka"), (1, "file")]
    assert versions[1]["comment"].startswith(
        "before the first apply; its text is not kept, only its sha256: it held a secret in clear at "
        "uplinks[0].headers.Authorization, uplinks[1].url (never run"
    )


async def test_a_valid_hand_edit_is_kept_whole(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        original = gw.config_path.read_text()
        hand = original.replace('type = "orion"\n', 'type = "orion"\nx_auth_token = "secret:orion_token"\n')
        gw.config_path.write_text(hand)
        await gw.client.call("config.apply", text=original, actor="tanaka", comment="back")
        kept = await gw.client.call("config.version", version=1)
    assert (kept["text"], kept["comment"]) == (hand, "before the first apply")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[gateway]\nid = "gw"\n', []),  # invalid, but nothing secret in it
        ('[[adapters]]\nname = "a"\ntype = "nosuch"\npassword = "hunter2"\n', ["adapters[0].password"]),
        ('[[uplinks]]\napi_token = ["abc", "secret:t"]\n', ["uplinks[0].api_token[0]"]),
        ('[[adapters]]\nhost = "user:pw@broker"\ntype = "mqtt"\nname = "m"\n', ["adapters[0].host"]),
        ('x_auth_token = "S3cr3t"\n[gateway\n', None),  # not TOML: cannot be told
        ('token_url = "https://auth.example.jp/token"\n', []),  # names a URL, carries nothing
    ],
)
def test_clear_secrets_names_every_key_path_that_may_hold_one(text: str, expected: list[str] | None) -> None:
    assert clear_secrets(text) == expected
