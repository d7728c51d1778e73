"""An apply is all or nothing against its versions store too, and takes no more text than a backup gives back.

ConfigOps.apply renames the new text into place and then records it as a version. The versions store
failing there (another program holding its write lock) let SQLite's bare OperationalError out with
the new text left in gateway.toml: not running, recorded nowhere, and run at the next start. A
damaged store did the same before anything was written, with SQLite's words and no file named.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.backup.manifest import CONFIG_MAX_BYTES
from gateway.control.config_versions import FILE, ConfigVersions
from gateway.control.ops_config import FIRST
from gateway.control.protocol import MAX_CONFIG_CHARS, ControlError
from tests.control.running import config_text, running_gateway
from tests.support.orion_double import OrionDouble


def _new_text(tmp_path: Path, url: str) -> str:
    return config_text(tmp_path / "data", url, prefix="urn:ngsi-ld:WaterObserved:new-")


async def test_a_version_the_store_cannot_record_is_taken_back_off_the_disk(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        before = gw.config_path.read_text()
        db = tmp_path / "data" / FILE
        store = ConfigVersions(db)  # the file recorded already: the apply's first write is the rename
        store.record(before, actor="file", at=1.0, comment=FIRST)
        store.close()
        running = gw.runtime.gateway
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # a technician's sqlite3 shell in a write, say
        try:
            with pytest.raises(ControlError) as failed:
                await gw.client.call("config.apply", text=_new_text(tmp_path, orion_double.url), actor="tanaka")
            assert gw.config_path.read_text() == before
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert gw.runtime.gateway is running  # not reloaded
        assert [v["version"] for v in await gw.client.call("config.versions")] == [1]
    assert failed.value.code == "write_failed"
    assert failed.value.message == (
        f"config: not applied, the config versions store {db} cannot record it, got OperationalError: database is "
        f"locked; {gw.config_path} is as it was: check that store (is another program holding it?) and apply again"
    )


async def test_a_damaged_versions_store_refuses_the_apply_before_anything_is_written(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        before = gw.config_path.read_bytes()
        db = tmp_path / "data" / FILE
        db.write_bytes(bytes(range(256)) * 16)  # no SQLite header: refused by the store's own check
        with pytest.raises(ControlError) as failed:
            await gw.client.call("config.apply", text=_new_text(tmp_path, orion_double.url), actor="tanaka")
        assert gw.config_path.read_bytes() == before
    assert failed.value.code == "write_failed"
    assert failed.value.message.startswith(
        f"config: not applied, the config versions store {db} cannot record it, got "
    )
    assert f"config versions {db}: not an SQLite database" in failed.value.message
    assert failed.value.message.endswith(
        "; nothing written: check that store (is another program holding it?) and apply again"
    )


async def test_a_text_longer_than_an_apply_takes_is_refused_whole(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        before = gw.config_path.read_bytes()
        text = _new_text(tmp_path, orion_double.url)
        text += "#" * (MAX_CONFIG_CHARS + 1 - len(text))
        with pytest.raises(ControlError) as refused:
            await gw.client.call("config.apply", text=text, actor="tanaka")
        assert gw.config_path.read_bytes() == before
        text = text[:-1]  # at the limit: applied
        assert (await gw.client.call("config.apply", text=text, actor="tanaka"))["reloaded"] is True
        assert gw.config_path.read_text() == text
    assert refused.value.code == "bad_args"
    assert refused.value.message == (
        f"config: text of {MAX_CONFIG_CHARS + 1} characters, at most {MAX_CONFIG_CHARS} are applied; nothing written"
    )


def test_a_backup_takes_back_any_config_an_apply_writes() -> None:
    widest = "\U00020bb7"  # 4 bytes of UTF-8, the most a character takes in the file
    assert len((widest * MAX_CONFIG_CHARS).encode()) <= CONFIG_MAX_BYTES
