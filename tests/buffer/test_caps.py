"""Cap policy: oldest bulk first, then normal, alert only if configured; counted, logged once, refused when stuck."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.buffer.config import AlertDropPolicy, BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.errors import BufferFull
from gateway.records import Lane
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import ns, reading

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, max_rows=1000)


async def test_row_cap_drops_oldest_bulk_then_normal_and_counts_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    await box.append_many([reading(i, "b", Lane.BULK) for i in range(600)])
    await box.append_many([reading(1000 + i, "n", Lane.NORMAL) for i in range(300)])
    await box.append_many([reading(2000 + i, "a", Lane.ALERT) for i in range(100)])
    with caplog.at_level(logging.INFO, logger="gateway.buffer.outbox"):
        for i in range(50):
            await box.append(reading(3000 + i, "a", Lane.ALERT))  # 50 commits, each drops one bulk row
        await box.append_many([reading(4000 + i, "n", Lane.NORMAL) for i in range(600)])
        stats = await box.stats()
        assert stats.dropped == {"bulk": {"max_rows": 600}, "normal": {"max_rows": 50}}
        assert stats.rows_per_lane == {"alert": 150, "normal": 850, "bulk": 0}
        await box.append_many([reading(5000, "n", Lane.NORMAL)])  # drops one more normal
        await box.close()  # nothing else queued
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "buffer: cap max_rows reached, dropping the oldest bulk rows (policy: bulk, then normal; alert never)"
    ]
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    batch = await box.read("orion", 1000)
    assert ns(batch)[:3] == [2000, 2001, 2002]
    assert ns(batch)[150:153] == [1051, 1052, 1053]  # the 51 oldest normal rows are gone
    assert len(batch) == 1000
    assert (await box.stats()).dropped == {"bulk": {"max_rows": 600}, "normal": {"max_rows": 51}}
    await box.close()


async def test_alerts_are_never_dropped_the_buffer_refuses_instead(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = await Outbox.open(tmp_path / "b.db", CFG, ["orion"])
    await box.append_many([reading(i, "a", Lane.ALERT) for i in range(1000)])
    with caplog.at_level(logging.INFO, logger="gateway.buffer.outbox"):
        for lane in (Lane.BULK, Lane.ALERT):
            with pytest.raises(BufferFull) as err:
                box.append(reading(1, "x", lane))
        assert str(err.value) == (
            "buffer: full, got 1000 rows / 43890 bytes against max_rows = 1000, max_bytes = 2147483648 and nothing "
            'left to drop (the rest are alert rows, which drop_alert = "never" keeps); check that the uplinks deliver '
            "(edgegw buffer stats), or raise [buffer] max_rows / max_bytes"
        )
        batch = await box.read("orion", 10)
        await box.ack("orion", batch, [DELIVERED] * 10)
        await box.append(reading(1, "x", Lane.BULK))
    assert caplog.messages == [
        "buffer: refusing new readings: caps reached and nothing left to drop",
        "buffer: accepting readings again (2 refused meanwhile)",
    ]
    stats = await box.stats()
    assert (stats.rows, stats.refused_total, stats.dropped) == (991, 2, {})
    await box.close()


async def test_drop_alert_oldest_lets_the_oldest_alerts_go(tmp_path: Path) -> None:
    cfg = CFG.model_copy(update={"drop_alert": AlertDropPolicy.OLDEST})
    box = await Outbox.open(tmp_path / "b.db", cfg, ["orion"])
    await box.append_many([reading(i, "a", Lane.ALERT) for i in range(1000)])
    await box.append_many([reading(5000 + i, "a", Lane.ALERT) for i in range(3)])
    assert ns(await box.read("orion", 2)) == [3, 4]
    assert (await box.stats()).dropped == {"alert": {"max_rows": 3}}
    await box.close()


async def test_byte_cap_drops_enough_oldest_bulk_rows(tmp_path: Path) -> None:
    cfg = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, max_bytes=1024 * 1024)
    box = await Outbox.open(tmp_path / "b.db", cfg, ["orion"])
    await box.append_many([reading(i, "b", Lane.BULK, pad=10_000) for i in range(100)])
    size = (await box.stats()).bytes // 100
    await box.append_many([reading(1000 + i, "b", Lane.BULK, pad=10_000) for i in range(10)])
    stats = await box.stats()
    assert stats.bytes <= 1024 * 1024
    kept = (1024 * 1024) // size
    assert stats.rows == kept
    assert stats.dropped == {"bulk": {"max_bytes": 110 - kept}}
    assert ns(await box.read("orion", 1)) == [110 - kept]
    await box.close()


async def test_rows_older_than_max_age_are_dropped_but_alerts_kept(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    cfg = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, max_age_s=3600)
    db = tmp_path / "b.db"
    box = await Outbox.open(db, cfg, ["orion"], clock=lambda: now[0])
    await box.append_many([reading(1, "a", Lane.ALERT), reading(2, "n", Lane.NORMAL), reading(3, "b", Lane.BULK)])
    now[0] += 1800
    await box.append_many([reading(4, "n", Lane.NORMAL)])
    await box.close()
    now[0] += 1801  # the first three are now older than an hour, row 4 is not
    box = await Outbox.open(db, cfg, ["orion"], clock=lambda: now[0])
    assert ns(await box.read("orion", 10)) == [1, 4]
    stats = await box.stats()
    assert stats.dropped == {"bulk": {"max_age": 1}, "normal": {"max_age": 1}}
    assert stats.oldest_appended_age_s == 3601
    await box.close()
