"""Rows handed to the uplinks before their commit: served at once, never passed in the file before they
are committed, never lost across kill -9 (at most sent twice), and their seqs are never used again."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.buffer import store as store_module
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.schema import connect
from gateway.buffer.store import Row, Store
from gateway.uplinks.api import DELIVERED, Outcome, Status
from tests.buffer.readings import ns, reading

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
# a group is committed 250 ms after its last row: the time to look at it uncommitted
SLOW = BufferConfig(durability=Durability.FULL, commit_interval_ms=1000, commit_quiet_ms=250)


def file_cursor(db: Path, uplink: str = "orion") -> list[int]:
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    try:
        cur = [0, 0, 0]
        for lane, seq in conn.execute("SELECT lane, seq FROM cursors WHERE uplink = ?", (uplink,)):
            cur[lane] = seq
        return cur
    finally:
        conn.close()


def stored_seqs(db: Path) -> list[int]:
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
    try:
        return [seq for (seq,) in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    finally:
        conn.close()


async def test_rows_are_served_before_their_commit_and_the_file_cursor_waits_for_it(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    box = await Outbox.open(db, SLOW, ["orion"])
    committed = box.append_many([reading(i) for i in range(3)])
    await committed
    batch = await box.read("orion", 10)
    await box.ack("orion", batch, [DELIVERED] * 3)
    pending = box.append_many([reading(i) for i in range(3, 6)])
    early = await box.read("orion", 10)
    assert ns(early) == [3, 4, 5] and [r.seq for r in early] == [4, 5, 6]
    assert not asyncio.ensure_future(pending).done()  # handed out, not committed
    await box.ack("orion", early, [DELIVERED] * 3)
    await box.stats()  # writes the cursors held in memory, as far as the file allows
    assert file_cursor(db)[1] == 3  # not past rows the file does not have yet
    assert stored_seqs(db) == []  # the committed rows were passed and deleted; the others are not there yet
    await pending
    await box.stats()
    assert file_cursor(db)[1] == 6
    assert await box.read("orion", 10) == []
    await box.close()


def test_kill_9_after_delivering_uncommitted_rows_loses_nothing_and_reuses_no_seq(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.buffer.handed_out", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    committed_line = proc.stdout.readline().decode().split()
    handed_line = proc.stdout.readline().decode().split()
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=10)
    assert committed_line[:1] == ["committed"], err.decode()
    committed = [int(x) for x in committed_line[1:]]
    assert handed_line[0] == "handed-out" and handed_line[-1] == "pending", handed_line
    handed_out = [int(x) for x in handed_line[1:-1]]
    assert committed == [1, 2, 3, 4, 5] and handed_out == [6, 7, 8, 9, 10]
    # the file never passed what it did not have: the committed rows are passed, nothing beyond
    assert file_cursor(db)[1] == 5
    assert all(seq <= 5 for seq in stored_seqs(db))

    async def after_restart() -> list[int]:
        box = await Outbox.open(db, SLOW, ["orion"])
        try:
            assert await box.read("orion", 10) == []  # nothing acknowledged to a source is missing
            await box.append_many([reading(i) for i in range(5, 10)])  # the device sends them again
            return [r.seq or 0 for r in await box.read("orion", 10)]
        finally:
            await box.close()

    again = asyncio.run(after_restart())
    assert len(again) == 5 and min(again) > max(handed_out)  # delivered twice at most, under new seqs


async def test_a_dead_letter_requeued_by_another_process_waits_behind_uncommitted_rows(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    box = await Outbox.open(db, SLOW, ["orion"])
    await box.append_many([reading(0)])
    batch = await box.read("orion", 10)
    await box.ack("orion", batch, [Outcome(Status.REJECTED, "400 bad value")])
    pending = box.append_many([reading(1), reading(2)])
    assert [r.seq for r in await box.read("orion", 10)] == [2, 3]  # handed out before their commit

    def requeue() -> int:  # what `edgegw buffer retry-dead-letters` does from its own process
        conn = connect(db, durability=None)
        try:
            return Store(conn, path=db, config=SLOW, uplinks=None).retry_dead_letters("orion", None)
        finally:
            conn.close()

    assert await asyncio.to_thread(requeue) == 1
    await box.stats()  # the gateway notices the other process's rows
    # the copy got a seq past every seq the gateway may have handed out, and is not read before rows 2-3
    assert await box.read("orion", 10) == []
    await pending
    got = await box.read("orion", 10)
    assert ns(got) == [1, 2, 0]
    assert got[2].seq is not None and got[2].seq > 3
    await box.close()


async def test_a_reading_appended_while_the_gateway_requeues_a_dead_letter_does_not_pass_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The web UI's "retry" runs in the gateway, on the writer thread, while readings keep coming.
    # A reading appended between the re-queue taking its seqs and its commit lies past the copy; an
    # uplink that is keeping up reads it from memory, and its cursor must not pass the copy.
    box = await Outbox.open(tmp_path / "b.db", SLOW, ["orion"])
    await box.append_many([reading(0)])
    batch = await box.read("orion", 10)
    await box.ack("orion", batch, [Outcome(Status.REJECTED, "400 bad value")])
    await box.append_many([reading(1)])
    batch = await box.read("orion", 10)
    await box.ack("orion", batch, [DELIVERED])  # caught up: the uplink reads from memory

    inserting, go_on = threading.Event(), threading.Event()
    real_insert = store_module._insert_rows_at

    def held_insert(conn: sqlite3.Connection, first: int, rows: Sequence[Row], block: int) -> None:
        if rows and rows[0][6] is not None:  # the re-queue's rows (targeted at one uplink)
            inserting.set()
            go_on.wait(10)  # the INSERT and the commit's fsync, stretched
        real_insert(conn, first, rows, block)

    monkeypatch.setattr(store_module, "_insert_rows_at", held_insert)
    retry = asyncio.ensure_future(box.retry_dead_letters("orion"))
    assert await asyncio.to_thread(inserting.wait, 10)
    live = box.append_many([reading(2)])
    first_read = asyncio.ensure_future(box.read("orion", 10))
    await asyncio.sleep(0.05)  # served from memory, it would be back by now
    go_on.set()
    delivered: list[int] = []
    batch = await first_read
    for _ in range(50):
        await box.ack("orion", batch, [DELIVERED] * len(batch))
        delivered += ns(batch)
        if len(delivered) >= 2:
            break
        await asyncio.sleep(0.02)
        batch = await box.read("orion", 10)
    assert delivered == [0, 2]  # the copy first, and not passed by the reading that came after it
    assert await retry == 1
    await live
    assert (await box.stats()).rows == 0
    await box.close()
