"""An uplink taken out of the configuration keeps its backlog for [buffer] removed_uplink_keep_days.

The reviewer's case: a start with a configuration that no longer named an uplink deleted its cursors,
and with them every row only it still needed; configured again (a mistake undone, a rollback), it
found its acknowledged backlog gone. The wall clock is the real one plus an offset the test moves
between a close and the next open (time the gateway was stopped counts, see store.py).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.buffer.reader import BufferReader
from gateway.buffer.schema import connect
from gateway.buffer.store import Store
from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.records import Lane
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import ns, reading
from tests.buffer.test_cli import _run

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1)
DAY = 86_400


class WallClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def kept_line(name: str, rows: int, until: datetime, days: int = 7, alone: int | None = None) -> str:
    """`alone`: of the `rows`, those every configured uplink has delivered (all of them by default)."""
    return (
        f"buffer: uplink {name} is no longer configured; until {until:%Y-%m-%d %H:%M} UTC ([buffer] "
        f"removed_uplink_keep_days = {days}) the buffer keeps the {rows} rows it has not delivered "
        f"({rows if alone is None else alone} of them for it alone: every configured uplink has delivered them) "
        "and every row appended until then; configure it again before then to deliver them"
    )


DROPPED = "buffer: uplink backup is no longer configured; dropped its cursors"


async def _backlog_for_backup(db: Path, wall: WallClock, cfg: BufferConfig = CFG) -> None:
    """12 rows in three lanes; backup delivered the first 2 normal ones, orion everything."""
    box = await Outbox.open(db, cfg, ["orion", "backup"], clock=wall)
    await box.append_many(
        [reading(i, "gauge", Lane.NORMAL) for i in range(6)]
        + [reading(10 + i, "log", Lane.BULK) for i in range(4)]
        + [reading(20 + i, "alarm", Lane.ALERT) for i in range(2)]
    )
    batch = await box.read("orion", 100)
    await box.ack("orion", batch, [DELIVERED] * len(batch))
    first = [r for r in await box.read("backup", 100) if r.lane is Lane.NORMAL][:2]
    await box.ack("backup", first, [DELIVERED] * 2)
    await box.close()


async def test_an_uplink_configured_again_within_the_period_delivers_every_row_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, wall = tmp_path / "b.db", WallClock()
    await _backlog_for_backup(db, wall)

    wall.offset += DAY
    before = datetime.fromtimestamp(wall(), UTC)
    with caplog.at_level(logging.INFO, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)  # backup removed by mistake
    after = datetime.fromtimestamp(wall(), UTC)
    stats = await box.stats()
    kept = stats.kept_uplinks["backup"]
    assert before - timedelta(seconds=1) <= kept.removed_at <= after
    assert kept.kept_until - kept.removed_at == timedelta(days=7)
    assert kept.pending == {"alert": 2, "normal": 4, "bulk": 4}
    assert "backup" not in stats.uplinks
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        kept_line("backup", 10, kept.kept_until)
    ]
    assert stats.rows == 10  # orion delivered all 12; the 2 backup delivered too are gone
    # readings keep coming while it is gone: orion delivers them, backup will want them too
    await box.append_many([reading(30 + i, "gauge", Lane.NORMAL) for i in range(3)])
    batch = await box.read("orion", 100)
    assert ns(batch) == [30, 31, 32]
    await box.ack("orion", batch, [DELIVERED] * 3)
    assert (await box.stats()).rows == 13
    await box.close()

    wall.offset += 3 * DAY
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion", "backup"], clock=wall)  # the mistake undone
    assert "buffer: uplink backup is configured again; it goes on from its cursors" in caplog.messages
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    batch = await box.read("backup", 100)
    assert ns(batch) == [20, 21, 2, 3, 4, 5, 30, 31, 32, 10, 11, 12, 13]  # by lane, each in seq order
    await box.ack("backup", batch, [DELIVERED] * len(batch))
    stats = await box.stats()
    assert stats.rows == 0 and stats.kept_uplinks == {}
    await box.close()
    conn = connect(db, durability=None)
    try:  # nothing left that says it was removed: a later removal starts a period of its own
        assert conn.execute("SELECT name FROM counters WHERE name LIKE 'uplink.%'").fetchall() == []
    finally:
        conn.close()


async def test_past_the_period_the_backlog_is_dropped_with_the_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, wall = tmp_path / "b.db", WallClock()
    await _backlog_for_backup(db, wall)
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    assert (await box.stats()).rows == 10  # kept for now
    await box.close()

    wall.offset += 7 * DAY + 60
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    assert caplog.messages == [DROPPED]
    stats = await box.stats()
    assert (stats.rows, stats.kept_uplinks, stats.dropped) == (0, {}, {})
    await box.close()
    # configured again too late: it is a new uplink, starting at the oldest row left
    box = await Outbox.open(db, CFG, ["orion", "backup"], clock=wall)
    assert await box.read("backup", 100) == []
    await box.close()


async def test_a_restart_keeps_the_time_of_removal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, wall = tmp_path / "b.db", WallClock()
    await _backlog_for_backup(db, wall)
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    removed = (await box.stats()).kept_uplinks["backup"]
    await box.close()

    for days in (3, 3):  # two restarts, 6 days after the removal: still within 7
        wall.offset += days * DAY
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
            box = await Outbox.open(db, CFG, ["orion"], clock=wall)
        kept = (await box.stats()).kept_uplinks["backup"]
        await box.close()
        assert (kept.removed_at, kept.kept_until) == (removed.removed_at, removed.kept_until)
        assert caplog.messages == [kept_line("backup", 10, removed.kept_until)]  # said at every open, once

    wall.offset += 2 * DAY  # 8 days after the removal, whatever the restarts in between
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    assert caplog.messages == [DROPPED]
    assert (await box.stats()).rows == 0
    await box.close()


async def test_a_longer_setting_applies_to_an_uplink_already_removed(tmp_path: Path) -> None:
    db, wall = tmp_path / "b.db", WallClock()
    await _backlog_for_backup(db, wall)
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    removed = (await box.stats()).kept_uplinks["backup"]
    await box.close()
    wall.offset += 10 * DAY
    longer = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, removed_uplink_keep_days=30)
    box = await Outbox.open(db, longer, ["orion"], clock=wall)
    kept = (await box.stats()).kept_uplinks["backup"]
    await box.close()
    assert kept.removed_at == removed.removed_at
    assert kept.kept_until == removed.removed_at + timedelta(days=30)


async def test_keep_days_0_drops_a_removed_uplinks_backlog_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, removed_uplink_keep_days=0)
    db, wall = tmp_path / "b.db", WallClock()
    await _backlog_for_backup(db, wall, now)
    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, now, ["orion"], clock=wall)
    assert caplog.messages == [DROPPED]
    stats = await box.stats()
    assert (stats.rows, stats.kept_uplinks) == (0, {})
    await box.close()


async def test_the_caps_still_hold_with_a_removed_uplinks_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    capped = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, max_rows=1000)
    db, wall = tmp_path / "b.db", WallClock()
    box = await Outbox.open(db, capped, ["orion", "backup"], clock=wall)
    await box.append_many([reading(i, "log", Lane.BULK) for i in range(600)])
    batch = await box.read("orion", 1000)
    await box.ack("orion", batch, [DELIVERED] * 600)
    await box.close()

    box = await Outbox.open(db, capped, ["orion"], clock=wall)
    assert (await box.stats()).rows == 600  # held for backup
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        await box.append_many([reading(1000 + i, "gauge", Lane.NORMAL) for i in range(600)])
    stats = await box.stats()
    assert (stats.rows, stats.dropped) == (1000, {"bulk": {"max_rows": 200}})
    assert stats.kept_uplinks["backup"].pending == {"alert": 0, "normal": 600, "bulk": 400}
    assert caplog.messages == [
        "buffer: cap max_rows reached, dropping the oldest bulk rows (policy: bulk, then normal; alert never)"
    ]
    await box.close()

    box = await Outbox.open(db, capped, ["orion", "backup"], clock=wall)
    got = ns(await box.read("backup", 2000))
    await box.close()
    assert got == [*range(1000, 1600), *range(200, 600)]  # what the cap left, in order


async def test_a_removed_uplinks_rows_still_age_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    aging = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, max_age_s=3600)
    db, wall = tmp_path / "b.db", WallClock()
    await _backlog_for_backup(db, wall, aging)
    wall.offset += 1800
    box = await Outbox.open(db, aging, ["orion"], clock=wall)
    assert (await box.stats()).rows == 10
    await box.close()
    wall.offset += 3600
    box = await Outbox.open(db, aging, ["orion"], clock=wall)
    stats = await box.stats()
    await box.close()
    # alert rows are kept by the cap policy (drop_alert = "never") as for any uplink
    assert stats.dropped == {"bulk": {"max_age": 4}, "normal": {"max_age": 4}}
    assert stats.kept_uplinks["backup"].pending == {"alert": 2, "normal": 0, "bulk": 0}


async def test_the_period_ends_while_the_gateway_runs(tmp_path: Path) -> None:
    # the outbox's writer calls expire_removed every second; its age clock takes steps out, so the
    # store is driven here with a clock moved by days
    db, wall = tmp_path / "b.db", WallClock()
    await _backlog_for_backup(db, wall)
    conn = connect(db, durability=Durability.NORMAL)
    store = Store(conn, path=db, config=CFG, uplinks=["orion"], clock=wall)
    try:
        assert store.expire_removed() == []
        assert sum(store.rows) == 10
        wall.offset += 7 * DAY
        assert store.expire_removed() == ["backup"]
        assert (sum(store.rows), store.kept, store.removed) == (0, {}, {})
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
        assert conn.execute("SELECT DISTINCT uplink FROM cursors").fetchall() == [("orion",)]
        assert conn.execute("SELECT name FROM counters WHERE name LIKE 'uplink.%'").fetchall() == []
        assert store.expire_removed() == []
    finally:
        conn.close()


async def test_buffer_stats_shows_a_kept_uplink_with_its_rows_and_until_when(tmp_path: Path) -> None:
    db, wall = tmp_path / "buffer.db", WallClock()
    await _backlog_for_backup(db, wall)
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    until = (await box.stats()).kept_uplinks["backup"].kept_until
    await box.close()

    code, text = _run(db, "stats")
    assert code == 0
    assert (
        f"kept for backup (no longer configured): 10 undelivered rows (10 of them for it alone) and every row "
        f"appended until {until:%Y-%m-%d %H:%M} UTC; configure it again before then to deliver them\n"
    ) in text
    code, doc = _run(db, "stats", "--json")
    assert code == 0
    stats = json.loads(doc)
    assert list(stats["uplinks"]) == ["orion"]
    assert stats["kept_uplinks"]["backup"]["pending"] == {"alert": 2, "normal": 4, "bulk": 4}
    assert stats["kept_uplinks"]["backup"]["cursors"] == {"alert": 0, "normal": 2, "bulk": 0}
    assert stats["kept_uplinks"]["backup"]["alone"] == 10  # orion delivered every row
    assert datetime.fromisoformat(stats["kept_uplinks"]["backup"]["kept_until"]) == until.replace(
        microsecond=until.microsecond // 1000 * 1000
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, "buffer.removed_uplink_keep_days: input should be greater than or equal to 0, got -1"),
        (366, "buffer.removed_uplink_keep_days: input should be less than or equal to 365, got 366"),
        (
            "7d",
            "buffer.removed_uplink_keep_days: input should be a valid integer, unable to parse string as an "
            'integer, got "7d"',
        ),
    ],
)
def test_a_bad_keep_days_is_refused_with_its_key_path(value: object, error: str) -> None:
    doc = {
        "gateway": {"id": "gw", "data_dir": "/var/lib/edgegw"},
        "uplinks": [{"name": "orion", "type": "orion", "url": "http://127.0.0.1:1026"}],
        "buffer": {"removed_uplink_keep_days": value},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert err.value.errors == [error]
    assert parse_config({**doc, "buffer": {}}).buffer.removed_uplink_keep_days == 7


async def test_the_web_uis_backlog_leaves_a_kept_uplink_out(tmp_path: Path) -> None:
    """The web UI reads the file from another process: a kept uplink delivers nothing until it is configured
    again, so it is not shown waiting to send (on the stations page, for a week)."""
    db, wall = tmp_path / "b.db", WallClock()
    await _backlog_for_backup(db, wall)
    reader = BufferReader(db)
    try:
        assert set(await reader.backlog()) == {"orion", "backup"}
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
        await box.close()
        assert set(await reader.backlog()) == {"orion"}
        assert set(await reader.pending_entities("urn:")) == {"orion"}
        box = await Outbox.open(db, CFG, ["orion", "backup"], clock=wall)  # configured again
        await box.close()
        assert (await reader.backlog())["backup"] == {"alert": 2, "normal": 4, "bulk": 4}
    finally:
        await reader.close()
