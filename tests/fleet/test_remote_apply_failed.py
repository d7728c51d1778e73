"""A bundle whose apply fails other than by its config being refused: rolled back at once if written, else failed.

ConfigOps.apply renames the bundle's text into place and then records it as a config version: the
versions store failing there (its write lock held by another process, here) left the text on disk,
not running, with no step said and the bundle pending until its window's end. ConfigOps now takes
the text back off the disk itself; the fleet, which cannot tell where an apply failed, starts the
rollback, whose guard finds the text from before and ends the bundle as `failed`, saying nothing
was applied, never `rolled back`; so does a store failing before the write.
A real Runtime applies through ConfigOps, as in test_remote_config.py whose helpers make, sign and
drive the bundles here; the fleet clock is injected, so no window is waited out.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.app import Runtime
from gateway.config import load_config
from gateway.control.config_versions import FILE, ConfigVersions
from gateway.control.ops_config import FIRST, lock_path
from gateway.fleet import remote
from gateway.storage.files import STORE_FIX
from tests.fleet.conftest import T0, Clock, until
from tests.fleet.test_remote_config import (
    audit_actions,
    bundle,
    config_text,
    runtime_on,
    settled,
    steps_of,
    versions_of,
)
from tests.support.orion_double import OrionDouble
from tests.support.ports import free_port

GARBAGE = bytes(range(256)) * 32
FIX = "Fix the cause, then offer the config again with a new serial"


async def test_a_bundle_its_versions_store_cannot_record_ends_failed_with_the_file_as_it_was(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    path.write_text(original)
    db = tmp_path / "data" / FILE
    store = ConfigVersions(db)  # the file is already version 1: the apply records nothing before its write
    store.record(original, actor="file", at=T0, comment=FIRST)
    store.close()
    broken = config_text(tmp_path, f"http://127.0.0.1:{free_port()}")
    runtime = Runtime(path, load_config(path))
    await runtime.start()
    # another process in a write transaction on the versions store (a technician's sqlite3 shell, say):
    # reading it still works, recording the bundle's version after the rename waits 5 s and fails, and
    # ConfigOps takes the bundle's text back off the disk
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        first = runtime.gateway
        assert first.fleet is not None
        assert await first.fleet.offer(bundle(broken, 1), via="push") == {"applied": True, "serial": 1}
        # no tick: the failed apply itself ends the bundle
        await until(lambda: remote.RemoteState(tmp_path / "data").pending is None, timeout_s=15)
        await until(lambda: settled(1))
        assert runtime.gateway is first  # nothing reloaded
    finally:
        holder.close()
        await runtime.stop()
    assert path.read_text() == original
    reason = (
        f"config: not applied, the config versions store {db} cannot record it, got OperationalError: database "
        f"is locked; {path} is as it was: check that store (is another program holding it?) and apply again"
    )
    assert steps_of(tmp_path)[1:] == [
        (
            "rolling_back",
            1,
            f"apply failed: {reason}; if the bundle was written, back to the config from before it at once",
        ),
        (
            "failed",
            1,
            f"not applied: {reason}; the config file is still the one from before the bundle, nothing to undo. {FIX}",
        ),
    ]
    assert [v[:3] for v in versions_of(tmp_path)] == [(1, "file", FIRST)]
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.verified",
        "fleet.remote_config.rolling_back",
        "fleet.remote_config.failed",
    ]


async def test_a_bundle_whose_apply_fails_before_the_write_ends_failed_and_nothing_is_rolled_back(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    good = config_text(tmp_path, orion_double.url, rate=0.002)
    db = tmp_path / "data" / FILE
    async with runtime_on(path, original) as runtime:
        db.write_bytes(GARBAGE)  # damaged after the start: the apply opens it after its guard, before the write
        first = runtime.gateway
        assert first.fleet is not None
        assert await first.fleet.offer(bundle(good, 1), via="push") == {"applied": True, "serial": 1}
        await until(lambda: remote.RemoteState(tmp_path / "data").pending is None)  # no tick, no window waited
        await until(lambda: settled(1))
        assert runtime.gateway is first  # nothing written, nothing reloaded
    assert path.read_text() == original
    assert db.read_bytes() == GARBAGE
    reason = (
        f"config: not applied, the config versions store {db} cannot record it, got config versions {db}: not an "
        f"SQLite database, got 8192 bytes without SQLite's header; {STORE_FIX}; nothing written: check that store "
        "(is another program holding it?) and apply again"
    )
    assert steps_of(tmp_path)[1:] == [
        (
            "rolling_back",
            1,
            f"apply failed: {reason}; if the bundle was written, back to the config from before it at once",
        ),
        (
            "failed",
            1,
            f"not applied: {reason}; the config file is still the one from before the bundle, nothing to undo. {FIX}",
        ),
    ]
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.verified",
        "fleet.remote_config.rolling_back",
        "fleet.remote_config.failed",
    ]


async def test_a_bundle_whose_apply_fails_before_its_guard_ends_failed_without_a_rollback(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    async with runtime_on(path, original) as runtime:
        lock_path(path).mkdir()  # the config lock's file cannot be opened: the apply stops before reading the config
        first = runtime.gateway
        assert first.fleet is not None
        good = config_text(tmp_path, orion_double.url, rate=0.002)
        assert await first.fleet.offer(bundle(good, 1), via="push") == {"applied": True, "serial": 1}
        await until(lambda: remote.RemoteState(tmp_path / "data").pending is None)
        await until(lambda: settled(1))
    assert path.read_text() == original
    reason = (
        f"config: {path} not written, got Is a directory; the gateway's user needs write access to {tmp_path} "
        "(systemd: ReadWritePaths=)"
    )
    assert steps_of(tmp_path)[1:] == [
        ("failed", 1, f"not applied: {reason}; the apply stopped before writing anything, nothing to undo. {FIX}")
    ]
    assert audit_actions(tmp_path) == ["fleet.remote_config.verified", "fleet.remote_config.failed"]


async def test_a_bundle_the_running_gateway_cannot_take_says_why(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    (tmp_path / "afile").write_text("")
    # valid on its own; this box cannot make it (and no bundle may move the data_dir: refused at its offer,
    # before the apply, whose own refusal of it said only how many problems it found)
    moved = original.replace(f'data_dir = "{tmp_path / "data"}"', f'data_dir = "{tmp_path / "afile" / "data"}"')
    assert moved != original
    async with runtime_on(path, original) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        result = await first.fleet.offer(bundle(moved, 1), via="push")
        assert (result["applied"], result["code"]) == (False, "data_dir_moved")
        assert not remote.running("remote-config:1")
        assert runtime.gateway is first
    assert path.read_text() == original
    [(step, serial, detail)] = steps_of(tmp_path)
    assert (step, serial) == ("refused", 1)
    # the problem itself, naming both directories
    assert detail.startswith(
        f"data_dir_moved: remote config: gateway.data_dir must stay {tmp_path / 'data'}, got "
        f"{tmp_path / 'afile' / 'data'} in bundle 1; "
    )
