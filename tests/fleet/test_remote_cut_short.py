"""A bundle's apply cut short by a kill after its guard ran: the next start sees how far it got, at once.

The guard notes `written_at` (under the config lock) before the validation, the versions store's
first record and the write. A kill before the write left `written_at` set and the file as it was:
the next start refused every bundle as `busy` for the whole window, then ended it `rollback_skipped`.
A kill after the write and before its reload was noted left the bundle running with `reloaded`
false: never confirmable, rolled back at the deadline for uplinks "not delivering".
A real Runtime applies through ConfigOps, as in test_remote_config.py whose helpers make, sign and
drive the bundles here; the fleet clock is injected, so no window is waited out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.fleet import remote
from gateway.fleet.service import NEVER_WRITTEN
from tests.fleet.conftest import Clock, until
from tests.fleet.test_remote_config import (
    audit_actions,
    bundle,
    bundle_applied_then_stopped,
    config_text,
    killed_mid_apply,
    runtime_on,
    steps_of,
)
from tests.support.orion_double import OrionDouble

FOUND_RUNNING = "found running after a restart that cut its apply short; its health window starts now"


@pytest.mark.parametrize("on_disk", ["before", "hand_edit"])
async def test_a_bundle_killed_between_its_guard_and_its_write_is_closed_at_the_next_start(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, on_disk: str
) -> None:
    path, original, _ = await bundle_applied_then_stopped(tmp_path, orion_double.url)
    hand_edit = config_text(tmp_path, orion_double.url, rate=0.003)
    killed_mid_apply(path, original, on_disk=original if on_disk == "before" else hand_edit, guard_ran=True)
    good = config_text(tmp_path, orion_double.url, rate=0.002)
    async with runtime_on(path) as runtime:
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(1))  # well inside the window: no need to wait for its end
        assert remote.RemoteState(tmp_path / "data").pending is None
        assert runtime.gateway is second  # nothing written, nothing reloaded
        # and the next bundle is not refused as busy
        assert await second.fleet.offer(bundle(good, 2), via="push") == {"applied": True, "serial": 2}
        await until(lambda: audit_actions(tmp_path).count("fleet.remote_config.applied") == 2)  # one before the kill
    assert path.read_text() == good
    detail = (
        NEVER_WRITTEN
        if on_disk == "before"
        else "not applied: the live config is no longer bundle 1's, got a file not recorded as a version (a hand "
        "edit); it is kept. The config from before the bundle is version 1: roll back to it on the configuration "
        "page if it is wanted"
    )
    assert steps_of(tmp_path)[1] == ("failed", 1, detail)


async def test_a_bundle_killed_between_its_write_and_its_reload_is_confirmed_once_it_delivers(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    good = config_text(tmp_path, orion_double.url, rate=0.002)
    path, original, _ = await bundle_applied_then_stopped(tmp_path, orion_double.url, good)
    killed_mid_apply(path, original, on_disk=good, guard_ran=True)
    async with runtime_on(path) as runtime:
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(30))
        pending = remote.RemoteState(tmp_path / "data").pending
        assert pending is not None
        assert (pending["reloaded"], pending["applied_at"], pending["deadline"]) == (True, clock.now, clock.now + 600)
        await until(lambda: second.loops[0].delivered > 0)
        await second.fleet.tick(clock.advance(5))
        assert remote.RemoteState(tmp_path / "data").pending is None
        assert runtime.gateway is second
    assert path.read_text() == good
    assert steps_of(tmp_path)[1:] == [
        ("applied", 1, FOUND_RUNNING),
        ("confirmed", 1, "uplinks delivering after the apply"),
    ]
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.verified",
        "fleet.remote_config.applied",  # before the kill
        "fleet.remote_config.applied",
        "fleet.remote_config.confirmed",
    ]
