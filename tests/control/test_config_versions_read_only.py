"""The config versions store on a disk the gateway may only read (an SD card's ext4 remounted read-only after an
error): the config page and its history still read it, an apply says that store cannot record it.

Since every store opened through open_store, which opened the file O_RDWR|O_CREAT first, config.get and
config.versions failed with "internal error, got OSError: [Errno 30] Read-only file system" where the store
used to read well, and config.apply blamed gateway.toml ("not written ... ReadWritePaths=") for the store's
disk. A real gateway and its control socket; the data directory bound read-only while it runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.control.config_versions import FILE, ConfigVersions
from gateway.control.ops_config import FIRST
from gateway.control.protocol import ControlError
from tests.control.running import config_text, running_gateway
from tests.storage.read_only import Binds
from tests.storage.read_only import binds as binds
from tests.support.orion_double import OrionDouble


def _new_text(tmp_path: Path, url: str) -> str:
    return config_text(tmp_path / "data", url, prefix="urn:ngsi-ld:WaterObserved:new-")


def _fix(db: Path) -> str:
    return (
        "a disk remounted read-only after an error shows in `dmesg`; otherwise give the gateway's user (systemd: "
        f"User=) read and write access to {db} and {db.parent}"
    )


async def test_the_history_is_read_from_a_read_only_disk_and_an_apply_names_the_store(
    orion_double: OrionDouble, tmp_path: Path, binds: Binds
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        before = gw.config_path.read_text()
        db = tmp_path / "data" / FILE
        store = ConfigVersions(db)
        store.record(before, actor="file", at=1.0, comment=FIRST)
        store.close()
        stored = db.read_bytes()
        running = gw.runtime.gateway
        binds.read_only(tmp_path / "data")
        got = await gw.client.call("config.get")
        assert (got["text"], got["version"]) == (before, 1)
        assert [(v["version"], v["actor"]) for v in await gw.client.call("config.versions")] == [(1, "file")]
        assert (await gw.client.call("config.version", version=1))["text"] == before
        with pytest.raises(ControlError) as failed:
            await gw.client.call("config.apply", text=_new_text(tmp_path, orion_double.url), actor="tanaka")
        assert gw.config_path.read_text() == before  # written, then put back: an apply is all or nothing
        assert gw.runtime.gateway is running  # not reloaded
    assert db.read_bytes() == stored
    assert failed.value.code == "write_failed"
    assert failed.value.message == (
        f"config: not applied, the config versions store {db} cannot record it, got OperationalError: attempt to "
        f"write a readonly database; {gw.config_path} is as it was: {_fix(db)}; then apply again"
    )


async def test_a_store_a_read_only_disk_cannot_hold_is_named_not_the_config_file(
    orion_double: OrionDouble, tmp_path: Path, binds: Binds
) -> None:
    async with running_gateway(tmp_path, orion_double.url) as gw:
        before = gw.config_path.read_text()
        db = tmp_path / "data" / FILE
        assert not db.exists()  # never applied: the first apply makes it
        binds.read_only(tmp_path / "data")
        with pytest.raises(ControlError) as failed:
            await gw.client.call("config.apply", text=_new_text(tmp_path, orion_double.url), actor="tanaka")
        assert gw.config_path.read_text() == before
        with pytest.raises(ControlError) as unread:
            await gw.client.call("config.versions")
    assert failed.value.code == "write_failed"
    assert failed.value.message == (
        f"config: not applied, the config versions store {db} cannot record it, got Read-only file system (EROFS); "
        f"nothing written: {_fix(db)}; then apply again"
    )
    assert unread.value.code == "unavailable"
    assert (
        unread.value.message == f"config versions {db}: cannot be opened, got Read-only file system (EROFS); {_fix(db)}"
    )
