"""A damaged buffer file is salvaged into a fresh one: readable rows with their seqs, cursors, dead letters.

The oracle is SQLite itself, asked independently of the salvage: a row that a plain
`SELECT … WHERE seq = ?` on the damaged file returns unchanged must be in the fresh buffer.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import io
import logging
import os
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.buffer import cli
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.schema import open_database
from gateway.records import Lane, Reading
from gateway.uplinks.api import DELIVERED, Outcome, Status
from tests.buffer.readings import ns, reading

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, reserve_bytes=0)
COLUMNS = "seq, lane, entity_id, observed_us, appended_ms, size, body, target"
LANE_OF = {"alarm": Lane.ALERT, "river-1": Lane.NORMAL, "river-2": Lane.NORMAL, "door": Lane.BULK}
REJECT = Outcome(Status.REJECTED, "400 BadRequest: Invalid characters in attribute value")


async def build(db: Path, n: int) -> dict[str, Any]:
    """A real buffer of `n` readings in three lanes, two uplinks (one partly delivered), dead letters."""
    box = await Outbox.open(db, CFG, ["orion", "mqtt"])
    entities = list(LANE_OF)
    for start in range(0, n, 2000):
        await box.append_many(
            [reading(i, entities[i % 4], LANE_OF[entities[i % 4]], pad=200) for i in range(start, min(n, start + 2000))]
        )
    batch = await box.read("orion", 300)  # orion delivered the alerts and some normal rows, rejected two
    outcomes = [REJECT if i in (5, 17) else DELIVERED for i in range(len(batch))]
    await box.ack("orion", batch, outcomes)
    stats = await box.stats()
    letters = [(d.id, d.seq, d.reason) for d in await box.dead_letters(limit=10)]
    await box.close()
    return {
        "cursors": {u: dict(s.cursors) for u, s in stats.uplinks.items()},
        "letters": letters,
        "appended": stats.appended_total,
    }


def page_size(data: bytes) -> int:
    size = int.from_bytes(data[16:18], "big")
    return 65536 if size == 1 else size  # SQLite's encoding of the largest page size


def outbox_leaf_near(db: Path, page: int) -> int:
    """The number of the outbox table's leaf page nearest page `page` (SQLite's dbstat says which is which)."""
    conn = sqlite3.connect(db)
    try:
        pages = conn.execute("SELECT pageno FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf'")
        leaves = [int(p) for (p,) in pages]
    finally:
        conn.close()
    return min(leaves, key=lambda p: abs(p - page))


def readable(db: Path) -> dict[int, tuple[Any, ...]]:
    """Every outbox row a point query by seq still returns from `db` (read-only, errors skipped)."""
    out: dict[int, tuple[Any, ...]] = {}
    try:
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return out
    try:
        try:
            top = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0]
        except (sqlite3.Error, ValueError, TypeError):  # ValueError: text that is not UTF-8 any more
            top = 20_000
        for seq in range(1, top + 1):
            try:
                row = conn.execute(f"SELECT {COLUMNS} FROM outbox WHERE seq = ?", (seq,)).fetchone()
            except (sqlite3.Error, ValueError):
                continue
            if row is not None:
                out[seq] = row
    finally:
        conn.close()
    return out


def rows_of(conn: sqlite3.Connection) -> dict[int, tuple[Any, ...]]:
    return {row[0]: row for row in conn.execute(f"SELECT {COLUMNS} FROM outbox ORDER BY seq")}


async def test_one_damaged_page_in_20000_rows_loses_only_that_pages_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "buffer.db"
    before = await build(db, 20_000)
    conn = sqlite3.connect(db)
    original = rows_of(conn)
    conn.close()
    data = bytearray(db.read_bytes())
    size = page_size(bytes(data))
    pages = len(data) // size
    victim = outbox_leaf_near(db, pages // 2)
    data[(victim - 1) * size : victim * size] = bytes((i * 37 + 11) % 256 for i in range(size))  # garbage
    db.write_bytes(bytes(data))
    still = readable(db)
    assert 19_000 < len(still) < len(original)  # the oracle agrees one page's worth is gone
    damaged_copy = bytes(data)

    with caplog.at_level(logging.CRITICAL):
        box = await Outbox.open(db, CFG, ["orion", "mqtt"])
    [moved] = [
        tmp_path / n
        for n in await asyncio.to_thread(os.listdir, tmp_path)
        if re.fullmatch(r"buffer\.db\.corrupt-\d{8}T\d{6}", n)
    ]
    assert moved.read_bytes() == damaged_copy  # kept, untouched, for analysis
    lost = len(original) - len(still)
    assert caplog.messages == [
        (
            f"buffer: database {db} is damaged (database disk image is malformed); moved it to {moved} and salvaged "
            f"{len(still)} readings into a fresh buffer, {lost} could not be read (counted from the lane index); "
            "2 dead letters kept; the uplinks' cursors kept. Keep the damaged file for analysis"
        )
    ]
    stats = await box.stats()
    assert {u: dict(s.cursors) for u, s in stats.uplinks.items()} == before["cursors"]
    assert stats.rows == len(still)
    assert stats.appended_total == before["appended"]  # counters kept
    assert stats.recovered_from == str(moved)
    assert stats.salvage is not None
    assert (stats.salvage.saved_rows, stats.salvage.lost_rows, stats.salvage.lost_exact) == (len(still), lost, True)
    assert (stats.salvage.saved_dead_letters, stats.salvage.lost_dead_letters) == (2, 0)
    assert [(d.id, d.seq, d.reason) for d in await box.dead_letters(limit=10)] == before["letters"]
    # mqtt had delivered nothing: it reads every salvaged row, by lane, in seq order, as it was
    got: list[Reading] = []
    while batch := await box.read("mqtt", 5000, after=_after(got)):
        got += batch
    assert [r.seq for r in got] == sorted(still, key=lambda s: (still[s][1], s))
    assert all(r.attributes["n"].value == (r.seq or 0) - 1 for r in got)  # reading n was appended as seq n + 1
    # orion's cursors still mean what they meant: it reads on from where it was (it had delivered alerts)
    first = await box.read("orion", 1)
    alert_cursor = before["cursors"]["orion"]["alert"]
    assert alert_cursor > 1000
    assert first[0].seq == min(s for s, row in still.items() if row[1] == Lane.ALERT and s > alert_cursor)
    # new readings continue above every old seq
    await box.append(reading(99_999, "alarm", Lane.ALERT))
    newest = await box.read("mqtt", 1, after=_after(got))
    assert newest[0].seq == 20_001 and ns(newest) == [99_999]
    await box.close()
    # `edgegw buffer stats` shows it too, from another process's point of view
    parser = argparse.ArgumentParser(prog="edgegw")
    cli.add_parser(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    assert cli.run(parser.parse_args(["buffer", "stats"]), db, out) == 0
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("salvaged  ")]
    assert re.fullmatch(
        r"salvaged  \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: "
        + re.escape(
            f"{len(still):,} readings saved, {lost:,} lost, 2 dead letters saved; damaged file moved to {moved} "
            "(database disk image is malformed)"
        ),
        line,
    ), line


def _after(batch: list[Reading]) -> list[int] | None:
    """Per lane, the highest seq in `batch`: where the next read goes on."""
    if not batch:
        return None
    after = [0, 0, 0]
    for r in batch:
        after[int(r.lane)] = max(after[int(r.lane)], r.seq or 0)
    return after


# --- any damage: nothing readable lost, no crash --------------------------------------------------


@functools.cache
def base() -> tuple[bytes, dict[int, tuple[Any, ...]]]:
    """A real buffer of 3,000 rows (built once, in a thread: the test runs inside pytest's event loop)
    and its rows as they were."""
    directory = Path(tempfile.mkdtemp(prefix="salvage-base-"))
    try:
        db = directory / "buffer.db"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, build(db, 3000)).result()
        conn = sqlite3.connect(db)
        try:
            rows = rows_of(conn)
        finally:
            conn.close()
        return db.read_bytes(), rows
    finally:
        shutil.rmtree(directory, ignore_errors=True)


DAMAGE = st.lists(
    st.tuples(
        st.floats(0.0, 1.0),  # which page, as a fraction of the file
        st.sampled_from(["random", "zeros", "a5", "half", "copy"]),
        st.binary(min_size=64, max_size=64),  # the garbage's pattern (for "copy": which page is copied)
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damage=DAMAGE)
def test_any_damaged_pages_never_lose_a_readable_row_and_never_crash(damage: list[Any]) -> None:
    original, pristine = base()
    size = page_size(original)
    pages = len(original) // size
    data = bytearray(original)
    for where, kind, seed in damage:
        page = min(pages - 1, int(where * pages))
        start = page * size
        if kind == "random":
            garbage = (seed * (size // len(seed) + 1))[:size]
        elif kind == "zeros":
            garbage = bytes(size)
        elif kind == "a5":
            garbage = b"\xa5" * size
        elif kind == "half":  # the second half of a page only: headers intact, cells garbled
            start += size // 2
            garbage = (seed * (size // len(seed) + 1))[: size // 2]
        else:  # a misdirected write: another page's content, valid as a page but in the wrong place
            source = int.from_bytes(seed[:4], "big") % pages
            garbage = original[source * size : (source + 1) * size]
        data[start : start + len(garbage)] = garbage
    directory = Path(tempfile.mkdtemp(prefix="salvage-"))
    try:
        db = directory / "buffer.db"
        db.write_bytes(bytes(data))
        expected = {seq: row for seq, row in readable(db).items() if pristine.get(seq) == row}
        opened = open_database(db, durability=Durability.NORMAL)
        try:
            got = rows_of(opened.conn)
            assert opened.conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        finally:
            opened.conn.close()
        missing = sorted(set(expected) - set(got))
        assert not missing, f"{len(missing)} readable rows lost, e.g. {missing[:5]}"
        # nothing that was not in the file appears, and nothing appears changed (a garbled page must not
        # invent or alter rows)
        assert all(got[seq] == pristine.get(seq) for seq in got)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_an_index_page_overwritten_by_another_of_its_pages_loses_no_row(tmp_path: Path) -> None:
    """A misdirected write: one leaf of the lane index replaced by a copy of another. The index still
    reads cleanly, but lists the copied page's keys twice and not the replaced page's; the rows it no
    longer lists are intact in the table and must be saved (hypothesis found this: they were lost)."""
    db = tmp_path / "buffer.db"
    await build(db, 3000)
    conn = sqlite3.connect(db)
    original = rows_of(conn)
    leaves = [
        int(p) for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'outbox_lane' AND pagetype = 'leaf'")
    ]
    conn.close()
    assert len(leaves) >= 2
    data = bytearray(db.read_bytes())
    size = page_size(bytes(data))
    source, target = leaves[-1], leaves[0]
    data[(target - 1) * size : target * size] = data[(source - 1) * size : source * size]
    db.write_bytes(bytes(data))
    box = await Outbox.open(db, CFG, ["orion", "mqtt"])
    stats = await box.stats()
    await box.close()
    assert stats.salvage is not None  # the file was found damaged (the index and the table disagree)
    conn = sqlite3.connect(db)
    assert rows_of(conn) == original
    conn.close()


async def test_without_the_lane_index_rows_are_found_by_key_and_the_loss_is_estimated(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    await build(db, 3000)
    conn = sqlite3.connect(db)
    original = rows_of(conn)
    index_pages = [int(p) for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'outbox_lane'")]
    conn.close()
    data = bytearray(db.read_bytes())
    size = page_size(bytes(data))
    leaf = outbox_leaf_near(db, len(data) // size // 2)
    for page in [*index_pages, leaf]:  # the index that lists every seq is gone, and one page of rows
        data[(page - 1) * size : page * size] = b"\xa5" * size
    db.write_bytes(bytes(data))
    still = readable(db)
    assert len(still) < len(original)
    box = await Outbox.open(db, CFG, ["orion", "mqtt"])
    stats = await box.stats()
    await box.close()
    assert stats.salvage is not None and stats.salvage.lost_rows is not None
    assert (stats.rows, stats.salvage.lost_exact) == (len(still), False)
    # estimated from above (keys whose lookup hit the damaged page), never below what was lost
    assert len(original) - len(still) <= stats.salvage.lost_rows <= len(original) - len(still) + 20
    conn = sqlite3.connect(db)
    assert rows_of(conn) == still
    conn.close()
