"""The bound ahead of the gateway clock: minutes of drift pass, a local time written as UTC (whole hours) is named.

Regression of review 2: up to a day ahead was accepted, so JST labelled UTC became observedAt 9 h in the future.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.jsonmap.config import TimestampSection
from adapters.jsonmap.timestamps import MAX_AHEAD, TimeAhead, TimeRule, compile_timestamp, read_time

NOW = datetime(2026, 7, 1, 1, 0, tzinfo=UTC)  # 10:00 JST


def time_rule(format: str = "iso8601", **more: Any) -> TimeRule:
    return compile_timestamp(
        TimestampSection.model_validate({"path": "t", "format": format, **more}), arrival="the arrival time"
    )


def iso_z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@settings(max_examples=300, deadline=None)
@given(lead=st.timedeltas(min_value=-timedelta(days=30), max_value=timedelta(days=60)))
def test_a_time_is_kept_exactly_up_to_fifteen_minutes_ahead(lead: timedelta) -> None:
    t = NOW + lead
    if lead <= MAX_AHEAD:
        assert read_time(time_rule(), iso_z(t), NOW) == t
        return
    with pytest.raises(TimeAhead) as info:
        read_time(time_rule(), iso_z(t), NOW)
    assert info.value.time == t
    hours = round(lead / timedelta(hours=1))
    zone_like = 2 <= hours <= 14 and abs(lead - timedelta(hours=hours)) <= timedelta(minutes=15)
    assert info.value.whole_hours == (hours if zone_like else 0)
    assert str(info.value).startswith(
        f"t (timestamp): must be at most 15 min ahead of the gateway clock, got '{iso_z(t)}'"
    )
    assert (f"{hours} h ahead: " in str(info.value)) is zone_like


@pytest.mark.parametrize(
    ("fmt", "raw", "message"),
    [
        (
            {"format": "epoch_s"},
            1782900000,  # 10:00 JST counted as if UTC
            "t (timestamp): must be at most 15 min ahead of the gateway clock, got <10 digits> "
            "(2026-07-01T10:00:00+00:00), 9 h ahead: a local time (JST) written as UTC? epoch numbers count from "
            "1970 in UTC: fix the source",
        ),
        (
            {"format": "local", "zone": "UTC"},
            "2026/07/01 09:58",  # JST read in the wrong zone, two minutes old
            "t (timestamp): must be at most 15 min ahead of the gateway clock, got '2026/07/01 09:58' "
            "(2026-07-01T09:58:00+00:00), 9 h ahead: a local time (JST) written as UTC? set the mapping's zone or "
            "fix the source",
        ),
        (
            {},
            "2026-07-01T04:00:00Z",
            "t (timestamp): must be at most 15 min ahead of the gateway clock, got '2026-07-01T04:00:00Z' "
            "(2026-07-01T04:00:00+00:00), 3 h ahead: a local time of another zone written as UTC, or the source's "
            'clock set hours ahead? fix the source, or read it in the mapping\'s zone: format = "strptime" with the '
            'offset as literal text in the pattern (e.g. "%Y-%m-%dT%H:%M:%SZ")',
        ),
        (
            {},
            "2026-07-01T01:40:00+00:00",
            "t (timestamp): must be at most 15 min ahead of the gateway clock, got '2026-07-01T01:40:00+00:00' "
            "(2026-07-01T01:40:00+00:00), 40 min ahead; check the timestamp format and zone, or the source's clock",
        ),
    ],
)
def test_times_ahead_have_exact_messages(fmt: dict[str, Any], raw: Any, message: str) -> None:
    with pytest.raises(TimeAhead) as info:
        read_time(time_rule(**fmt), raw, NOW)
    assert str(info.value) == message


def test_a_strptime_pattern_reads_jst_labelled_utc_in_the_zone() -> None:
    # the fix the message gives for an ISO text with a "Z" that is local time
    rule = time_rule("strptime", pattern="%Y-%m-%dT%H:%M:%SZ")
    assert read_time(rule, "2026-07-01T10:00:00Z", NOW) == NOW


def test_an_hourly_total_stamped_with_the_end_of_the_hour_is_not_called_a_zone_mistake() -> None:
    """Regression of review 3: 11:00 JST read at 10:05 JST (the hour in progress) was '1 h ahead: a local time of
    another zone written as UTC?', advice that would break the right readings."""
    rule = time_rule(format="local", zone="Asia/Tokyo")
    with pytest.raises(TimeAhead) as info:
        read_time(rule, "2026/07/01 11:00", datetime(2026, 7, 1, 1, 5, tzinfo=UTC))
    assert info.value.whole_hours == 0
    assert "written as UTC" not in str(info.value)
    assert "55 min ahead; check the timestamp format and zone, or the source's clock" in str(info.value)
