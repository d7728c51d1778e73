"""The GatewayClock rule over every gateway time, latest time the box knew, kernel answer and device time, and the
RFC 3164 year read after a time: the oracles are the rule as gateway/device_clock.py's docstring words it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.wifi_syslog.errors import SyslogHeaderError
from adapters.wifi_syslog.gateway_clock import GatewayClock
from adapters.wifi_syslog.message import SyslogFormat, SyslogMessage, encode_rfc3164, parse_syslog
from gateway.device_clock import MAX_LEAD
from gateway.wifilog.store import JST

LOG = logging.getLogger("adapters.wifi_syslog.receiver")
DAY = timedelta(days=1)
FLOOR = datetime(2026, 9, 1, tzinfo=UTC)
times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@settings(max_examples=500)
@example(now=FLOOR + DAY - timedelta(microseconds=1), floor=FLOOR, synced=False, device=FLOOR + DAY + MAX_LEAD)
@example(now=FLOOR + DAY, floor=FLOOR, synced=False, device=FLOOR + 2 * DAY + timedelta(microseconds=1))
@example(now=FLOOR + DAY, floor=FLOOR, synced=False, device=FLOOR + 2 * DAY)
@example(now=FLOOR + 30 * DAY, floor=FLOOR, synced=False, device=FLOOR + 760 * DAY)  # a right RTC, AP 2 years on
@example(now=datetime(1970, 1, 1, tzinfo=UTC), floor=FLOOR, synced=False, device=FLOOR + MAX_LEAD)
@example(now=datetime(1970, 1, 1, tzinfo=UTC), floor=FLOOR, synced=False, device=FLOOR)
@example(now=datetime(1970, 1, 1, tzinfo=UTC), floor=FLOOR, synced=True, device=FLOOR + DAY)
@given(
    now=times,
    floor=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    synced=st.sampled_from([True, False, None]),
    device=times,
)
def test_a_device_time_is_kept_only_after_an_unsynchronised_clock_by_at_most_its_lead(
    now: datetime, floor: datetime, synced: bool | None, device: datetime
) -> None:
    clock = GatewayClock(LOG, lambda: synced, ttl_s=0, not_before=floor)
    stale = now < floor + DAY  # at 1970, its build date, or set from the latest time it knew and not a day on
    after = max(floor, now)
    lead = MAX_LEAD if stale else DAY
    assert clock.keeps("192.0.2.7", device, now) == (synced is False and after < device <= after + lead)
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
