"""Outbox behaviour against a real SQLite file: lanes, acks, cursors, dead letters, waits, restarts."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable
from pathlib import Path

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.schema import open_database
from gateway.buffer.store import Store, insert_block_rows
from gateway.errors import BufferError
from gateway.records import Lane, encode_reading
from gateway.uplinks.api import DELIVERED, Outcome, Status
from tests.buffer.readings import ns, reading

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)

RETRY = Outcome(Status.RETRY)
CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1)


async def test_alert_is_read_before_a_bulk_backlog_and_reread_until_acked(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    await box.append_many([reading(i, f"bulk{i % 3}", Lane.BULK) for i in range(2000)])
    await box.append(reading(5000, "river", Lane.NORMAL))
    await box.append(reading(9999, "alarm", Lane.ALERT))
    first = await box.read("orion", 3)
    assert ns(first) == [9999, 5000, 0]
    assert [r.lane for r in first] == [Lane.ALERT, Lane.NORMAL, Lane.BULK]
    assert first[0].seq == 2002 and first[2].seq == 1
    again = await box.read("orion", 3)
    assert again == first
    await box.close()


async def test_retry_stops_only_its_own_lane_and_later_rows_come_again(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    await box.append_many(
        [reading(i, "n", Lane.NORMAL) for i in range(4)] + [reading(10 + i, "b", Lane.BULK) for i in range(2)]
    )
    batch = await box.read("orion", 10)
    assert ns(batch) == [0, 1, 2, 3, 10, 11]
    # normal: delivered, retry, delivered, delivered -> only row 0 passed; bulk both delivered
    await box.ack("orion", batch, [DELIVERED, RETRY, DELIVERED, DELIVERED, DELIVERED, DELIVERED])
    assert ns(await box.read("orion", 10)) == [1, 2, 3]
    stats = await box.stats()
    assert stats.uplinks["orion"].cursors == {"alert": 0, "normal": 1, "bulk": 6}
    assert stats.uplinks["orion"].pending == {"alert": 0, "normal": 3, "bulk": 0}
    assert stats.rows == 3  # the only uplink passed the others, so they are deleted
    await box.close()


async def test_rejected_rows_become_dead_letters_and_retry_requeues_for_that_uplink_only(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion", "mqtt"])
    await box.append_many([reading(i) for i in range(3)])
    batch = await box.read("orion", 10)
    bad = Outcome(Status.REJECTED, "400 BadRequest: Invalid characters in attribute value")
    await box.ack("orion", batch, [DELIVERED, bad, RETRY])
    letters = await box.dead_letters("orion")
    assert [(d.uplink, d.seq, d.lane, d.entity_id, d.reason) for d in letters] == [
        ("orion", 2, "normal", "e1", "400 BadRequest: Invalid characters in attribute value")
    ]
    assert letters[0].reading.attributes["n"].value == 1
    assert await box.dead_letters("mqtt") == []
    assert (await box.stats()).dead_letters == {"orion": 1}

    assert await box.retry_dead_letters("orion") == 1
    assert await box.dead_letters() == []
    orion = await box.read("orion", 10)
    assert ns(orion) == [2, 1]  # row 2 was a RETRY; the re-queued row comes after it with a new seq
    assert orion[1].seq == 4
    assert ns(await box.read("mqtt", 10)) == [0, 1, 2]  # mqtt never sees the re-queued copy
    await box.close()


async def test_two_uplinks_move_independently_and_rows_go_once_both_passed(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion", "mqtt"])
    await box.append_many([reading(i) for i in range(10)])
    for _ in range(2):
        batch = await box.read("orion", 5)
        await box.ack("orion", batch, [DELIVERED] * len(batch))
    assert await box.read("orion", 5) == []
    assert not await box.wait("orion", 0.01)
    stats = await box.stats()
    assert stats.rows == 10  # mqtt never acknowledged
    assert stats.uplinks["mqtt"].pending["normal"] == 10
    batch = await box.read("mqtt", 4)
    await box.ack("mqtt", batch, [DELIVERED] * 4)
    assert (await box.stats()).rows == 6
    await box.close()


async def test_cursors_survive_a_restart_and_a_removed_uplink_is_forgotten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With removed_uplink_keep_days = 0: at once (test_removed_uplink.py: kept for the period by default)."""
    db = tmp_path / "b.db"
    box = await Outbox.open(db, CFG, ["orion", "old"])
    await box.append_many([reading(i) for i in range(6)])
    batch = await box.read("orion", 4)
    await box.ack("orion", batch, [DELIVERED] * 4)
    await box.close()

    with caplog.at_level(logging.WARNING):
        box = await Outbox.open(db, CFG.model_copy(update={"removed_uplink_keep_days": 0}), ["orion", "fresh"])
    assert "buffer: uplink old is no longer configured; dropped its cursors" in caplog.messages
    assert ns(await box.read("orion", 10)) == [4, 5]
    assert ns(await box.read("fresh", 10)) == [0, 1, 2, 3, 4, 5]  # a new uplink starts at the oldest row
    # "old" no longer holds rows back: once "fresh" passes, orion's acked rows go
    batch = await box.read("fresh", 4)
    await box.ack("fresh", batch, [DELIVERED] * 4)
    assert (await box.stats()).rows == 2
    with pytest.raises(BufferError) as err:
        await box.read("old", 1)
    assert str(err.value) == "buffer: unknown uplink, got 'old'; configured: orion, fresh"
    await box.close()


