"""The room an insert needs, as space.py estimates it, against what SQLite really writes."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.schema import open_database
from gateway.buffer.space import FLOOR, MODIFIED_PAGES, shortfall
from gateway.buffer.store import Row, Store
from gateway.records import encode_reading, to_epoch_us
from tests.buffer.readings import reading


def _rows(n: int, pad: int, entity: str) -> list[Row]:
    out: list[Row] = []
    for i in range(n):
        body = encode_reading(reading(i, entity, pad=pad))
        out.append((1, entity, to_epoch_us(reading(i).observed_at), 0, len(body), body, None))
    return out


@settings(max_examples=100, deadline=None)
@given(
    before=st.integers(0, 3000),
    n=st.integers(1, 3000),
    pad=st.integers(0, 6000),
    entity=st.sampled_from(["e", "urn:ngsi-ld:WaterObserved:kumamoto-shirakawa-0001"]),
)
# an insert that rewrites 11 pages besides its new ones: 8 allowed for were a frame short
@example(before=1517, n=2925, pad=414, entity="urn:ngsi-ld:WaterObserved:kumamoto-shirakawa-0001")
def test_the_estimate_covers_the_pages_sqlite_writes(before: int, n: int, pad: int, entity: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        opened = open_database(Path(name) / "b.db", durability=Durability.NORMAL)
        conn = opened.conn
        try:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            store = Store(conn, path=Path(name) / "b.db", config=BufferConfig(), uplinks=["u"], tail_rows=0)
            if before:
                old = _rows(before, 100, "other")
                store.insert(old, [0, before, 0], [0, sum(r[4] for r in old), 0])
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages_before = _pages(conn)
            rows = _rows(n, pad, entity)
            nbytes = sum(r[4] for r in rows)
            estimate = store.insert_pages(rows, nbytes)
            store.insert(rows, [0, n, 0], [0, nbytes, 0])
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            grown = _pages(conn) - pages_before
        finally:
            conn.close()
    assert grown <= estimate  # the file grows by no more than the estimate
    assert frames <= estimate + MODIFIED_PAGES  # nor is the -wal longer than it allows (plus pages rewritten)
    # and not far above, so that inserts are not refused long before the disk is really full: whole rows
    # per page (3 where 4 just fit), or a row that may just need a second overflow page, are the most
    assert estimate <= grown * 2 + 12


def _pages(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA page_count").fetchone()[0])


def test_an_insert_that_fits_inside_the_file_needs_no_free_disk() -> None:
    # 10 pages fit in 12 free pages and in a -wal already long enough: nothing is taken from the disk
    assert shortfall(pages=10, free_pages=12, page_size=4096, wal_bytes=1 << 20, free_bytes=0, keep=FLOOR) == 0
    # the same insert with a short -wal lacks the -wal's growth plus the room kept for delivery
    missing = shortfall(pages=10, free_pages=12, page_size=4096, wal_bytes=0, free_bytes=0, keep=FLOOR)
    assert missing == (10 + MODIFIED_PAGES) * (4096 + 24) + 32 + FLOOR
    # and with enough free space it fits
    assert shortfall(pages=10, free_pages=12, page_size=4096, wal_bytes=0, free_bytes=missing, keep=FLOOR) == 0
