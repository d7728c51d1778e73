"""A step of the wall clock (NTP correcting a box without RTC, before or after a reboot) never ages buffered readings.

The wall clock here is the real one plus an offset the test moves: a step is a change of the offset
while the process runs (the monotonic clock does not follow it); time the gateway was stopped is a
forward change between close and open, which counts as age as before.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.records import Lane
from tests.buffer.readings import ns, reading

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1, max_age_s=3600)
DAY = 86_400
POLICY = "(policy: bulk, then normal; alert never)"


class WallClock:
    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_a_step_forward_while_running_ages_no_reading(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # the reviewer's case: booted ~15 months behind, readings buffered while offline, then NTP
    db, wall = tmp_path / "b.db", WallClock(-450 * DAY)
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    await box.append_many([reading(i, "gauge1", Lane.NORMAL) for i in range(100)])
    await box.append_many([reading(i, "log1", Lane.BULK) for i in range(100, 150)])
    await box.append_many([reading(i, "alarm1", Lane.ALERT) for i in range(150, 160)])
    wall.offset = 0.0
    with caplog.at_level(logging.INFO, logger="gateway.buffer"):
        stats = await box.stats()  # the writer looks at the clock first, as it does every second
        await box.close()
    assert stats.dropped == {}
    assert stats.oldest_appended_age_s is not None and stats.oldest_appended_age_s < 60
    assert (
        len([m for m in caplog.messages if m.startswith("buffer: the wall clock stepped forward by 38880000 s")]) == 1
    )

    box = await Outbox.open(db, CFG, ["orion"], clock=wall)  # drops what max_age_s says, at once
    stats = await box.stats()
    assert stats.dropped == {}
    assert stats.oldest_appended_age_s is not None and stats.oldest_appended_age_s < 60
    assert ns(await box.read("orion", 1000)) == [*range(150, 160), *range(100), *range(100, 150)]
    await box.close()


async def test_readings_from_before_a_reboot_with_the_clock_behind_keep_their_age_through_ntp(tmp_path: Path) -> None:
    db, wall = tmp_path / "b.db", WallClock()
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    await box.append_many([reading(i, "gauge1", Lane.NORMAL) for i in range(10)])
    await box.close()
    wall.offset = -450 * DAY  # the box restarts without RTC: its clock is months behind those rows
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    await box.append_many([reading(i, "log1", Lane.BULK) for i in range(10, 20)])
    wall.offset = 0.0  # NTP, later
    stats = await box.stats()
    assert stats.dropped == {}
    assert stats.oldest_appended_age_s is not None and stats.oldest_appended_age_s < 60
    await box.close()

    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    assert (await box.stats()).dropped == {}
    assert ns(await box.read("orion", 100)) == list(range(20))
    await box.close()


@pytest.mark.parametrize("stored", ["committed", "queued"])
async def test_a_step_back_neither_ages_readings_stamped_before_the_writer_noticed_nor_stops_ageing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stored: str
) -> None:
    db, wall = tmp_path / "b.db", WallClock(365 * DAY)  # a clock a year ahead (a bad RTC)
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    await box.append_many([reading(i, "gauge1", Lane.NORMAL) for i in range(5)])
    await box.close()
    wall.offset += 1800  # the gateway was stopped for half an hour: that counts
    # "queued": the rows are still waiting for their commit when the writer sees the step
    cfg = CFG if stored == "committed" else CFG.model_copy(update={"commit_interval_ms": 1000, "commit_quiet_ms": 1000})
    box = await Outbox.open(db, cfg, ["orion"], clock=wall)
    wall.offset -= 365 * DAY  # NTP steps the clock back a year...
    appended = box.append_many([reading(i, "log1", Lane.BULK) for i in range(5, 10)])  # ...just before these came
    if stored == "committed":
        await appended
    with caplog.at_level(logging.INFO, logger="gateway.buffer"):
        assert (await box.stats()).dropped == {}
        await appended
        await box.close()
    assert len([m for m in caplog.messages if m.startswith("buffer: the wall clock stepped back by 31536000 s")]) == 1
    wall.offset += 1900  # stopped again: the first five are 3,700 s old now, past max_age_s, the others 1,900 s

    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
        stats = await box.stats()
        assert ns(await box.read("orion", 100)) == list(range(5, 10))
        await box.close()
    assert stats.dropped == {"normal": {"max_age": 5}}
    assert stats.oldest_appended_age_s is not None and 1900 <= stats.oldest_appended_age_s < 1960
    assert f"buffer: cap max_age reached, dropping the oldest normal rows {POLICY}" in caplog.messages


async def test_the_cap_warning_names_every_lane_it_drops_from(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db, wall = tmp_path / "b.db", WallClock()
    box = await Outbox.open(db, CFG, ["orion"], clock=wall)
    await box.append_many([reading(i, "gauge1", Lane.NORMAL) for i in range(3)])
    await box.append_many([reading(i, "log1", Lane.BULK) for i in range(3, 5)])
    await box.append_many([reading(i, "alarm1", Lane.ALERT) for i in range(5, 6)])
    await box.close()
    wall.offset += 3601
    with caplog.at_level(logging.WARNING, logger="gateway.buffer"):
        box = await Outbox.open(db, CFG, ["orion"], clock=wall)
        stats = await box.stats()
        await box.close()
    assert stats.dropped == {"bulk": {"max_age": 2}, "normal": {"max_age": 3}}
    assert caplog.messages == [f"buffer: cap max_age reached, dropping the oldest bulk and normal rows {POLICY}"]
