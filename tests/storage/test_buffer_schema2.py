"""Today's code opens a buffer of schema version 2 (tests/storage/fixtures/buffer-schema2, see
make_buffer_schema2.py), whose row bodies hold the entity id and the time: migrated to 3, every
pending reading delivered in order as it was stored, new rows in the form without them after it;
and an edgegw of version 2 refuses the migrated file instead of misreading its new rows.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from gateway.buffer import schema
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.errors import BufferUnavailable
from gateway.records import Lane, Reading
from gateway.uplinks.api import DELIVERED
from tests.storage.fixtures.make_buffer_schema2 import LANES, READINGS, reading

FIXTURE = Path(__file__).parent / "fixtures" / "buffer-schema2" / "buffer.db"
CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, reserve_bytes=0)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "buffer.db"
    shutil.copyfile(FIXTURE, path)
    return path


def _pending() -> list[Reading]:
    """What the fixture still holds for "orion", in the order it reads: per lane, in seq order."""
    by_lane = {lane: [n for n in range(READINGS) if LANES[n % len(LANES)] is lane] for lane in Lane}
    by_lane[Lane.ALERT] = by_lane[Lane.ALERT][100:]  # the first 100 acknowledged (the 100th a dead letter)
    return [reading(n) for lane in Lane for n in by_lane[lane]]


async def _deliver_all(box: Outbox) -> list[Reading]:
    out: list[Reading] = []
    while batch := await box.read("orion", 300):
        out.extend(batch)
        await box.ack("orion", batch, [DELIVERED] * len(batch))
    return out


def _bodies(path: Path) -> list[dict[str, object]]:
    with sqlite3.connect(path) as conn:
        return [orjson.loads(body) for (body,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]


def _content(path: Path) -> bytes:
    return path.read_bytes()


async def test_a_schema_2_buffer_is_migrated_and_delivers_its_rows_then_new_ones_in_order(db: Path) -> None:
    box = await Outbox.open(db, CFG, ["orion"])
    try:
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == 3
        (dead,) = await box.dead_letters("orion")
        assert replace(dead.reading, seq=None) == reading(396)
        new = [reading(n) for n in range(READINGS, READINGS + 8)]
        await box.append_many(new)
        bodies = _bodies(db)
        assert all("i" in b and "o" in b for b in bodies[:-8])  # the stored rows keep their form
        assert not any("i" in b or "o" in b for b in bodies[-8:])  # new rows leave them to the columns
        got = await _deliver_all(box)
        # each lane in its order; the new rows come after the stored ones of their lane
        expected = _pending()
        by_lane = {lane: [r for r in expected if r.lane is lane] + [r for r in new if r.lane is lane] for lane in Lane}
        assert [replace(r, seq=None) for r in got] == [r for lane in Lane for r in by_lane[lane]]
        seqs = [r.seq for r in got if r.seq is not None]
        assert len(set(seqs)) == len(got)
        assert min(r.seq or 0 for r in got if r.lane is Lane.ALERT) > 397
        # the new rows: after the fixture's last seq
        assert min(r.seq or 0 for r in got if r.attributes["n"].value >= READINGS) > READINGS
        # the dead letter, re-queued, gets a seq past every other and arrives whole
        assert await box.retry_dead_letters("orion") == 1
        (again,) = await _deliver_all(box)
        assert replace(again, seq=None) == reading(396)
        assert again.seq is not None and again.seq > max(seqs)
        assert (await box.stats()).rows == 0
    finally:
        await box.close()


async def test_an_edgegw_of_schema_2_refuses_the_migrated_file(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = await Outbox.open(db, CFG, ["orion"])
    await box.append_many([reading(n) for n in range(READINGS, READINGS + 4)])
    await box.close()
    before = _content(db)
    # what a version-2 build of this module is: the same code, knowing the first two steps
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    with pytest.raises(BufferUnavailable) as refused:
        await Outbox.open(db, CFG, ["orion"])
    assert str(refused.value) == (
        f"buffer: cannot open {db}, got schema version 3 written by a newer edgegw (this one knows 2); "
        "run that version, or move the file away to start an empty buffer"
    )
    assert _content(db) == before
