"""A removed uplink's keep period on the buffer's age clock: dates shown on the wall clock, stamps that follow it.

The reviewer's cases: the "kept until" date was the age clock's, printed as a UTC date (off by the
clock offset: after NTP stepped the clock back 10 days, the log promised a date 10 days after the
drop); an empty outbox that put the age clock back on the wall clock left the removal stamps on the
old offset (a period stamped a year ahead lasted a year longer, its cursor holding every new row);
and the WARNING said "keeping its 0 undelivered rows" while the cursor held every row appended since.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.buffer.outbox import Outbox
from gateway.buffer.schema import connect
from gateway.records import Lane
from gateway.uplinks.api import DELIVERED
from tests.buffer.readings import reading
from tests.buffer.test_cli import _run
from tests.buffer.test_removed_uplink import CFG, DAY, DROPPED, WallClock, kept_line

SLACK = timedelta(seconds=5)  # the test's own run time between reading the wall clock and the buffer's stamp


def wall_now(wall: WallClock) -> datetime:
    return datetime.fromtimestamp(wall(), UTC)


async def deliver(box: Outbox, name: str) -> None:
    batch = await box.read(name, 1000)
    await box.ack(name, batch, [DELIVERED] * len(batch))


async def _stepped_backlog(db: Path, wall: WallClock, step_s: float) -> None:
    """5 rows backup has not delivered; the wall clock stepped by `step_s` while the gateway ran."""
    box = await Outbox.open(db, CFG, ["orion", "backup"], clock=wall)
    await box.append_many([reading(i, "gauge", Lane.NORMAL) for i in range(5)])
    await deliver(box, "orion")
    wall.offset += step_s
    await box.stats()  # the writer looks at the clock before stats: the offset takes the step out
    await box.close()


@pytest.mark.parametrize("step_days", [-10, 10])
async def test_the_promised_date_is_the_wall_clocks_and_the_backlog_goes_then(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, step_days: int
) -> None:
    db, wall = tmp_path / "b.db", WallClock()
    await _stepped_backlog(db, wall, step_days * DAY)

    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    now = wall_now(wall)
    kept = (await box.stats()).kept_uplinks["backup"]
    await box.close()
    assert now - SLACK <= kept.removed_at <= now
    assert kept.kept_until - kept.removed_at == timedelta(days=7)
    assert caplog.messages == [kept_line("backup", 5, kept.kept_until)]

    # the technician comes back an hour before the promised date: still there; an hour after: gone
    wall.offset += 7 * DAY - 3600
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    assert list((await box.stats()).kept_uplinks) == ["backup"]
    await box.close()
    wall.offset += 2 * 3600
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    assert caplog.messages == [DROPPED]
    await box.close()


async def test_buffer_stats_shows_the_wall_clocks_date_after_a_step(tmp_path: Path) -> None:
    # `edgegw buffer stats` reads the file on the real clock: the gateway's clock ran 10 days ahead
    # and was stepped back to it while running, so the file's age clock is 10 days ahead of the wall
    db, wall = tmp_path / "buffer.db", WallClock()
    wall.offset = 10 * DAY
    await _stepped_backlog(db, wall, -10 * DAY)
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    await box.close()
    now = wall_now(wall)

    code, doc = _run(db, "stats", "--json")
    assert code == 0
    kept = json.loads(doc)["kept_uplinks"]["backup"]
    removed_at, until = datetime.fromisoformat(kept["removed_at"]), datetime.fromisoformat(kept["kept_until"])
    assert now - SLACK <= removed_at <= now
    assert until - removed_at == timedelta(days=7)
    code, text = _run(db, "stats")
    assert code == 0
    assert (
        f"5 undelivered rows ({kept['alone']} of them for it alone) and every row appended until {until:%Y-%m-%d %H:%M} UTC;"
        in text
    )


async def test_an_empty_outbox_back_on_the_wall_clock_takes_the_period_with_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A box whose clock ran a year ahead was stepped back while running: its age clock is a year ahead."""
    db, wall = tmp_path / "b.db", WallClock()
    box = await Outbox.open(db, CFG, ["orion", "backup"], clock=wall)
    await box.append_many([reading(i, "gauge", Lane.NORMAL) for i in range(3)])
    await deliver(box, "backup")
    wall.offset -= 365 * DAY
    await box.stats()
    await box.close()

    box = await Outbox.open(db, CFG, ["orion"], clock=wall)  # backup removed, nothing undelivered
    removed = (await box.stats()).kept_uplinks["backup"]
    await deliver(box, "orion")
    assert (await box.stats()).rows == 0
    await box.close()

    box = await Outbox.open(db, CFG, ["orion"], clock=wall)  # empty: the age clock is the wall clock again
    kept = (await box.stats()).kept_uplinks["backup"]
    await box.close()
    assert (kept.removed_at, kept.kept_until) == (removed.removed_at, removed.kept_until)
    conn = connect(db, durability=None)
    try:  # the stamps were moved with the offset, in the file too
        counters = dict(
            conn.execute("SELECT name, value FROM counters WHERE name LIKE 'uplink.%' OR name LIKE 'clock.%'")
        )
    finally:
        conn.close()
    assert counters.get("clock.offset_ms", 0) == 0
    assert counters["uplink.kept_until_ms.backup"] == round(kept.kept_until.timestamp() * 1000)

    wall.offset += 7 * DAY + 60
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    assert caplog.messages == [DROPPED]
    await box.append_many([reading(100 + i, "gauge", Lane.NORMAL) for i in range(50)])
    await deliver(box, "orion")
    stats = await box.stats()
    await box.close()
    assert (stats.kept_uplinks, stats.rows) == ({}, 0)  # nothing held for an uplink gone for good