async def test_seq_keeps_rising_after_every_row_was_deleted_and_reopened(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    box = await Outbox.open(db, CFG, ["orion"])
    await box.append_many([reading(i) for i in range(3)])
    batch = await box.read("orion", 10)
    await box.ack("orion", batch, [DELIVERED] * 3)
    await box.close()
    box = await Outbox.open(db, CFG, ["orion"])
    await box.append(reading(7))
    fresh = await box.read("orion", 10)
    assert [(r.seq, r.attributes["n"].value) for r in fresh] == [(4, 7)]
    await box.close()


async def test_wait_is_woken_by_a_commit(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(commit_interval_ms=20), ["orion"])
    assert not await box.wait("orion", 0.05)
    waiter = asyncio.create_task(box.wait("orion", 10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await box.append(reading(1))
    assert await waiter
    assert loop.time() - t0 < 1
    await box.close()


async def test_a_nudge_ends_a_wait_at_once_and_says_nothing_came(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    waiter = asyncio.create_task(box.wait("orion", 10))
    await asyncio.sleep(0.02)
    assert not waiter.done()
    box.nudge("orion")
    async with asyncio.timeout(1):
        assert await waiter is False
    box.nudge("orion")  # nobody waiting: nothing happens, and the next wait still waits
    assert not await box.wait("orion", 0.02)
    await box.close()


async def test_woken_waits_only_for_the_wake_up_of_rows_appended_since_the_last_one(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(commit_interval_ms=50), ["orion"])
    assert not box.wake_pending(1)
    await box.woken()  # nothing pending: done at once
    first = box.append_many([reading(1)])  # seq 1: its wake-up comes within 10 ms
    assert box.wake_pending(1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await box.woken()
    assert loop.time() - t0 < 1
    assert not box.wake_pending(1)  # woken for already: a delivery loop sends it at once
    later = box.append_many([reading(2)])
    assert box.wake_pending(2) and not box.wake_pending(1)
    await asyncio.gather(first, later)
    await box.close()


async def test_uplinks_wake_at_once_after_a_quiet_spell_and_once_in_10_ms_under_load(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(commit_interval_ms=50), ["orion"])
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(box.wait("orion", 5))
    await asyncio.sleep(0)
    first = box.append_many([reading(1), reading(2)])  # a burst after a quiet spell
    for _ in range(3):
        await asyncio.sleep(0)  # loop turns, not 10 ms
    assert waiter.done() and waiter.result() is True
    woke = loop.time()
    later = box.append_many([reading(3)])  # within 10 ms of that wake-up: it waits for the next one
    assert box.wake_pending(3)
    await box.woken()
    assert loop.time() - woke >= 0.005  # ~10 ms after the last wake-up, not at once
    await asyncio.gather(first, later)
    await box.close()


async def test_one_cancelled_appender_does_not_cancel_its_group(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", BufferConfig(commit_interval_ms=50), ["orion"])

    async def emit(n: int) -> None:
        await box.append(reading(n))

    tasks = [asyncio.create_task(emit(n)) for n in range(5)]
    await asyncio.sleep(0)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [None] * 4
    assert ns(await box.read("orion", 10)) == [0, 1, 2, 3, 4]  # the cancelled one was committed too
    stats = await box.stats()
    assert stats.commits_total == 1
    await box.close()


async def test_large_append_many_is_split_into_bounded_commits(tmp_path: Path) -> None:
    cfg = BufferConfig(durability=Durability.NORMAL, commit_max_rows=100)
    box = await Outbox.open(tmp_path / "b.db", cfg, ["orion"])
    await box.append_many([reading(i) for i in range(250)])
    stats = await box.stats()
    assert (stats.appended_total, stats.commits_total) == (250, 3)
    await box.close()


async def test_ack_needs_one_outcome_per_reading_and_close_refuses_more_work(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    await box.append(reading(1))
    batch = await box.read("orion", 10)
    with pytest.raises(BufferError) as err:
        await box.ack("orion", batch, [])
    assert str(err.value) == "buffer: ack for orion needs one outcome per reading, got 0 outcomes for 1 readings"
    await box.close()
    with pytest.raises(BufferError) as err2:
        box.append(reading(2))
    assert str(err2.value) == "buffer: closed, got an append of 1 readings"


@pytest.mark.parametrize("variable_limit", [999, 32_766, 100], ids=["sqlite-before-3.32", "sqlite-3.32+", "tiny"])
def test_groups_of_any_size_go_in_as_blocks_in_order_with_consecutive_seqs(tmp_path: Path, variable_limit: int) -> None:
    # a group is inserted as power-of-two blocks that fit the build's variable limit; what comes
    # back must be every row, in order, with the seqs of one AUTOINCREMENT run
    conn = open_database(tmp_path / "b.db", durability=Durability.NORMAL).conn
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variable_limit)
    block = insert_block_rows(conn)
    assert block * 7 <= variable_limit and block & (block - 1) == 0
    assert block == {999: 128, 32_766: 1024, 100: 8}[variable_limit]
    store = Store(conn, path=tmp_path / "b.db", config=CFG, uplinks=["orion"], tail_rows=0)
    n = 0
    for size in (1, 7, 8, 9, block - 1, block, block + 1, 3 * block + 5, 2000):
        group = [reading(n + i) for i in range(size)]
        rows = [(1, r.entity_id, 0, 0, len(body), body, None) for r in group for body in [encode_reading(r)]]
        store.insert(rows, [0, size, 0], [0, sum(row[4] for row in rows), 0], group)
        n += size
    got = store.read("orion", n + 1)
    assert ns(got) == list(range(n))
    assert [r.seq for r in got] == list(range(1, n + 1))
    assert store.counters["appended"] == n and store.counters["commits"] == 9
    conn.close()


@pytest.mark.parametrize(("interval_s", "quiet_s"), [(1.0, 0.25), (0.4, 1.0)])
async def test_a_lone_reading_is_committed_after_the_quiet_time_a_stream_fills_the_window(
    tmp_path: Path, interval_s: float, quiet_s: float
) -> None:
    """commit_interval_ms bounds a group; commit_quiet_ms with nothing new ends it early (sparse readings
    are not held for flash wear that only a stream saves), and is never longer than the interval.
    Wide margins: the VM is noisy."""
    config = BufferConfig(
        durability=Durability.NORMAL, commit_interval_ms=interval_s * 1000, commit_quiet_ms=quiet_s * 1000
    )
    quiet = min(quiet_s, interval_s)
    box = await Outbox.open(tmp_path / "b.db", config, ["orion"])
    loop = asyncio.get_running_loop()
    try:
        t0 = loop.time()
        await box.append(reading(1, "lone"))
        lone = loop.time() - t0
        assert quiet * 0.9 <= lone < quiet + 0.5 * interval_s, lone
        before = (await box.stats()).commits_total
        t0 = loop.time()
        pending: list[Awaitable[None]] = []
        while loop.time() - t0 < interval_s * 0.6:  # a new row every 50 ms: never a quiet gap
            pending.append(box.append(reading(len(pending) + 2, "stream")))
            await asyncio.sleep(0.05)
        await asyncio.gather(*pending)
        assert (await box.stats()).commits_total - before == 1  # one group held them all
    finally:
        await box.close()


async def test_seal_commits_the_open_group_without_waiting_for_its_quiet_time(tmp_path: Path) -> None:
    """An appender whose source waits for this commit (a full MQTT receive window) seals the group."""
    box = await Outbox.open(
        tmp_path / "b.db",
        BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1000, commit_quiet_ms=250),
        ["orion"],
    )
    loop = asyncio.get_running_loop()
    try:
        t0 = loop.time()
        first = box.append_many([reading(i, f"s{i}") for i in range(3)])
        box.seal()
        await first
        assert loop.time() - t0 < 0.2  # the quiet time without new rows is 250 ms
        later = box.append(reading(4, "after"))  # a new group: the sealed one takes no more rows
        box.seal()
        await later
        assert (await box.stats()).commits_total == 2
        box.seal()  # nothing open: a no-op
        assert [r.entity_id for r in await box.read("orion", 10)] == ["s0", "s1", "s2", "after"]
    finally:
        await box.close()
