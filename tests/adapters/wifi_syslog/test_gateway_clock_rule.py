"""The GatewayClock rule over every gateway time, boot start, RTC, latest time the box knew, kernel answer, device
time and guessed year, and the RFC 3164 year read after a time: the oracles are the rule as
gateway/device_clock.py's docstring words it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.wifi_syslog.errors import SyslogHeaderError
from adapters.wifi_syslog.gateway_clock import WORDS
from adapters.wifi_syslog.message import SyslogFormat, SyslogMessage, encode_rfc3164, parse_syslog
from gateway.device_clock import MAX_LEAD, GatewayClock, HostClock
from gateway.wifilog.store import JST

LOG = logging.getLogger("adapters.wifi_syslog.receiver")
DAY = timedelta(days=1)
H = timedelta(hours=1)
S = timedelta(seconds=1)
ZERO = timedelta(0)
FLOOR = datetime(2026, 9, 1, tzinfo=UTC)
times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


E = timedelta(microseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@settings(max_examples=500)
@example(
    now=FLOOR + DAY - E, up=ZERO, rtc=False, floor=FLOOR, synced=False, device=FLOOR + DAY + MAX_LEAD, guessed=False
)
@example(now=FLOOR + DAY, up=ZERO, rtc=False, floor=FLOOR, synced=False, device=FLOOR + 2 * DAY + E, guessed=False)
@example(now=FLOOR + DAY, up=ZERO, rtc=False, floor=FLOOR, synced=False, device=FLOOR + 2 * DAY, guessed=False)
# a right RTC started a month after the floor, AP 2 years on
@example(now=FLOOR + 30 * DAY, up=DAY, rtc=True, floor=FLOOR, synced=False, device=FLOOR + 760 * DAY, guessed=False)
# no RTC, set from the saved time, 25 h on (no_rtc_day2.py): stale still, an AP 10 days ahead is kept
@example(now=FLOOR + 25 * H, up=25 * H, rtc=False, floor=FLOOR, synced=False, device=FLOOR + 11 * DAY, guessed=False)
# an RTC started 5 min after the floor: believed in its first hour
@example(now=FLOOR + H, up=H - 5 * 60 * S, rtc=True, floor=FLOOR, synced=False, device=FLOOR + 700 * DAY, guessed=False)
@example(now=FLOOR + H, up=H, rtc=True, floor=FLOOR, synced=False, device=FLOOR + 700 * DAY, guessed=False)
# a year guessed for a reset AP's "Jan  1" (reset_ap.py): 205 days past a stale clock, not kept
@example(
    now=FLOOR + 10 * 60 * S,
    up=10 * 60 * S,
    rtc=False,
    floor=FLOOR,
    synced=False,
    device=FLOOR + 205 * DAY,
    guessed=True,
)
@example(now=EPOCH, up=42 * S, rtc=False, floor=FLOOR, synced=False, device=FLOOR + DAY, guessed=True)
@example(now=EPOCH, up=42 * S, rtc=False, floor=FLOOR, synced=False, device=FLOOR + DAY + E, guessed=True)
@example(now=EPOCH, up=ZERO, rtc=False, floor=FLOOR, synced=False, device=FLOOR + MAX_LEAD, guessed=False)
@example(now=EPOCH, up=ZERO, rtc=True, floor=FLOOR, synced=False, device=FLOOR, guessed=False)
@example(now=EPOCH, up=ZERO, rtc=False, floor=FLOOR, synced=True, device=FLOOR + DAY, guessed=False)
@given(
    now=times,
    up=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3000)),
    rtc=st.booleans(),
    floor=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    synced=st.sampled_from([True, False, None]),
    device=times,
    guessed=st.booleans(),
)
def test_a_device_time_is_kept_only_after_an_unsynchronised_clock_by_at_most_its_lead(
    now: datetime, up: timedelta, rtc: bool, floor: datetime, synced: bool | None, device: datetime, guessed: bool
) -> None:
    host = HostClock(synced=synced, uptime_s=up.total_seconds(), rtc=rtc)
    clock = GatewayClock(LOG, lambda: host, words=WORDS, ttl_s=0, not_before=floor)
    # where the clock started this boot: at 1970, its build date or the saved time (stale for the whole boot), or
    # after the floor by its RTC (a box without one: more than a day after, as no saved time was)
    stale = now - up < floor + (ZERO if rtc else DAY)
    after = max(floor, now)
    lead = MAX_LEAD if stale and not guessed else DAY
    assert clock.stale(now) == stale
    assert clock.keeps("192.0.2.7", device, now, year_guessed=guessed) == (
        synced is False and after < device <= after + lead
    )
    assert clock.dates_after(now) == (after if synced is False and stale else None)
    assert (clock.doubt(now) is None) == (synced is not False)


def year_less(t: datetime) -> bytes:
    msg = SyslogMessage(
        format=SyslogFormat.RFC3164,
        facility=3,
        severity=6,
        timestamp=t,
        hostname="ap1",
        app_name="hostapd",
        message="wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:01",
    )
    return encode_rfc3164(msg, zone=JST)


@settings(max_examples=500)
@example(after=datetime(2026, 12, 31, 14, 50, tzinfo=UTC), seconds=20 * 60)  # 23:50 JST, the line at 00:10
@example(after=datetime(2026, 12, 31, 14, 50, tzinfo=UTC), seconds=-86_399)
@example(after=datetime(2027, 3, 1, tzinfo=UTC), seconds=364 * 86_400)  # the next Feb 29, of 2028
@example(after=datetime(2028, 2, 29, 12, tzinfo=UTC), seconds=-3600)
@given(
    after=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    seconds=st.integers(-86_399, 364 * 86_400),
)
def test_a_year_less_line_read_after_a_time_gets_the_year_that_puts_it_first_after_that_time_less_a_day(
    after: datetime, seconds: int
) -> None:
    t = (after + timedelta(seconds=seconds)).replace(microsecond=0)
    far = datetime(1970, 1, 1, tzinfo=UTC)  # the gateway's clock, whose year the line must not take
    assert parse_syslog(year_less(t), now=far, year_after=after).timestamp == t


def test_a_date_no_year_has_read_after_a_time_is_named_not_placed_in_some_year() -> None:
    after = datetime(2026, 6, 1, tzinfo=UTC)
    with pytest.raises(SyslogHeaderError, match=r'not a valid date or time in 2026 .*got "Feb 30 10:00:00"'):
        parse_syslog(b"<13>Feb 30 10:00:00 ap1 hello", now=datetime(1970, 1, 1, tzinfo=UTC), year_after=after)
