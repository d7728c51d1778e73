"""Acknowledgements held in memory and written at the next settle (issue 18: flash wear), and the file's pragmas.

Each test looks at the file through a second SQLite connection, as the CLI or a restart would.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.schema import PAGE_SIZE, WAL_BYTES
from gateway.records import Lane
from gateway.uplinks.api import DELIVERED, Outcome, Status
from tests.buffer.readings import ns, reading

CFG = BufferConfig(durability=Durability.FULL, commit_interval_ms=1, ack_write_interval_ms=1000)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def on_file(db: Path) -> tuple[dict[int, int], int, dict[str, int]]:
    """(the cursors of uplink "orion" per lane, rows, counters) as the file has them."""
    conn = sqlite3.connect(db)
    try:
        cursors = dict(conn.execute("SELECT lane, seq FROM cursors WHERE uplink = 'orion'").fetchall())
        (rows,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
    finally:
        conn.close()
    return cursors, rows, counters


async def test_an_ack_moves_the_cursor_at_once_and_reaches_the_file_with_the_next_append_once_due(
    tmp_path: Path,
) -> None:
    db, clock = tmp_path / "b.db", Clock()
    box = await Outbox.open(db, CFG, ["orion"], clock=clock)
    await box.append_many([reading(i) for i in range(10)])
    batch = await box.read("orion", 10)
    await box.ack("orion", batch, [DELIVERED] * 10)
    assert await box.read("orion", 10) == []  # delivered: not read again by this process
    cursors, rows, counters = on_file(db)
    assert (cursors[Lane.NORMAL], rows) == (0, 10)  # not written: a crash now repeats these ten
    assert "appended" not in counters  # the hot counters wait for the settle too

    await box.append(reading(10))  # within the interval: the append's commit carries nothing else
    assert on_file(db)[0][Lane.NORMAL] == 0
    clock.now += 1.0
    await box.append(reading(11))  # due: the cursor, the deletes and the counts ride on this commit
    cursors, rows, counters = on_file(db)
    assert (cursors[Lane.NORMAL], rows) == (10, 2)
    assert (counters["appended"], counters["commits"]) == (11, 2)
    assert ns(await box.read("orion", 10)) == [10, 11]
    await box.close()


async def test_a_restart_before_the_settle_delivers_again_and_loses_nothing(tmp_path: Path) -> None:
    db, clock = tmp_path / "b.db", Clock()
    first = await Outbox.open(db, CFG, ["orion"], clock=clock)
    await first.append_many([reading(i) for i in range(6)])
    batch = await first.read("orion", 4)
    await first.ack("orion", batch, [DELIVERED] * 4)
    # a second process opening the file now sees it as a restart after kill -9 would: the cursor before the ack
    second = await Outbox.open(db, CFG, ["orion"], clock=clock)
    assert ns(await second.read("orion", 10)) == [0, 1, 2, 3, 4, 5]  # duplicates, none lost
    await second.close()
    await first.close()


async def test_close_writes_what_is_held(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    box = await Outbox.open(db, CFG, ["orion"], clock=Clock())
    await box.append_many([reading(i) for i in range(5)])
    batch = await box.read("orion", 3)
    await box.ack("orion", batch, [DELIVERED] * 3)
    await box.close()
    cursors, rows, counters = on_file(db)
    assert (cursors[Lane.NORMAL], rows, counters["appended"]) == (3, 2, 5)


async def test_stats_write_what_is_held_first(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    box = await Outbox.open(db, CFG, ["orion"], clock=Clock())
    await box.append_many([reading(i) for i in range(5)])
    batch = await box.read("orion", 5)
    await box.ack("orion", batch, [DELIVERED] * 5)
    stats = await box.stats()
    assert (stats.rows, stats.appended_total, stats.uplinks["orion"].cursors["normal"]) == (0, 5, 5)
    assert on_file(db)[:2] == ({0: 0, 1: 5, 2: 0}, 0)
    await box.close()


async def test_dead_letters_go_to_the_file_at_once_with_every_cursor_moved_so_far(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    box = await Outbox.open(db, CFG, ["orion"], clock=Clock())
    await box.append_many([reading(i) for i in range(4)])
    batch = await box.read("orion", 2)
    await box.ack("orion", batch, [DELIVERED] * 2)
    batch = await box.read("orion", 2)
    await box.ack("orion", batch, [DELIVERED, Outcome(Status.REJECTED, "400 bad attribute")])
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT seq, reason FROM dead_letters").fetchall() == [(4, "400 bad attribute")]
    finally:
        conn.close()
    assert on_file(db)[:2] == ({0: 0, 1: 4, 2: 0}, 0)
    await box.close()


async def test_interval_zero_writes_each_ack_in_its_own_commit(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    cfg = CFG.model_copy(update={"ack_write_interval_ms": 0})
    box = await Outbox.open(db, cfg, ["orion"], clock=Clock())
    await box.append_many([reading(i) for i in range(3)])
    batch = await box.read("orion", 3)
    await box.ack("orion", batch, [DELIVERED] * 3)
    assert on_file(db)[:2] == ({0: 0, 1: 3, 2: 0}, 0)
    await box.close()


async def test_near_the_caps_acks_are_written_at_once_to_free_their_room(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    cfg = CFG.model_copy(update={"max_rows": 1000})
    box = await Outbox.open(db, cfg, ["orion"], clock=Clock())
    await box.append_many([reading(i, "a", Lane.ALERT) for i in range(950)])  # 95 % of max_rows
    batch = await box.read("orion", 10)
    await box.ack("orion", batch, [DELIVERED] * 10)
    assert on_file(db)[1] == 940
    await box.close()


async def test_a_new_file_gets_small_pages_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    new = await Outbox.open(tmp_path / "new.db", CFG, ["orion"])
    await new.close()
    old_db = tmp_path / "old.db"
    conn = sqlite3.connect(old_db)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    old = await Outbox.open(old_db, CFG, ["orion"])
    await old.append(reading(1))
    await old.close()
    sizes = []
    for db in (tmp_path / "new.db", old_db):
        conn = sqlite3.connect(db)
        sizes.append(conn.execute("PRAGMA page_size").fetchone()[0])
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    assert sizes == [PAGE_SIZE, 4096]
    assert (PAGE_SIZE, WAL_BYTES) == (1024, 16 * 1024 * 1024)


def _rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM outbox ORDER BY seq").fetchall()
    finally:
        conn.close()


def _wal_frames(db: Path) -> int:
    return (db.with_name(db.name + "-wal").stat().st_size - 32) // (24 + PAGE_SIZE)


async def test_a_settle_that_leaves_few_rows_clears_the_table_and_puts_them_back_unchanged(tmp_path: Path) -> None:
    """Many delivered, a few pending in each lane (one re-queued for this uplink alone): the pending
    rows keep their seqs, bodies and targets, the delivered are gone, and the settle wrote a small
    share of the pages the delivered rows took (one by one, the deletes rewrote about half of them)."""
    db, clock = tmp_path / "b.db", Clock()
    box = await Outbox.open(db, CFG, ["orion", "other"], clock=clock)
    await box.append_many([reading(i, "a", Lane.ALERT, pad=150) for i in range(300)])
    await box.append_many([reading(1000 + i, pad=150) for i in range(600)])
    await box.append_many([reading(2000 + i, "b", Lane.BULK, pad=150) for i in range(10)])
    batch = await box.read("other", 880)  # 300 alert, 580 normal
    # a dead letter is written at once (orion's cursors still at 0: nothing deleted), then re-queued
    await box.ack("other", batch, [DELIVERED] * 879 + [Outcome(Status.REJECTED, "400 bad")])
    assert await box.retry_dead_letters("other") == 1  # the last normal row again, for "other" alone
    await box.ack("orion", await box.read("orion", 880), [DELIVERED] * 880)  # held until the settle
    before = _rows(db)
    assert len(before) == 911
    frames = _wal_frames(db)
    clock.now += 1.0
    await box.append(reading(3000))  # the settle rides on this commit
    after = _rows(db)
    assert [r for r in before if r[0] > 880] == after[:-1]  # 20 normal, 10 bulk, the re-queued one
    assert [r[0] for r in after] == [*range(881, 911), 911, 912]
    assert after[-2][7] == "other" and after[-1][7] is None
    assert _wal_frames(db) - frames < 880 // 4 // 4  # the delivered rows took ~220 pages
    assert ns(await box.read("orion", 100)) == [*range(1580, 1600), 3000, *range(2000, 2010)]
    assert ns(await box.read("other", 100)) == [*range(1580, 1600), 1579, 3000, *range(2000, 2010)]
    stats = await box.stats()
    assert (stats.rows, stats.rows_per_lane) == (32, {"alert": 0, "normal": 22, "bulk": 10})
    await box.close()


async def test_a_settle_that_leaves_many_rows_deletes_the_delivered_ones_alone(tmp_path: Path) -> None:
    db, clock = tmp_path / "b.db", Clock()
    box = await Outbox.open(db, CFG, ["orion"], clock=clock)
    await box.append_many([reading(i, pad=150) for i in range(300)])
    await box.ack("orion", await box.read("orion", 100), [DELIVERED] * 100)
    before = _rows(db)
    clock.now += 1.0
    await box.append(reading(300))
    assert _rows(db)[:-1] == before[100:]
    assert len(await box.read("orion", 1000)) == 201
    await box.close()
