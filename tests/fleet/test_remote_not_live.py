"""A bundle's text is never left on disk unwatched, and a bundle never written is not kept pending.

A reload that fails after the write (ConfigOps: "version N written but not running") rolls the
bundle back at once; a bundle a stopped gateway never wrote is closed as `failed` at the next start.
A real Runtime applies through ConfigOps, as in test_remote_config.py whose helpers make, sign and
drive the bundles here; the fleet clock is injected, so no window is waited out.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gateway import registry
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.audit.log import LOCK_FILE
from gateway.config import load_config
from gateway.control.ops_config import FIRST
from gateway.errors import ConfigError
from gateway.fleet import remote
from tests.fleet.conftest import Clock, until
from tests.fleet.test_remote_config import (
    audit_actions,
    bundle,
    bundle_applied_then_stopped,
    config_text,
    killed_mid_apply,
    runtime_on,
    settled,
    steps_of,
    versions_of,
)
from tests.support.orion_double import OrionDouble

NEVER_WRITTEN = "not applied: the gateway stopped before the bundle was written; offer it again with a new serial"

# valid on its own, but its adapter cannot be built on this box: the generation it makes cannot start,
# so the reload fails after the bundle was written. (The shipped families check what the box lacks when
# they run, under the supervisor, not when they are built; a family built this way stands for a bug.)
UNSTARTABLE = """
[[adapters]]
name = "desk"
type = "test-unbuildable"
"""


class Unbuildable:
    config_model: ClassVar[type[AdapterConfig]] = AdapterConfig

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        raise ConfigError(["adapters.desk: cannot be built here"])


@pytest.fixture(autouse=True)
def unbuildable_family(monkeypatch: pytest.MonkeyPatch) -> None:
    load = registry.load

    def with_it(group: str, name: str) -> Any:
        return Unbuildable if (group, name) == (registry.ADAPTER_GROUP, "test-unbuildable") else load(group, name)

    monkeypatch.setattr(registry, "load", with_it)


async def test_a_bundle_whose_reload_fails_after_the_write_is_rolled_back_at_once(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    unstartable = original + UNSTARTABLE
    async with runtime_on(path, original) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        assert await first.fleet.offer(bundle(unstartable, 1), via="push") == {"applied": True, "serial": 1}
        await until(lambda: settled(1))
    assert path.read_text() == original  # not the bundle's text, for the next start to run unwatched
    assert runtime.config == load_config(path)
    assert remote.RemoteState(tmp_path / "data").pending is None
    why = (
        "config: version 2 written but not running: reload: the new configuration did not start, got ConfigError: "
        "adapters.desk: cannot be built here; back to the config from before the bundle at once"
    )
    assert steps_of(tmp_path)[1:] == [
        ("rolling_back", 1, why),
        ("rolled_back", 1, "back to the previous config, version 3"),
    ]
    assert [v[:3] for v in versions_of(tmp_path)] == [
        (3, "remote-config", "rollback of remote bundle 1"),
        (2, "remote-config", "remote bundle 1"),
        (1, "file", FIRST),
    ]
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.verified",
        "fleet.remote_config.rolling_back",
        "fleet.remote_config.rolled_back",
    ]


async def test_a_bundle_a_killed_gateway_never_wrote_is_closed_at_the_next_start(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path, original, _ = await bundle_applied_then_stopped(tmp_path, orion_double.url)
    killed_mid_apply(path, original)
    async with runtime_on(path) as runtime:
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(1))  # well inside the window: no need to wait for its end
        assert remote.RemoteState(tmp_path / "data").pending is None
        assert steps_of(tmp_path)[-1] == ("failed", 1, NEVER_WRITTEN)
        assert runtime.gateway is second  # nothing written, nothing reloaded
        # and the next bundle is not refused as busy
        good = config_text(tmp_path, orion_double.url, rate=0.002)
        assert await second.fleet.offer(bundle(good, 2), via="push") == {"applied": True, "serial": 2}
        await until(lambda: audit_actions(tmp_path).count("fleet.remote_config.applied") == 2)  # one before the kill
    assert path.read_text() == good


async def test_a_rollback_begun_on_a_bundle_never_written_does_not_say_the_live_config_came_after_it(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path, original, _ = await bundle_applied_then_stopped(tmp_path, orion_double.url)
    killed_mid_apply(path, original, rolling_back=True)
    async with runtime_on(path) as runtime:
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(601))
        await until(lambda: not remote.running("remote-config-rollback:1"))
        assert runtime.gateway is second
        await second.fleet.tick(clock.advance(10))  # and nothing left for a later tick
    assert path.read_text() == original
    assert remote.RemoteState(tmp_path / "data").pending is None
    assert steps_of(tmp_path)[-1] == ("failed", 1, NEVER_WRITTEN)
    assert not [s for s in steps_of(tmp_path) if "applied after it" in s[2]]


async def test_a_bundle_being_claimed_is_not_taken_for_one_a_stopped_gateway_never_wrote(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    good = config_text(tmp_path, orion_double.url, rate=0.002)
    async with runtime_on(path, config_text(tmp_path, orion_double.url)) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        fleet = first.fleet
        # the audit log's file lock held (a web UI append, say): the offer's `verified` entry waits after
        # the pending is saved, and a tick comes in between
        (tmp_path / "data" / "web").mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp_path / "data" / "web" / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            offer = asyncio.create_task(fleet.offer(bundle(good, 1), via="push"))
            await until(lambda: remote.RemoteState(tmp_path / "data").pending is not None)
            tick = asyncio.create_task(fleet.tick(clock.advance(1)))
            await until(lambda: tick.done() or remote.RemoteState(tmp_path / "data").pending is None)
            assert remote.RemoteState(tmp_path / "data").pending is not None  # not closed as never written
        finally:
            os.close(fd)
        assert await offer == {"applied": True, "serial": 1}
        await tick
        await until(lambda: (remote.RemoteState(tmp_path / "data").pending or {}).get("reloaded") is True)
    assert path.read_text() == good
    assert [s[0] for s in steps_of(tmp_path)] == ["verified", "applied"]
