"""One bundle at a time: a second one while the first is pending, confirming a bundle no longer live, a late apply.

A real Runtime applies through ConfigOps under the config flock, as in test_remote_config.py whose
helpers make, sign and drive the bundles here; the fleet clock is injected, so no window is waited out.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from gateway.app import Runtime
from gateway.control.ops_config import FIRST, ConfigOps, lock_path
from gateway.fleet import remote
from gateway.records import Command
from tests.fleet.conftest import Clock, until
from tests.fleet.test_remote_config import (
    audit_actions,
    bundle,
    config_text,
    remote_step,
    runtime_on,
    settled,
    versions_of,
)
from tests.support.orion_double import OrionDouble
from tests.support.ports import free_port

WINDOW_END = "2026-06-30T15:10:00+00:00"  # T0 (conftest) + health_window_s 600, in UTC


def pending_of(tmp_path: Path) -> dict[str, object]:
    return remote.RemoteState(tmp_path / "data").pending or {}


def last_event(tmp_path: Path) -> tuple[str, int | None, str]:
    event = remote.RemoteState(tmp_path / "data").doc["events"][-1]
    return event["step"], event["serial"], event["detail"]


async def test_a_second_bundle_in_the_first_ones_health_window_is_refused_and_can_be_offered_again(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    broken = config_text(tmp_path, f"http://127.0.0.1:{free_port()}")
    fixed = config_text(tmp_path, orion_double.url, rate=0.002)
    async with runtime_on(path, original) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        assert (await first.fleet.offer(bundle(broken, 1), via="push"))["applied"] is True
        await until(lambda: runtime.gateway is not first and pending_of(tmp_path).get("reloaded") is True)
        second = runtime.gateway
        assert second.fleet is not None
        answer = await second.router.dispatch(
            Command(
                command_id="c2",
                entity_id="urn:ngsi-ld:Device:gw-fleet",
                name="configBundle",
                value=bundle(fixed, 2).decode(),
            )
        )
        busy = (
            f"remote config: bundle 1 is in its health window until {WINDOW_END}, got bundle 2; nothing applied, "
            "offer it again once bundle 1 is confirmed or rolled back"
        )
        assert (answer.ok, answer.info) == (False, busy)
        assert last_event(tmp_path) == ("refused", 2, f"busy: {busy} (via command c2)")
        state = remote.RemoteState(tmp_path / "data")
        assert (state.last_serial, (state.pending or {}).get("serial")) == (1, 1)  # serial 2 not used up
        assert path.read_text() == broken
        # the window ends: back to the config from before bundle 1, whatever bundle 2 was
        await second.fleet.tick(clock.advance(5))
        await until(lambda: second.loops[0].state.value == "backing-off")
        await second.fleet.tick(clock.advance(600))
        await until(lambda: "fleet.remote_config.rolled_back" in audit_actions(tmp_path))
        await until(lambda: runtime.gateway is not second)
        assert path.read_text() == original
        third = runtime.gateway
        assert third.fleet is not None
        assert await third.fleet.offer(bundle(fixed, 2), via="command c3") == {"applied": True, "serial": 2}
        await until(lambda: audit_actions(tmp_path).count("fleet.remote_config.applied") == 2)
    assert path.read_text() == fixed
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.verified",
        "fleet.remote_config.applied",
        "fleet.remote_config.refused",
        "fleet.remote_config.rolling_back",
        "fleet.remote_config.rolled_back",
        "fleet.remote_config.verified",
        "fleet.remote_config.applied",
    ]


async def test_two_bundles_offered_at_once_are_one_applied_and_one_refused(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    texts = {
        1: config_text(tmp_path, orion_double.url, rate=0.002),
        2: config_text(tmp_path, orion_double.url, rate=0.003),
    }
    async with runtime_on(path, config_text(tmp_path, orion_double.url)) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        results = await asyncio.gather(*(first.fleet.offer(bundle(t, s), via="push") for s, t in texts.items()))
        won = next(int(r["serial"]) for r in results if r["applied"])
        # the other waits for bundle 1's outcome, or is older than bundle 2 that won
        assert [r.get("code", "applied") for r in results] == (
            ["applied", "busy"] if won == 1 else ["replayed", "applied"]
        )
        await until(lambda: pending_of(tmp_path).get("reloaded") is True)
        await until(lambda: not remote.running(f"remote-config:{won}"))
    assert path.read_text() == texts[won]
    assert pending_of(tmp_path)["serial"] == remote.RemoteState(tmp_path / "data").last_serial == won
    assert [v[1:3] for v in versions_of(tmp_path)] == [("remote-config", f"remote bundle {won}"), ("file", FIRST)]


async def _good_bundle_applied_then_changed_by_hand(
    runtime: Runtime, tmp_path: Path, orion_url: str, clock: Clock, *, to_version_1: bool
) -> None:
    """Bundle 1 (a good config) applied; then the admin's own apply, or a rollback to version 1, on top."""
    first = runtime.gateway
    assert first.fleet is not None
    assert (await first.fleet.offer(bundle(config_text(tmp_path, orion_url, rate=0.002), 1), via="push"))["applied"]
    await until(lambda: runtime.gateway is not first and pending_of(tmp_path).get("reloaded") is True)
    ops = ConfigOps(runtime, clock=clock)
    if to_version_1:
        assert await ops.op_rollback({"version": 1, "actor": "tanaka"}) == {"version": 3, "reloaded": True}
    else:
        mine = config_text(tmp_path, orion_url, rate=0.003)
        assert await ops.apply(mine, actor="tanaka", comment="mine") == {"version": 3, "reloaded": True}


