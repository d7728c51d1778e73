"""A remote bundle applied over a hand edit that validation refuses: remote_config.json keeps only its sha256.

The apply's guard noted the text on disk before the bundle as `pending["previous"]`, kept until the bundle
ended, in a 0600 file that every backup of the data directory takes: a technician's hand edit with
x_auth_token written in clear (refused by validation as "never the secret in clear", so never run) put the
token there. Such a text could never be written back by the rollback either (ConfigOps refuses an invalid
config), so only its sha256 is noted (`previous_sha256`); the rollback then writes nothing and says why,
naming the version to go back to by hand. A state file an older release wrote (the text in clear) is
still read, and scrubbed by the next tick. A real Runtime applies through ConfigOps, as in
test_remote_config.py, whose helpers make, sign and drive the bundles; the fleet clock is injected.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest

from gateway.app import Runtime
from gateway.config import load_config
from gateway.control.config_versions import FILE, ConfigVersions, sha256_text
from gateway.control.ops_config import FIRST
from gateway.fleet import remote
from tests.fleet.conftest import T0, Clock, until
from tests.fleet.test_remote_config import (
    audit_actions,
    bundle,
    bundle_applied_then_stopped,
    config_text,
    runtime_on,
    settled,
    steps_of,
    url_of,
    versions_of,
)
from tests.support.orion_double import OrionDouble
from tests.support.ports import free_port

TOKEN = "S3cr3t-Token-In-Clear"


def hand_edited(text: str) -> str:
    """`text` with the uplink's token written in clear, as a technician might: validation refuses it."""
    edited = text.replace("retry_max_s = 0.2", f'retry_max_s = 0.2\nx_auth_token = "{TOKEN}"')
    assert edited != text
    return edited


def state_bytes(tmp_path: Path) -> bytes:
    return (tmp_path / "data" / remote.STATE_FILE).read_bytes()


def recorded_first(tmp_path: Path, text: str) -> None:
    """`text` recorded as version 1, as an apply before the hand edit would have."""
    store = ConfigVersions(tmp_path / "data" / FILE)
    try:
        store.record(text, actor="file", at=T0, comment=FIRST)
    finally:
        store.close()


