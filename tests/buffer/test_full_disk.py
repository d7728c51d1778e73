"""A really full disk (a 4 MiB tmpfs): the buffer refuses new readings, delivers, resumes, and opens again.

Every test fills a real file system: with the buffer itself (an uplink that does not read) and then
with a filler file, to the last byte.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.errors import BufferFull
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import ns, reading
from tests.support.tmpfs import fill, free_bytes

RESERVE = 512 * 1024
CFG = BufferConfig(durability=Durability.FULL, commit_interval_ms=1, reserve_bytes=RESERVE)


async def _fill_with_readings(box: Outbox, start: int = 0, group: int = 20) -> int:
    """Append groups of readings until the buffer refuses; returns how many were committed."""
    n = start
    while True:
        try:
            await box.append_many([reading(k, pad=300) for k in range(n, n + group)])
        except BufferFull:
            return n - start
        n += group


async def _deliver(box: Outbox, limit: int = 100) -> list[int]:
    seen: list[int] = []
    while batch := await box.read("orion", limit):
        seen += ns(batch)
        await box.ack("orion", batch, [DELIVERED] * len(batch))
    return seen


async def test_full_disk_refuses_delivers_and_resumes_without_touching_the_reserve(
    tmpfs: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    disk = tmpfs("4m")
    db = disk / "buffer.db"
    box = await Outbox.open(db, CFG, ["orion"])
    reserve = disk / "buffer.db.reserve"
    assert reserve.stat().st_size == RESERVE
    with caplog.at_level(logging.INFO, logger="gateway.buffer"):
        committed = await _fill_with_readings(box)
        committed += await _fill_with_readings(box, start=committed, group=1)  # what still fits one by one
        assert committed > 3000  # most of the 4 MiB holds readings
        with pytest.raises(BufferFull) as err:
            await box.append(reading(10**6))
        assert str(err.value).startswith("buffer: disk full while committing 1 readings, got ")
        assert str(err.value).endswith(
            f" kept for delivery; free space in {disk}, appends work again once there is room"
        )
        stats = await box.stats()
        assert (stats.rows, stats.disk_full, stats.reserve_bytes) == (committed, True, RESERVE)
        assert stats.refused_total >= 22  # a group of 20, a single reading at the end of the fill, this one
        # what the buffer leaves free is for delivery: every row goes out and is acknowledged
        assert await _deliver(box) == list(range(committed))
        # acknowledged rows freed pages inside the file: new readings fit there although the disk is as full
        again = await _fill_with_readings(box, start=100_000)
        assert again > 3000
        assert await _deliver(box) == list(range(100_000, 100_000 + again))
    await box.close()
    messages = [r.getMessage() for r in caplog.records]
    # said once per episode (two: before and after the delivery), not once per refused commit
    refusing = [m for m in messages if m.startswith(f"buffer: disk full in {disk}: refusing new readings")]
    assert len(refusing) == 2, refusing
    assert re.fullmatch(
        rf"buffer: disk full in {disk}: refusing new readings until there is room, got \d+ bytes free in {disk} "
        r"and 1048576 kept for delivery; delivery goes on",
        refusing[0],
    )
    [again_line] = [m for m in messages if m.startswith(f"buffer: disk has room again in {disk}; accepting readings")]
    assert re.fullmatch(
        r"buffer: disk has room again in .*; accepting readings \((2[2-9]|[3-9]\d) refused meanwhile\)", again_line
    ), again_line
    assert len([m for m in messages if m.startswith("buffer: disk nearly full: ")]) == 1
    assert not any("deleted the reserve" in m for m in messages)  # the megabyte kept for delivery was enough
    assert reserve.stat().st_size == RESERVE


async def test_opens_on_a_disk_full_to_the_last_byte_and_delivers(
    tmpfs: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    # (after kill -9 the -wal and -shm are still there with their space: tests/e2e/test_full_disk_e2e.py)
    disk = tmpfs("4m")
    db = disk / "buffer.db"
    box = await Outbox.open(db, CFG, ["orion"])
    committed = await _fill_with_readings(box)
    await box.close()  # checkpoints, deletes the -wal and the -shm: opening needs space again
    fill(disk)
    assert free_bytes(disk) == 0
    with caplog.at_level(logging.INFO, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"])
        with pytest.raises(BufferFull):
            await box.append(reading(10**6))
        assert (await box.stats()).disk_full is True
        assert await _deliver(box) == list(range(committed))
        # the reserve is not taken back by new readings: they go only where delivery freed room
        more = await _fill_with_readings(box, start=100_000)
        assert more > 1000
        assert await _deliver(box) == list(range(100_000, 100_000 + more))
        await box.close()
    messages = [r.getMessage() for r in caplog.records]
    assert (
        f"buffer: disk full in {disk}; deleted the reserve file {disk}/buffer.db.reserve (0.5 MiB) so that "
        f"opening the buffer can go on. It is made again once there is room; free space in {disk}"
    ) in messages
    assert not (disk / "buffer.db.reserve").exists()
    # space comes back: the running buffer makes its reserve again within a second
    box = await Outbox.open(db, CFG, ["orion"])
    os.unlink(disk / "filler")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gateway.buffer"):
        for _ in range(40):
            if (disk / "buffer.db.reserve").exists():
                break
            await asyncio.sleep(0.05)
        await box.append(reading(7))
        stats = await box.stats()
        await box.close()
    assert (disk / "buffer.db.reserve").stat().st_size == RESERVE
    assert (stats.disk_full, stats.reserve_bytes) == (False, RESERVE)
    assert f"buffer: made the reserve file {disk}/buffer.db.reserve (0.5 MiB)" in caplog.messages