async def test_a_healthy_bundle_that_is_no_longer_the_live_config_is_not_confirmed(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    async with runtime_on(path, config_text(tmp_path, orion_double.url)) as runtime:
        await _good_bundle_applied_then_changed_by_hand(runtime, tmp_path, orion_double.url, clock, to_version_1=False)
        third = runtime.gateway
        assert third.fleet is not None
        await third.fleet.tick(clock.advance(5))
        await until(lambda: third.loops[0].delivered > 0)
        await third.fleet.tick(clock.advance(5))  # every uplink delivers after the apply: healthy
        await third.fleet.tick(clock.advance(5))  # the step reaches the platform with the next report
        await until(lambda: remote_step(orion_double) == (1, "superseded"))
    assert last_event(tmp_path) == (
        "superseded",
        1,
        "not confirmed: the live config is no longer bundle 1's, got version 3 (applied after it); it is kept. "
        "The config from before the bundle is version 1: roll back to it on the configuration page if it is wanted",
    )
    assert remote.RemoteState(tmp_path / "data").pending is None
    assert "fleet.remote_config.confirmed" not in audit_actions(tmp_path)


async def test_a_bundle_rolled_back_by_hand_is_not_confirmed(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    async with runtime_on(path, original) as runtime:
        await _good_bundle_applied_then_changed_by_hand(runtime, tmp_path, orion_double.url, clock, to_version_1=True)
        third = runtime.gateway
        assert third.fleet is not None
        await third.fleet.tick(clock.advance(5))
        await until(lambda: third.loops[0].delivered > 0)
        await third.fleet.tick(clock.advance(5))
    assert path.read_text() == original
    assert last_event(tmp_path) == (
        "superseded",
        1,
        "not confirmed: the live config is the one from before bundle 1 again; nothing to confirm",
    )
    assert remote.RemoteState(tmp_path / "data").pending is None
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.verified",
        "fleet.remote_config.applied",
        "fleet.remote_config.superseded",
    ]


async def test_a_bundle_still_waiting_for_the_config_lock_when_its_window_ends_is_never_applied(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    async with runtime_on(path, original) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        broken = config_text(tmp_path, f"http://127.0.0.1:{free_port()}")
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)  # an apply under way elsewhere, for long
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            assert await first.fleet.offer(bundle(broken, 1), via="push") == {"applied": True, "serial": 1}
            await first.fleet.tick(clock.advance(600))
        finally:
            os.close(fd)
        await until(lambda: settled(1))
        assert runtime.gateway is first  # nothing reloaded
        await first.fleet.tick(clock.advance(10))  # and nothing left for a later tick to do
    assert path.read_text() == original
    assert versions_of(tmp_path) == []
    assert remote.RemoteState(tmp_path / "data").pending is None
    assert last_event(tmp_path) == (
        "failed",
        1,
        f"not applied: the config lock was still held by another apply when the health window ended ({WINDOW_END}); "
        "the bundle was never live, offer it again with a new serial",
    )
    assert audit_actions(tmp_path) == ["fleet.remote_config.verified", "fleet.remote_config.failed"]


async def test_the_health_window_starts_when_the_bundle_is_written_not_when_it_was_offered(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    async with runtime_on(path, original) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        broken = config_text(tmp_path, f"http://127.0.0.1:{free_port()}")
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            assert (await first.fleet.offer(bundle(broken, 1), via="push"))["applied"] is True
            clock.advance(500)  # the lock holder takes its time; the bundle is written once it lets go
        finally:
            os.close(fd)
        await until(lambda: runtime.gateway is not first and pending_of(tmp_path).get("reloaded") is True)
        assert pending_of(tmp_path)["deadline"] == clock.now + 600
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(5))
        await until(lambda: second.loops[0].state.value == "backing-off")
        await second.fleet.tick(clock.advance(200))  # past the offer's window end, well inside the bundle's
        assert runtime.gateway is second
        assert "fleet.remote_config.rolling_back" not in audit_actions(tmp_path)
        await second.fleet.tick(clock.advance(395))
        await until(lambda: "fleet.remote_config.rolled_back" in audit_actions(tmp_path))
        await until(lambda: runtime.gateway is not second)
    assert path.read_text() == original
