"""A cap drop never takes undelivered readings while delivered ones, not deleted yet, would free the room.

Delivered readings wait in the file until the next settle (ack_write_interval_ms). An append that
reaches a cap counts the rows its own transaction's settle deletes, and settles the acknowledgements
held in memory before it drops anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.schema import open_database
from gateway.buffer.store import Store
from gateway.records import Lane, encode_row
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import ns, reading

CFG = BufferConfig(
    durability=Durability.NORMAL,
    commit_interval_ms=1,
    commit_quiet_ms=1,
    ack_write_interval_ms=1000,
    max_rows=1000,
)
PAD = 1000  # readings of ~1 KiB, for the byte cap


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("cap", ["max_rows", "max_bytes"])
@pytest.mark.parametrize("settle", ["due", "not_due"])
async def test_delivered_rows_make_the_room_before_undelivered_ones_are_dropped(
    tmp_path: Path, cap: str, settle: str
) -> None:
    # 400 normal delivered, 450 bulk to deliver: below 90 % of the cap, so the acks wait in memory;
    # 300 more bulk make 1,150 held, but only 750 still to deliver, which fit
    pad = PAD if cap == "max_bytes" else 0
    normal = [reading(i, "gauge", Lane.NORMAL, pad=pad) for i in range(400)]
    bulk = [reading(i, "log", Lane.BULK, pad=pad) for i in range(400, 850)]
    more = [reading(i, "log", Lane.BULK, pad=pad) for i in range(850, 1150)]
    cfg = CFG
    if cap == "max_bytes":
        cfg = CFG.model_copy(update={"max_rows": 5_000_000, "max_bytes": 1024 * 1024})
        size = {r.attributes["n"].value: len(encode_row(r)) for r in [*normal, *bulk, *more]}
        held, after = sum(size.values()) - sum(size[r.attributes["n"].value] for r in more), sum(size.values())
        assert held < 0.9 * cfg.max_bytes < cfg.max_bytes < after
        assert after - sum(size[r.attributes["n"].value] for r in normal) <= cfg.max_bytes
    clock = Clock()
    box = await Outbox.open(tmp_path / "b.db", cfg, ["orion"], clock=clock)
    await box.append_many(normal)
    await box.append_many(bulk)
    batch = await box.read("orion", 400)
    assert ns(batch) == list(range(400))
    await box.ack("orion", batch, [DELIVERED] * 400)
    if settle == "due":
        clock.now += 1.0  # the next commit carries the settle, and its deletes
    await box.append_many(more)
    stats = await box.stats()
    assert stats.dropped == {}
    assert stats.rows_per_lane == {"alert": 0, "normal": 0, "bulk": 750}
    assert ns(await box.read("orion", 2000)) == list(range(400, 1150))
    await box.close()


def test_an_age_drop_settles_first_so_delivered_rows_are_not_counted_as_dropped(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    conn = open_database(db, durability=Durability.NORMAL).conn
    clock = Clock()
    cfg = CFG.model_copy(update={"max_age_s": 3600, "ack_write_interval_ms": 60_000})
    store = Store(conn, path=db, config=cfg, uplinks=["orion"], clock=clock)
    group = [reading(i) for i in range(10)]
    rows = [(1, r.entity_id, 0, int(clock() * 1000), len(body), body, None) for r in group for body in [encode_row(r)]]
    store.insert(rows, [0, 10, 0], [0, sum(row[4] for row in rows), 0], group)
    clock.now += 3590
    store.ack("orion", store.read("orion", 2), [DELIVERED] * 2)
    store.settle()  # the first two deleted; the next settle is due in a minute
    store.ack("orion", store.read("orion", 2), [DELIVERED] * 2)  # held in memory
    clock.now += 11
    drops = store.drop_aged(clock())
    assert {(lane, reason.value): n for (lane, reason), n in drops.items()} == {(int(Lane.NORMAL), "max_age"): 6}
    assert store.counters["dropped.normal.max_age"] == 6
    assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    conn.close()
