"""A bundle whose config the next generation could not watch is refused at its offer; a new key is still watched.

The bundle's pending state, health window and last serial live in `<data_dir>/remote_config.json`,
and only a generation with `[fleet.remote_config]` ticks them on. A bundle moving `gateway.data_dir`
was applied with no window, no rollback and no replay protection (the new generation read an
empty state file); one dropping `[fleet]` or `[fleet.remote_config]` stayed pending for good and the
box took no bundle again. A bundle pinning a new public key is allowed: its window still runs.
A real Runtime applies through ConfigOps, as in test_remote_config.py whose helpers make, sign and
drive the bundles here; the fleet clock is injected, so no window is waited out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.fleet import remote
from gateway.records import Command
from tests.fleet.conftest import Clock, until
from tests.fleet.test_remote_config import (
    KEY,
    audit_actions,
    bundle,
    config_text,
    runtime_on,
    settled,
    steps_of,
    url_of,
)
from tests.support.orion_double import OrionDouble
from tests.support.ports import free_port


async def test_a_bundle_moving_the_data_dir_is_refused_and_its_serial_not_used_up(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    moved = original.replace(f'data_dir = "{tmp_path / "data"}"', f'data_dir = "{tmp_path / "data2"}"')
    assert moved != original
    good = config_text(tmp_path, orion_double.url, rate=0.002)
    async with runtime_on(path, original) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        refusal = (
            f"remote config: gateway.data_dir must stay {tmp_path / 'data'}, got {tmp_path / 'data2'} in bundle 5; "
            "the bundle's state, health window and serials are kept in the data directory, so it is moved on the "
            "box (stop the gateway, move the directory, set gateway.data_dir, start it), never remotely; "
            "nothing applied"
        )
        assert await first.fleet.offer(bundle(moved, 5), via="push") == {
            "applied": False,
            "error": refusal,
            "code": "data_dir_moved",
        }
        assert steps_of(tmp_path)[-1] == ("refused", 5, f"data_dir_moved: {refusal} (via push)")
        assert runtime.gateway is first
        state = remote.RemoteState(tmp_path / "data")
        assert (state.last_serial, state.pending) == (0, None)
        # serial 5 is not used up: the platform sends it again with the data_dir as it is
        assert await first.fleet.offer(bundle(good, 5), via="push") == {"applied": True, "serial": 5}
        await until(lambda: (remote.RemoteState(tmp_path / "data").pending or {}).get("reloaded") is True)
        await until(lambda: settled(5))  # its `applied` audit entry comes after `reloaded`
    assert path.read_text() == good
    assert not (tmp_path / "data2").exists()
    assert audit_actions(tmp_path) == [
        "fleet.remote_config.refused",
        "fleet.remote_config.verified",
        "fleet.remote_config.applied",
    ]


@pytest.mark.parametrize(("cut_at", "missing"), [("[fleet.alarms]", "[fleet]"), ("[fleet.remote_config]", "")])
async def test_a_bundle_dropping_its_remote_config_section_is_refused(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, cut_at: str, missing: str
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    dropped = original[: original.index(cut_at)]
    async with runtime_on(path, original) as runtime:
        first = runtime.gateway
        answer = await first.router.dispatch(
            Command(
                command_id="c1",
                entity_id="urn:ngsi-ld:Device:gw-fleet",
                name="configBundle",
                value=bundle(dropped, 3).decode(),
            )
        )
        refusal = (
            "remote config: the bundle's config must keep [fleet.remote_config], got bundle 3 without "
            f"{missing or '[fleet.remote_config]'}; the gateway would then watch no health window, roll nothing "
            "back and take no further bundle; nothing applied"
        )
        assert (answer.ok, answer.info) == (False, refusal)
        assert steps_of(tmp_path)[-1] == ("refused", 3, f"no_remote_config: {refusal} (via command c1)")
        assert runtime.gateway is first
        state = remote.RemoteState(tmp_path / "data")
        assert (state.last_serial, state.pending) == (0, None)
    assert path.read_text() == original


async def test_a_bundle_pinning_a_new_key_is_still_rolled_back_when_its_uplinks_fail(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    new_key = Ed25519PrivateKey.generate()
    rotated = config_text(tmp_path, f"http://127.0.0.1:{free_port()}").replace(
        remote.public_key_b64(KEY), remote.public_key_b64(new_key)
    )
    async with runtime_on(path, original) as runtime:
        first = runtime.gateway
        assert first.fleet is not None
        assert await first.fleet.offer(bundle(rotated, 1), via="push") == {"applied": True, "serial": 1}
        await until(lambda: (remote.RemoteState(tmp_path / "data").pending or {}).get("reloaded") is True)
        await until(lambda: not remote.running("remote-config:1"))  # until then a tick leaves it to the apply
        second = runtime.gateway
        assert second.fleet is not None and second.fleet.config.remote_config is not None
        assert second.fleet.config.remote_config.public_key == remote.public_key_b64(new_key)
        await second.fleet.tick(clock.advance(5))
        await until(lambda: second.loops[0].state.value == "backing-off")
        await second.fleet.tick(clock.advance(600))
        await until(lambda: "fleet.remote_config.rolled_back" in audit_actions(tmp_path))
        await until(lambda: runtime.gateway is not second and url_of(runtime) == orion_double.url)
        third = runtime.gateway
        assert third.fleet is not None
        # the key from before the bundle is pinned again
        good = config_text(tmp_path, orion_double.url, rate=0.002)
        assert await third.fleet.offer(bundle(good, 2), via="push") == {"applied": True, "serial": 2}
        await until(lambda: audit_actions(tmp_path).count("fleet.remote_config.applied") == 2)
    assert path.read_text() == good
    assert [s[0] for s in steps_of(tmp_path)] == [
        "verified",
        "applied",
        "rolling_back",
        "rolled_back",
        "verified",
        "applied",
    ]
