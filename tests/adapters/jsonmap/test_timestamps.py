"""Observation times: every format to the same UTC instant, Japanese spellings, and typed errors for anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.jsonmap.config import TimestampSection
from adapters.jsonmap.errors import FieldError, Problem
from adapters.jsonmap.timestamps import TimeRule, compile_timestamp, observed_at, parse_iso, parse_local, read_time
from gateway.records import TimeSource

UTC = UTC
JST = timezone(timedelta(hours=9))  # Asia/Tokyo has had no DST since 1951
NOW = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
WHEN = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2026, 6, 30))
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def time_rule(format: str = "iso8601", **more: Any) -> TimeRule:
    return compile_timestamp(
        TimestampSection.model_validate({"path": "t", "format": format, **more}), arrival="the arrival time"
    )


def bad(rule: TimeRule, raw: Any) -> tuple[str, str]:
    with pytest.raises(FieldError) as info:
        read_time(rule, raw, NOW)
    return info.value.problem.value, str(info.value)


@settings(max_examples=200, deadline=None)
@given(when=WHEN, offset_min=st.integers(-12 * 60, 14 * 60), micro=st.integers(0, 999_999), zulu=st.booleans())
def test_iso_times_with_offsets_are_the_same_instant(when: datetime, offset_min: int, micro: int, zulu: bool) -> None:
    aware = when.replace(microsecond=micro, tzinfo=UTC if zulu else timezone(timedelta(minutes=offset_min)))
    text = aware.isoformat().replace("+00:00", "Z") if zulu else aware.isoformat()
    assert read_time(time_rule(), text, NOW) == aware


@settings(max_examples=150, deadline=None)
@given(
    naive=WHEN,
    spelling=st.sampled_from(
        ["%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y年%m月%d日 %H時%M分%S秒", "%Y.%m.%d %H:%M:%S"]
    ),
    wide=st.booleans(),
)
def test_japanese_local_times_are_read_in_the_zone(naive: datetime, spelling: str, wide: bool) -> None:
    naive = naive.replace(microsecond=0)
    text = naive.strftime(spelling)
    if wide:
        text = text.translate(FULL_WIDTH)
    assert read_time(time_rule("local"), text, NOW) == naive.replace(tzinfo=JST)
    assert read_time(time_rule("local", zone="UTC"), text, NOW) == naive.replace(tzinfo=UTC)


@settings(max_examples=150, deadline=None)
@given(day=st.dates(min_value=datetime(2000, 1, 2).date(), max_value=datetime(2026, 6, 29).date()))
def test_24_00_is_the_next_days_midnight_in_local_and_iso(day: Any) -> None:
    midnight = datetime(day.year, day.month, day.day, tzinfo=JST) + timedelta(days=1)
    assert read_time(time_rule("local"), f"{day:%Y/%m/%d} 24:00", NOW) == midnight
    assert read_time(time_rule(), f"{day:%Y-%m-%d}T24:00:00+09:00", NOW) == midnight
    assert read_time(time_rule(), f"{day:%Y-%m-%d}T24:00", NOW) == midnight  # no offset: the zone


@settings(max_examples=150, deadline=None)
@given(
    when=st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2026, 6, 30), timezones=st.just(UTC)),
    as_text=st.booleans(),
)
def test_epoch_numbers_and_numeric_strings(when: datetime, as_text: bool) -> None:
    ms = round(when.timestamp() * 1000)
    s = ms // 1000
    raw_ms: Any = str(ms) if as_text else ms
    raw_s: Any = str(s) if as_text else s
    assert read_time(time_rule("epoch_ms"), raw_ms, NOW) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        milliseconds=ms
    )
    assert read_time(time_rule("epoch_s"), raw_s, NOW) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=s)


ANY = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.lists(st.integers(), max_size=2)
    | st.sampled_from(
        [
            "2026/07/01 09:10",
            "2026-07-01T09:10:00Z",
            "2026-07-01T24:00:00Z",
            "2026-07-01T24:30",
            "1782864600",
            "1e400",
            "NaN",
            "2026年7月1日 9時10分",
            "202607010910",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
        ]
    )
)
FORMATS = st.sampled_from(
    [
        {"format": "iso8601"},
        {"format": "epoch_s"},
        {"format": "epoch_ms"},
        {"format": "local"},
        {"format": "strptime", "pattern": "%Y%m%d%H%M"},
    ]
)


@settings(max_examples=400, deadline=None)
@given(raw=ANY, fmt=FORMATS)
def test_anything_is_a_plausible_utc_time_or_a_bad_timestamp(raw: Any, fmt: dict[str, Any]) -> None:
    try:
        t = read_time(time_rule(**fmt), raw, NOW)
    except FieldError as exc:
        assert exc.problem is Problem.BAD_TIMESTAMP  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        assert str(exc).startswith("t (timestamp): must be ")  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        return
    assert t.tzinfo is UTC
    assert datetime(2000, 1, 1, tzinfo=UTC) <= t <= NOW + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("fmt", "raw", "message"),
    [
        (
            {},
            "May 1 12:25",
            "t (timestamp): must be an ISO 8601 time like 2026-07-01T09:10:00+09:00, got '<3 letters> <1 digit> <2 digits>:<2 digits>'",
        ),
        ({}, 1714532400, "t (timestamp): must be an ISO 8601 time like 2026-07-01T09:10:00+09:00, got <10 digits>"),
        (
            {},
            "2026-07-01T24:30:00",
            "t (timestamp): must be an ISO 8601 time like 2026-07-01T09:10:00+09:00, got '2026-07-01T24:30:00'",
        ),
        (
            {"format": "epoch_ms"},
            "yesterday",
            "t (timestamp): must be a number of milliseconds since 1970, got '<9 letters>'",
        ),
        ({"format": "epoch_s"}, True, "t (timestamp): must be a number of seconds since 1970, got True"),
        (
            {"format": "epoch_ms"},
            1e300,
            "t (timestamp): must be after 2000-01-01 and at most 15 min ahead, got <1 digit>e+<3 digits>; "
            "check the timestamp format and zone, or the source's clock",
        ),
        (
            {"format": "epoch_s"},
            1782864600000,
            "t (timestamp): must be after 2000-01-01 and at most 15 min ahead, got "
            "<13 digits>; check the timestamp format and zone, or the source's clock",
        ),  # milliseconds read as seconds
        (
            {"format": "local"},
            "2026/07/01 25:00",
            "t (timestamp): must be a local time like 2026/07/01 09:10, got '2026/07/01 25:00'",
        ),
        (
            {"format": "strptime", "pattern": "%Y%m%d%H%M"},
            "2026-07-01",
            "t (timestamp): must be a time matching '%Y%m%d%H%M', got '2026-07-01'",
        ),
        (
            {},
            "1970-01-01T00:00:15",
            "t (timestamp): must be after 2000-01-01 and at most 15 min ahead, got "
            "'1970-01-01T00:00:15'; check the timestamp format and zone, or the source's clock",
        ),
    ],
)
def test_bad_times_have_exact_messages(fmt: dict[str, Any], raw: Any, message: str) -> None:
    assert bad(time_rule(**fmt), raw) == ("bad_timestamp", message)


def test_missing_time_is_rejected_or_stamped_with_the_arrival_time() -> None:
    item = {"t": "欠測"}
    with pytest.raises(FieldError) as info:
        observed_at(time_rule(), item, NOW, frozenset({"欠測"}))
    assert (info.value.problem, str(info.value)) == (
        Problem.MISSING_FIELD,
        "t (timestamp): is missing, got '欠測'; set timestamp.missing = \"arrival\" to stamp the arrival time instead",
    )
    with pytest.raises(FieldError) as info:
        observed_at(time_rule(), {"t": None}, NOW)
    assert str(info.value).startswith("t (timestamp): is missing, got null; ")
    assert observed_at(time_rule(missing="arrival"), {}, NOW) == (NOW, TimeSource.GATEWAY)
    assert observed_at(None, {"t": "2026-07-01T09:00:00+09:00"}, NOW) == (NOW, TimeSource.GATEWAY)
    assert observed_at(time_rule(), {"t": "2026-07-01T09:00:00+09:00"}, NOW) == (
        datetime(2026, 7, 1, 0, tzinfo=UTC),
        TimeSource.DEVICE,
    )


def test_parsers_answer_none_rather_than_raise() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    assert parse_iso("2024-05-01T03:00:00.123456789+00:00", tokyo) == datetime(2024, 5, 1, 3, 0, 0, 123456, tzinfo=UTC)
    assert parse_iso("2024-05-01 12:00", tokyo) == datetime(2024, 5, 1, 3, tzinfo=UTC)
    assert parse_iso("0001-01-01T00:00:00+14:00", tokyo) is None  # before year 1 in UTC
    assert parse_iso("2024-13-01T00:00:00Z", tokyo) is None
    assert parse_local("2026/02/30 09:10", tokyo) is None
    assert parse_local("2026/07/01 24:10", tokyo) is None
