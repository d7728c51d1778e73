"""A damaged buffer file is moved aside and replaced (what it holds salvaged); a full disk refuses appends and recovers."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.errors import BufferFull
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import ns, reading

CFG = BufferConfig(durability=Durability.FULL, commit_interval_ms=1)


def _aside(db: Path) -> Path:
    [moved] = [p for p in db.parent.iterdir() if re.fullmatch(r"b\.db\.corrupt-\d{8}T\d{6}", p.name)]
    return moved


async def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "b.db"
    db.write_bytes(b"this is not sqlite, a technician copied a log over it\n" * 200)
    await asyncio.to_thread(Path(str(db) + "-wal").write_bytes, b"junk wal")
    with caplog.at_level(logging.CRITICAL):
        box = await Outbox.open(db, CFG, ["orion"])
    moved = _aside(db)
    assert moved.read_bytes().startswith(b"this is not sqlite")
    assert await asyncio.to_thread(Path(str(moved) + "-wal").read_bytes) == b"junk wal"
    [message] = caplog.messages
    assert message.startswith(f"buffer: database {db} is damaged (file is not a database); moved it to {moved}")
    stats = await box.stats()
    assert (stats.rows, stats.recovered_from) == (0, str(moved))
    await box.append(reading(1))
    assert ns(await box.read("orion", 5)) == [1]
    await box.close()


async def test_a_damaged_block_inside_a_real_buffer_is_detected_and_salvaged(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    box = await Outbox.open(db, CFG, ["orion"])
    await box.append_many([reading(i, pad=200) for i in range(3000)])
    await box.close()
    data = bytearray(db.read_bytes())
    assert len(data) > 40 * 4096
    data[20 * 4096 : 24 * 4096] = b"\xa5" * (4 * 4096)  # a flash block gone bad in the middle
    db.write_bytes(bytes(data))
    box = await Outbox.open(db, CFG, ["orion"])
    moved = _aside(db)
    assert moved.stat().st_size == len(data)
    stats = await box.stats()
    assert stats.recovered_from == str(moved)
    assert stats.salvage is not None and stats.salvage.lost_rows is not None
    assert 2900 < stats.rows == stats.salvage.saved_rows == 3000 - stats.salvage.lost_rows
    survivors = ns(await box.read("orion", 5000))
    assert survivors == sorted(survivors) and len(survivors) == stats.rows
    await box.close()
    # the fresh file is healthy: opening again moves nothing aside and salvages nothing more
    box = await Outbox.open(db, CFG, ["orion"])
    assert (await box.stats()).salvage == stats.salvage
    await box.close()
    assert _aside(db) == moved


async def test_disk_full_fails_the_group_keeps_what_was_committed_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    box = await Outbox.open(db, CFG, ["orion"], max_page_count=160)  # 160 KiB of 1 KiB pages (schema.PAGE_SIZE)
    committed = 0

    async def append_until_full() -> None:
        nonlocal committed
        for i in range(1000):
            await box.append_many([reading(i * 10 + k, pad=300) for k in range(10)])
            committed += 10

    with pytest.raises(BufferFull) as err:
        await append_until_full()
    assert str(err.value) == (
        f"buffer: disk full while committing 10 readings, got OperationalError('database or disk is full') on {db}; "
        f"free space in {tmp_path}, appends work again once there is room"
    )
    assert committed > 100
    stats = await box.stats()
    assert stats.rows == committed
    # the gateway keeps running: delivering frees pages, then appends work again
    seen = []
    while batch := await box.read("orion", 50):
        seen += ns(batch)
        await box.ack("orion", batch, [DELIVERED] * len(batch))
    assert seen == list(range(committed))
    await box.append_many([reading(100_000 + k, pad=300) for k in range(10)])
    assert ns(await box.read("orion", 50)) == list(range(100_000, 100_010))
    await box.close()
