"""What the buffer holds in memory while a large backlog drains stays bounded, whatever the backlog (issue 18).

Asserted on the bounded structures themselves (the tail's rows and bytes, SQLite's page cache, the
size of each stored body), not on the process's resident size, which the allocator and the machine
make noisy; the race bench (bench/race_bench.py --only backlog) measures that.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.schema import CACHE_KIB, open_database
from gateway.buffer.store import TAIL_BYTES, TAIL_ROWS, Row, Store
from gateway.buffer.tail import Tail
from gateway.records import Reading, encode_reading, to_epoch_us
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import ns, reading

CFG = BufferConfig(durability=Durability.NORMAL)


def test_the_tail_keeps_at_most_its_bytes_and_moves_its_base_past_what_it_forgets() -> None:
    tail = Tail(max_rows=100, base=10, max_bytes=1000)
    tail.add(11, [1] * 8, [reading(i) for i in range(8)], [200] * 8)
    # 1,600 bytes > 1,000: the older half went (seqs 11-14), 800 bytes are left
    assert (tail.rows, tail.bytes) == (4, 800)
    assert not tail.covers(1, 13) and tail.covers(1, 14)
    assert [r.seq for r in tail.take(1, 14, 10)] == [15, 16, 17, 18]
    tail.discard(1, 16)
    assert (tail.rows, tail.bytes) == (2, 400)
    tail.add(19, [1, 2], [reading(8), reading(9)], [100, 50])
    assert (tail.rows, tail.bytes) == (4, 550)


def test_a_row_larger_than_the_byte_bound_sends_its_lane_back_to_the_file() -> None:
    tail = Tail(max_rows=100, base=0, max_bytes=1000)
    tail.add(1, [1], [reading(0)], [5000])
    assert (tail.rows, tail.bytes) == (0, 0)
    assert not tail.covers(1, 0) and tail.covers(1, 1)


def test_rows_handed_out_before_their_commit_count_against_the_byte_bound_too() -> None:
    """The outbox exposes each appended row at once (tail.expose): the same bound holds for them."""
    tail = Tail(max_rows=100, base=10, max_bytes=1000)
    for k in range(8):
        tail.expose(1, 11 + k, reading(k), 200)
    assert tail.bytes <= 1000 and tail.rows == tail.bytes // 200
    assert tail.covers(1, tail.base[1]) and [r.seq for r in tail.take(1, tail.base[1], 10)][-1] == 18
    tail.expose(2, 19, reading(8), 100)
    tail.expose(1, 20, None, 300)  # not plain: lane 1 restarts after it, its bytes are forgotten
    assert (tail.rows, tail.bytes) == (1, 100)
    assert not tail.covers(1, 19) and tail.covers(1, 20)


def test_a_stored_body_takes_its_own_length_in_memory_not_the_encoders_buffer() -> None:
    r = reading(1, pad=100)
    encode_reading(r)  # caches warm
    tracemalloc.start()
    try:
        bodies = [encode_reading(r) for _ in range(1000)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a bytes object's header is 33 bytes; the list of 1,000 pointers 8 KB. orjson's own result
    # takes a 4 KiB block each (4 MB here).
    assert held < 1000 * (len(bodies[0]) + 64) + 16_000


def _rows(readings: list[Reading], now_ms: int) -> list[Row]:
    out: list[Row] = []
    for r in readings:
        body = encode_reading(r)
        out.append((int(r.lane), r.entity_id, to_epoch_us(r.observed_at), now_ms, len(body), body, None))
    return out


def test_draining_a_large_backlog_holds_at_most_the_tail_bounds_and_delivers_everything_in_order(
    tmp_path: Path,
) -> None:
    opened = open_database(tmp_path / "b.db", durability=Durability.NORMAL)
    store = Store(opened.conn, path=tmp_path / "b.db", config=CFG, uplinks=["up"], clock=lambda: 1000.0)
    assert opened.conn.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    delivered: list[int] = []
    most_rows = most_bytes = 0
    n, total, group = 0, 60_000, 500
    try:
        while n < total or len(delivered) < total:
            if n < total:
                readings = [reading(n + i, f"dev{(n + i) % 100}", pad=150) for i in range(group)]
                rows = _rows(readings, 1_000_000)
                store.insert(rows, [0, group, 0], [0, sum(row[4] for row in rows), 0], readings)
                n += group
            most_rows, most_bytes = max(most_rows, store.tail.rows), max(most_bytes, store.tail.bytes)
            # the uplink reads a batch for every two groups committed: it falls behind while the source
            # runs, then drains the rest (from the file, and from the tail once it is close again)
            batch = store.read("up", 1000 if n >= total else group // 2)
            delivered += ns(batch)
            store.ack("up", batch, [DELIVERED] * len(batch))
            store.settle()
    finally:
        opened.conn.close()
    assert delivered == list(range(total))
    assert most_rows <= TAIL_ROWS
    assert TAIL_BYTES // 2 < most_bytes <= TAIL_BYTES  # the bound held, and the tail was in use
