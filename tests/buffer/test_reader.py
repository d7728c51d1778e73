"""BufferReader: the web's read-only view, read while a gateway's outbox writes (WAL); and discarding dead letters."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.reader import BufferReader
from gateway.errors import BufferError, BufferUnavailable
from gateway.records import Lane
from gateway.uplinks.api import DELIVERED, Outcome, Status
from tests.buffer.readings import reading

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1)
BAD = Outcome(Status.REJECTED, "400 BadRequest: Invalid characters in attribute value")


async def _dead_letters(box: Outbox, n: int) -> None:
    await box.append_many([reading(i, f"bad{i}") for i in range(n)])
    batch = await box.read("orion", n)
    await box.ack("orion", batch, [BAD] * n)


async def test_discard_deletes_only_the_ids_given_of_that_uplink(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion", "mqtt"])
    await _dead_letters(box, 4)
    ids = [d.id for d in await box.dead_letters("orion")]
    assert await box.discard_dead_letters("mqtt", ids) == 0
    assert await box.discard_dead_letters("orion", ids[1:3]) == 2
    assert [d.entity_id for d in await box.dead_letters()] == ["bad0", "bad3"]
    assert await box.discard_dead_letters(None, [ids[0], 999]) == 1
    assert await box.discard_dead_letters("orion", []) == 0
    with pytest.raises(BufferError) as unknown:
        await box.discard_dead_letters("kintone", ids)
    assert str(unknown.value).startswith("buffer: unknown uplink")
    assert (await box.stats()).dead_letters == {"orion": 1}
    assert [d.entity_id for d in await box.dead_letters(offset=0, limit=5)] == ["bad3"]
    await box.close()


async def test_the_reader_sees_committed_state_while_the_outbox_writes(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    box = await Outbox.open(path, CFG, ["orion", "mqtt"])
    reader = BufferReader(path)
    try:
        await _dead_letters(box, 3)
        stop = asyncio.Event()
        appended = 0

        async def write() -> None:
            nonlocal appended
            while not stop.is_set():
                await box.append_many([reading(1000 + appended + i, "w", Lane.BULK) for i in range(200)])
                appended += 200

        writer = asyncio.create_task(write())
        seen: list[int] = []
        for _ in range(30):
            backlog = await reader.backlog()
            seen.append(backlog["mqtt"]["bulk"])
            assert await reader.dead_letter_count("orion") == 3
            await asyncio.sleep(0.005)
        stop.set()
        await writer
        assert seen == sorted(seen) and seen[-1] > seen[0]  # it follows the writer, never goes back
        letters = await reader.dead_letters("orion", limit=2, offset=1)
        assert [(d.entity_id, d.reason, d.lane) for d in letters] == [
            ("bad1", "400 BadRequest: Invalid characters in attribute value", "normal"),
            ("bad2", "400 BadRequest: Invalid characters in attribute value", "normal"),
        ]
        assert await reader.dead_letter_count() == 3 and await reader.dead_letter_count("mqtt") == 0
        final = await reader.backlog()
        assert final == {
            "mqtt": {"alert": 0, "normal": 3, "bulk": appended},
            "orion": {"alert": 0, "normal": 0, "bulk": appended},
        }
        batch = await box.read("orion", 10)
        await box.ack("orion", batch, [DELIVERED] * len(batch))
        assert (await reader.backlog())["orion"]["bulk"] == appended - 10
    finally:
        await reader.close()
        await box.close()


async def test_the_reader_cannot_write_and_says_when_there_is_no_buffer(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    box = await Outbox.open(path, CFG, ["orion"])
    await _dead_letters(box, 1)
    reader = BufferReader(path)
    try:
        conn = await asyncio.to_thread(reader._connect)
        with pytest.raises(sqlite3.OperationalError, match=r"^attempt to write a readonly database$"):
            await asyncio.to_thread(conn.execute, "DELETE FROM dead_letters")
        assert await reader.dead_letter_count() == 1
    finally:
        await reader.close()
        await box.close()
    missing = BufferReader(tmp_path / "none" / "buffer.db")
    with pytest.raises(BufferUnavailable) as unavailable:
        await missing.dead_letters()
    await missing.close()
    assert str(unavailable.value) == (
        f"buffer {tmp_path / 'none' / 'buffer.db'}: cannot be read, got unable to open database file; "
        "is the gateway running and this user in its group?"
    )
    assert not await asyncio.to_thread(os.path.exists, tmp_path / "none")  # nothing created


async def test_the_buffer_files_are_group_readable_for_the_web_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)  # systemd's UMask= for the gateway
    try:
        box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
        await box.append(reading(1))
        modes = {
            name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)
            for name in ("b.db", "b.db-wal", "b.db-shm")
            if await asyncio.to_thread(os.path.exists, tmp_path / name)
        }
        await box.close()
    finally:
        os.umask(old)
    assert sorted(modes) == ["b.db", "b.db-shm", "b.db-wal"]
    assert set(modes.values()) == {0o640}