async def test_a_bundle_over_a_hand_edit_with_a_token_in_clear_keeps_only_its_sha256_in_the_state_file(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    hand = hand_edited(original)
    async with runtime_on(path, original) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        path.write_text(hand)  # refused by a reload: never runs
        sent = config_text(tmp_path, orion_double.url, rate=0.002)
        assert (await fleet.offer(bundle(sent, 1), via="push"))["applied"] is True
        await until(lambda: settled(1))
        assert path.read_text() == sent
        assert TOKEN not in state_bytes(tmp_path).decode()  # in its health window: pending
        pending = remote.RemoteState(tmp_path / "data").pending
        assert pending is not None and pending["reloaded"] is True
        assert (pending["previous"], pending["previous_sha256"]) == (None, sha256_text(hand))


async def test_a_bundle_over_a_valid_config_keeps_its_text_to_roll_back_to(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    async with runtime_on(path, original) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        assert (await fleet.offer(bundle(config_text(tmp_path, orion_double.url, rate=0.002), 1), via="push"))[
            "applied"
        ] is True
        await until(lambda: settled(1))
    pending = remote.RemoteState(tmp_path / "data").pending
    assert pending is not None
    assert (pending["previous"], pending["previous_sha256"]) == (original, sha256_text(original))


async def test_the_rollback_of_such_a_bundle_writes_nothing_and_names_the_version_to_go_back_to_by_hand(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    hand = hand_edited(original)
    path.write_text(original)
    recorded_first(tmp_path, original)
    broken = config_text(tmp_path, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    gateway_log = logging.getLogger("gateway")
    gateway_log.addHandler(caplog.handler)  # each reload sets up the root's handlers again, without caplog's
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(gateway_log.removeHandler, caplog.handler)
        runtime = await stack.enter_async_context(runtime_on(path))
        first = runtime.gateway
        assert first.fleet is not None
        path.write_text(hand)
        assert (await first.fleet.offer(bundle(broken, 1), via="push"))["applied"] is True
        await until(lambda: runtime.gateway is not first and url_of(runtime) != orion_double.url)
        await until(lambda: settled(1))
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(5))
        await until(lambda: second.loops[0].state.value == "backing-off")
        await second.fleet.tick(clock.advance(600))
        await until(lambda: "fleet.remote_config.rollback_failed" in audit_actions(tmp_path))
        await until(lambda: settled(1))
        assert runtime.gateway is second  # nothing written, nothing reloaded
    assert path.read_text() == broken
    assert TOKEN not in state_bytes(tmp_path).decode()
    assert TOKEN not in caplog.text
    assert "remote config rollback_failed: not rolled back: the config from before bundle 1" in caplog.text
    assert remote.RemoteState(tmp_path / "data").pending is None
    assert [v[:2] for v in versions_of(tmp_path)] == [(3, "remote-config"), (2, "file"), (1, "file")]
    assert steps_of(tmp_path)[-1] == (
        "rollback_failed",
        1,
        "not rolled back: the config from before bundle 1 was not a valid config (validation refused it, so it "
        "never ran), and only its sha256 was kept, as it may hold a secret in clear: it cannot be written back. "
        "Bundle 1's config is left in place. The config from before the bundle is version 2, recorded without its "
        "text; the newest version before it with its text kept is version 1: roll back to it on the configuration "
        "page if it is wanted",
    )


async def test_a_state_file_from_the_older_release_with_the_text_in_clear_is_read_and_scrubbed_by_the_next_tick(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path, original, broken = await bundle_applied_then_stopped(tmp_path, orion_double.url)
    hand = hand_edited(original)
    state = remote.RemoteState(tmp_path / "data")
    assert state.pending is not None
    # as the older release noted it: the text in clear, no digest
    state.doc["pending"] = {k: v for k, v in state.pending.items() if k != "previous_sha256"} | {"previous": hand}
    state.save()
    assert TOKEN in state_bytes(tmp_path).decode()
    async with runtime_on(path) as runtime:
        second = runtime.gateway
        assert second.fleet is not None
        await second.fleet.tick(clock.advance(5))
        assert TOKEN not in state_bytes(tmp_path).decode()
        pending = remote.RemoteState(tmp_path / "data").pending
        assert pending is not None
        assert (pending["previous"], pending["previous_sha256"]) == (None, sha256_text(hand))
        await until(lambda: second.loops[0].state.value == "backing-off")
        await second.fleet.tick(clock.advance(600))
        await until(lambda: "fleet.remote_config.rollback_failed" in audit_actions(tmp_path))
        await until(lambda: settled(1))
    assert path.read_text() == broken
    assert steps_of(tmp_path)[-1][0] == "rollback_failed"
    assert "the config from before bundle 1 was not a valid config" in steps_of(tmp_path)[-1][2]


async def test_a_failed_apply_finds_the_hand_edit_from_before_the_bundle_by_its_sha256(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "gateway.toml"
    original = config_text(tmp_path, orion_double.url)
    hand = hand_edited(original)
    path.write_text(original)
    recorded_first(tmp_path, original)
    db = tmp_path / "data" / FILE
    runtime = Runtime(path, load_config(path))
    await runtime.start()
    path.write_text(hand)
    # the versions store held by another process: recording the hand edit (before the bundle's write) fails
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        first = runtime.gateway
        assert first.fleet is not None
        sent = config_text(tmp_path, orion_double.url, rate=0.002)
        assert await first.fleet.offer(bundle(sent, 1), via="push") == {"applied": True, "serial": 1}
        await until(lambda: remote.RemoteState(tmp_path / "data").pending is None, timeout_s=15)
        await until(lambda: settled(1))
    finally:
        holder.close()
        await runtime.stop()
    assert path.read_text() == hand
    assert TOKEN not in state_bytes(tmp_path).decode()
    step, serial, detail = steps_of(tmp_path)[-1]
    assert (step, serial) == ("failed", 1)
    assert "the config file is still the one from before the bundle, nothing to undo" in detail
