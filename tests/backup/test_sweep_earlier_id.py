"""What a killed backup left under the gateway id the box had before goes at the next backup, in the box's own backup
directory; never what a running backup holds, nor another box's on a share.

A box's gateway id changes (`backup restore --take-id`, an edited config). The sweeps took only the current id's
`.part` files and `.staging-*` directories, and an older release's `.staging-<random>` only if its config named the
current id: those of the earlier id, each as big as a whole backup, stayed in `<data_dir>/backups` for good. Every
run here is a real process, really killed or really holding its lock; every file is a real one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.backup import archive
from tests.backup import test_part_sweep as part_sweep
from tests.backup import test_staging_sweep as staging_sweep
from tests.backup.conftest import write_config

NIGHT = staging_sweep.NIGHT
EARLIER = "fixture-gw"  # the id `test_part_sweep`'s runs back up under
NOW = "kawasaki-a"


def _leftovers(out_dir: Path) -> set[str]:
    return {p.name for p in out_dir.iterdir() if p.name.startswith(".")}


def _killed_under_the_earlier_id(top: Path) -> tuple[Path, Path, Path, set[str]]:
    """(config, data dir, its backup directory, the names left there): a create of the earlier id killed with its
    staging directory made, another killed with its `.part` whole, and an older release's staging directory."""
    config, data_dir = staging_sweep._box(top, EARLIER)
    out_dir = data_dir / "backups"
    with staging_sweep._store_held(data_dir):
        child, staging = staging_sweep._create_under_way(config, data_dir, out_dir, EARLIER, NIGHT)
        staging_sweep._killed(child)
    # killed elsewhere, then moved in: a run of the same id here would sweep the staging directory above first
    elsewhere = top / "elsewhere"
    with part_sweep._held_at_rename(*part_sweep._create(config, data_dir, elsewhere, NIGHT + timedelta(1))) as (
        writer,
        killed,
    ):
        part_sweep._killed(writer)
    part = killed.rename(out_dir / killed.name)
    legacy = staging_sweep._left_by_an_older_release(out_dir, EARLIER, 2 * archive.STALE_AFTER_S)
    left = {staging.name, part.name, legacy.name}
    assert _leftovers(out_dir) == left
    write_config(config, data_dir, NOW)  # the box's id changes
    return config, data_dir, out_dir, left


def test_a_killed_backups_leftovers_under_the_earlier_id_go_at_the_next_backup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, data_dir, out_dir, left = _killed_under_the_earlier_id(tmp_path)
    with caplog.at_level(logging.INFO, logger="gateway.backup"):
        made = archive.create(
            data_dir=data_dir, config_path=config, gateway_id=NOW, out_dir=out_dir, now=NIGHT + timedelta(2)
        )
    assert _leftovers(out_dir) == set()
    assert made.exists()
    removed = "\n".join(r.getMessage() for r in caplog.records if "did not finish" in r.getMessage())
    for name in left:
        assert f"backup: removed {out_dir / name}" in removed


def test_a_running_backups_files_under_another_id_stay(tmp_path: Path) -> None:
    """Their locks held (as by a backup of this box that still runs under the earlier id): neither is touched; the
    older release's, which has no lock, goes once an hour old."""
    config, data_dir, out_dir, left = _killed_under_the_earlier_id(tmp_path)
    held: dict[str, int] = {}
    for name in left:
        lock = out_dir / name if name.endswith(".part") else out_dir / name / "CREATE-UNDER-WAY"
        if lock.exists():
            held[name] = os.open(lock, os.O_RDWR)
            fcntl.flock(held[name], fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert len(held) == 2
        archive.create(data_dir=data_dir, config_path=config, gateway_id=NOW, out_dir=out_dir, now=NIGHT + timedelta(2))
        assert _leftovers(out_dir) == set(held)
    finally:
        for fd in held.values():
            os.close(fd)


def test_another_ids_leftovers_outside_the_data_directory_stay(tmp_path: Path) -> None:
    """A share (here a directory beside the data directory) may be another box's: its leftovers are its own."""
    config, data_dir, out_dir, left = _killed_under_the_earlier_id(tmp_path)
    share = tmp_path / "share"
    out_dir.rename(share)
    for name in left:
        then = time.time() - 2 * archive.STALE_AFTER_S
        os.utime(share / name, (then, then))
    archive.create(data_dir=data_dir, config_path=config, gateway_id=NOW, out_dir=share, now=NIGHT + timedelta(2))
    assert _leftovers(share) == left
