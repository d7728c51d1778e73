"""A remote bundle's outcome names the live config's version from a versions store the gateway may only read,
and says why when that store cannot be opened at all, instead of failing the fleet's step.

The fleet service's detail ("not applied: the live config is no longer bundle 1's, got version …") opened the
config versions store and caught only SQLite's errors: on a read-only disk the store's open raised a bare
OSError out of the step. The flow is test_remote_cut_short's (tests/fleet): bundle 1 applied, a kill after
its guard, a hand edit on disk, the next start closing the bundle.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.control.config_versions import FILE, sha256_text
from gateway.fleet import remote
from tests.fleet.conftest import Clock
from tests.fleet.conftest import clock as clock
from tests.fleet.test_remote_config import (
    bundle_applied_then_stopped,
    config_text,
    killed_mid_apply,
    runtime_on,
    steps_of,
)
from tests.storage.read_only import Binds
from tests.storage.read_only import binds as binds
from tests.support.orion_double import OrionDouble

KEPT = "not applied: the live config is no longer bundle 1's, got"


@pytest.mark.parametrize("versions", ["read-only", "unopenable"])
async def test_a_bundles_outcome_is_told_from_a_versions_store_it_may_only_read_or_not_open(
    orion_double: OrionDouble, tmp_path: Path, clock: Clock, binds: Binds, versions: str
) -> None:
    path, original, _ = await bundle_applied_then_stopped(tmp_path, orion_double.url)
    hand_edit = config_text(tmp_path, orion_double.url, rate=0.003)
    killed_mid_apply(path, original, on_disk=hand_edit, guard_ran=True)
    db = tmp_path / "data" / FILE
    if versions == "read-only":
        binds.read_only(db)  # the file alone: the fleet's own state beside it is written
    else:
        shutil.move(db, tmp_path / "aside.db")
        db.mkdir()  # what no open of the store gets past
    async with runtime_on(path) as runtime:
        fleet = runtime.gateway.fleet
        assert fleet is not None
        await fleet.tick(clock.advance(1))
        assert remote.RemoteState(tmp_path / "data").pending is None
    assert path.read_text() == hand_edit  # kept
    if versions == "read-only":
        detail = (
            f"{KEPT} a file not recorded as a version (a hand edit); it is kept. The config from before the bundle "
            "is version 1: roll back to it on the configuration page if it is wanted"
        )
    else:
        detail = (
            f"{KEPT} sha256 {sha256_text(hand_edit)[:12]} (its version unknown: config versions {db}: cannot be "
            "opened, got Is a directory (EISDIR)); it is kept"
        )
    assert steps_of(tmp_path)[1] == ("failed", 1, detail)