async def test_a_clock_set_back_while_stopped_does_not_lengthen_the_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reboot without RTC, months behind, with an empty outbox: the age clock starts at the removal,
    as it starts at the newest row (time stopped is not counted), and the period is 7 days from there."""
    db, wall = tmp_path / "b.db", WallClock()
    box = await Outbox.open(db, CFG, ["orion", "backup"], clock=wall)
    await box.append_many([reading(i, "gauge", Lane.NORMAL) for i in range(3)])
    await deliver(box, "backup")
    await box.close()
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    await deliver(box, "orion")
    await box.close()

    wall.offset -= 90 * DAY
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    now = wall_now(wall)
    kept = (await box.stats()).kept_uplinks["backup"]
    await box.close()
    assert now - SLACK <= kept.removed_at <= now
    assert kept.kept_until - kept.removed_at == timedelta(days=7)

    wall.offset += 7 * DAY + 60
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    assert caplog.messages == [DROPPED]
    await box.close()


async def test_the_warning_counts_what_the_kept_cursors_hold_and_says_new_rows_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, wall = tmp_path / "b.db", WallClock()
    box = await Outbox.open(db, CFG, ["orion", "backup"], clock=wall)
    await box.append_many([reading(i, "gauge", Lane.NORMAL) for i in range(6)])
    batch = await box.read("backup", 2)
    await box.ack("backup", batch, [DELIVERED] * 2)
    batch = await box.read("orion", 4)
    await box.ack("orion", batch, [DELIVERED] * 4)
    await box.close()

    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    until = (await box.stats()).kept_uplinks["backup"].kept_until
    # 4 rows past backup's cursor; orion still needs the last 2, so 2 are in the buffer for backup alone
    assert caplog.messages == [kept_line("backup", 4, until, alone=2)]
    await box.append_many([reading(100 + i, "gauge", Lane.NORMAL) for i in range(50)])
    await deliver(box, "orion")
    await box.close()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    stats = await box.stats()
    await box.close()
    assert caplog.messages == [kept_line("backup", 54, until, alone=54)]
    assert stats.rows == 54
