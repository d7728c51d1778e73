"""A buffer file cut short (a copy, an SD card losing its tail): SQLite reads none of it, and the salvage must
not say that at most one reading was lost."""

from __future__ import annotations

from pathlib import Path

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from tests.buffer.readings import reading

CFG = BufferConfig(durability=Durability.FULL, commit_interval_ms=1, reserve_bytes=0)


def _cut(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) * 6 // 10 // 4096 * 4096])


async def test_the_loss_of_a_truncated_file_is_estimated_from_its_length(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    box = await Outbox.open(db, CFG, ["orion"])
    await box.append_many([reading(i, f"e{i % 5}", pad=200) for i in range(300)])
    await box.close()
    _cut(db)
    box = await Outbox.open(db, CFG, ["orion"])
    try:
        stats = await box.stats()
    finally:
        await box.close()
    assert stats.salvage is not None and stats.salvage.lost_rows is not None
    assert not stats.salvage.lost_exact
    # an estimate from above: never fewer than the readings that were in the file and were not saved
    assert stats.salvage.lost_rows >= 300 - stats.salvage.saved_rows
