"""Observation times from JSON fields: ISO 8601, epoch s/ms, strptime, Japanese local time; to UTC, sanity-checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

from adapters.jsonmap.config import TimeFormat, TimestampSection, WhenTimeMissing
from adapters.jsonmap.errors import FieldError, Problem, describe
from adapters.jsonmap.numbers import LargeNumber, number_text
from adapters.jsonmap.paths import MISSING, JsonPath, lookup, parse_path
from gateway.records import TimeSource

_UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
# A device or system whose clock was never set reports 1970 (Tasmota without NTP); such a time would
# roll the platform's entity back decades, so it is refused rather than stored.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=_UTC)
# A device's clock drifting unset and a source stamping the end of the interval in progress lead by minutes. The
# commonest fault, local time written with a "Z" or counted as epoch seconds as if UTC, leads by whole hours (9 in
# Japan): kept, it would be the entity's observedAt hours in the future. An adapter whose gateway clock may be
# the wrong one (not synchronised) decides on the time TimeAhead carries (gateway.device_clock).
MAX_AHEAD: Final = timedelta(minutes=15)
_AHEAD_TEXT = "15 min"
_HOUR = timedelta(hours=1)
# UTC offsets run to +14 h: a lead of whole hours beyond is a wrong date or clock, not a zone. A lead of about one
# hour is as often a source stamping the end of the hour in progress (an hourly total): not named a zone mistake.
_MIN_ZONE_HOURS, _MAX_ZONE_HOURS = 2, 14
# Japan Standard Time, the local time this product's sources write: a lead of exactly this is that time labelled UTC
_JST_HOURS = 9
_DAY = timedelta(days=1)
_ISO_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$", re.ASCII)
# Japanese systems write local time without an offset, in several spellings; full-width digits occur too.
_LOCAL_RE = re.compile(
    r"^\s*(\d{4})\s*[/.\-年]\s*(\d{1,2})\s*[/.\-月]\s*(\d{1,2})\s*日?\s*[T\s]?\s*"
    r"(\d{1,2})\s*[:時]\s*(\d{1,2})\s*分?\s*(?::\s*(\d{1,2})|(\d{1,2})\s*秒)?\s*$"
)
_HELP = {
    TimeFormat.ISO8601: "an ISO 8601 time like 2026-07-01T09:10:00+09:00",
    TimeFormat.EPOCH_S: "a number of seconds since 1970",
    TimeFormat.EPOCH_MS: "a number of milliseconds since 1970",
    TimeFormat.LOCAL: "a local time like 2026/07/01 09:10",
}
# A text shaped like a date and time (digits in the places of one, nothing else) holds no personal data,
# and its digits are what tells a technician why it failed (hour 25, a clock at 1970): it is quoted as
# it is. Anything else is masked (adapters.jsonmap.errors): a wrongly mapped field may hold a card number.
_TIME_SHAPE = re.compile(
    r"\s*\d{4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}\s*日?"
    r"(?:\s*[Tt ]?\s*\d{1,2}\s*[:時]\s*\d{1,2}\s*分?(?:\s*:\s*\d{1,2}|\s*\d{1,2}\s*秒)?(?:[.,]\d{1,9})?)?"
    r"\s*(?:[Zz]|[+-]\d{2}:?\d{2})?\s*"
)
_RANGE = f"must be after 2000-01-01 and at most {_AHEAD_TEXT} ahead"
_RANGE_FIX = "check the timestamp format and zone, or the source's clock"


def _utc(t: datetime, zone: tzinfo) -> datetime | None:
    if t.tzinfo is None:
        t = t.replace(tzinfo=zone)
    try:
        return t.astimezone(_UTC)
    except (OverflowError, ValueError):
        return None


def parse_iso(text: str, zone: tzinfo) -> datetime | None:
    """ISO 8601 (`T` or a blank, seconds optional, any fraction, `Z` or an offset; else in `zone`) in UTC.

    `T24:00` is the end of the day, the next day's 0:00, as ISO 8601 (before 2019) and hydrological
    tables write it.
    """
    m = _ISO_RE.match(text)
    if m is None:
        return None
    base, fraction, offset = m.groups()
    end_of_day = base[11:13] == "24"
    if end_of_day:
        if base[14:] not in ("00", "00:00") or (fraction and fraction.strip("0")):
            return None
        base, fraction = base[:11] + "00" + base[13:], None
    # ChirpStack writes nanoseconds; datetime keeps microseconds
    normalised = base.replace(" ", "T") + (f".{fraction[:6].ljust(6, '0')}" if fraction else "")
    if offset:
        normalised += "+00:00" if offset in ("Z", "z") else offset
    try:
        t = datetime.fromisoformat(normalised)
    except ValueError:
        return None
    if end_of_day:
        t += _DAY
    return _utc(t, zone)


def parse_local(text: str, zone: tzinfo) -> datetime | None:
    """Japanese local time (`2026/07/01 09:10`, `2026年7月1日 9時10分`, `24:00` = next day 0:00) in `zone`, to UTC."""
    m = _LOCAL_RE.match(text)
    if m is None:
        return None
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m.group(6) or m.group(7) or 0)
    # Japanese hydrological tables count hours 1-24: "24:00" closes the day and is the next day's 0:00
    extra = timedelta(0)
    if hour == 24 and minute == 0 and second == 0:
        hour, extra = 0, _DAY
    try:
        return _utc(datetime(year, month, day, hour, minute, second) + extra, zone)
    except (ValueError, OverflowError):
        return None


def parse_strptime(text: str, pattern: str, zone: tzinfo) -> datetime | None:
    """`text` read by a strptime `pattern`; with %z its offset, else `zone`; in UTC."""
    try:
        return _utc(datetime.strptime(text, pattern), zone)
    except (ValueError, OverflowError):
        return None


class _OutOfRange(Exception):
    """An epoch number so large or small that no datetime holds it."""


def parse_epoch(raw: Any, millis: bool) -> datetime | None:
    """Seconds or milliseconds since 1970 from a JSON number or a numeric string; None if it is neither.

    Raises _OutOfRange for a number no datetime can hold (it is a number, just not a plausible time).
    """
    t = raw.__class__
    if t is int or t is float:
        number: float | int = raw
    elif t is str:
        d = number_text(raw)
        if d is None:
            return None
        number = float(d)
    elif t is LargeNumber:
        number = raw.as_float()  # beyond 64 bits: no datetime holds it
    else:
        return None
    try:
        return _EPOCH + (timedelta(milliseconds=number) if millis else timedelta(seconds=number))
    except (OverflowError, ValueError):
        raise _OutOfRange from None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeRule:
    """A timestamp section compiled for the hot path."""

    path: JsonPath
    path_text: str
    format: TimeFormat
    pattern: str | None
    zone: tzinfo
    arrival_if_missing: bool
    arrival: str  # what "arrival" stamps, as messages say it: "the arrival time", "the poll time"


def compile_timestamp(t: TimestampSection, *, arrival: str) -> TimeRule:
    return TimeRule(
        path=parse_path(t.path),
        path_text=t.path,
        format=t.format,
        pattern=t.pattern,
        zone=ZoneInfo(t.zone),
        arrival_if_missing=t.missing is WhenTimeMissing.ARRIVAL,
        arrival=arrival,
    )


def quote_time(raw: Any) -> str:
    """A time value for a message: as it is when it is shaped like a date and time, else masked by `describe`."""
    if raw.__class__ is str and len(raw) <= 64 and _TIME_SHAPE.fullmatch(raw):
        return repr(raw)
    return describe(raw)


class TimeAhead(FieldError):
    """A time further ahead of the gateway clock than MAX_AHEAD; `time` is it, for an adapter that may keep it
    when its gateway clock cannot judge (gateway.device_clock.GatewayClock), `whole_hours` the lead when it is
    about a whole number of hours (a zone mistake, not a drifting clock), else 0."""

    def __init__(self, rule: TimeRule, raw: Any, t: datetime, now: datetime) -> None:
        lead = t - now
        hours = round(lead / _HOUR)
        self.time = t
        zone_like = _MIN_ZONE_HOURS <= hours <= _MAX_ZONE_HOURS and abs(lead - hours * _HOUR) <= MAX_AHEAD
        self.whole_hours = hours if zone_like else 0
        # the time as read too: an epoch number is masked in the quote
        what = f"must be at most {_AHEAD_TEXT} ahead of the gateway clock, got {quote_time(raw)} ({t.isoformat()}), "
        if self.whole_hours:
            what += f"{hours} h ahead: {_zone_advice(rule, raw, hours)}"
        else:
            what += f"{_lead_text(lead)} ahead; {_RANGE_FIX}"
        super().__init__(
            what, problem=Problem.BAD_TIMESTAMP, path=rule.path, path_text=rule.path_text, subject="timestamp"
        )


def _lead_text(lead: timedelta) -> str:
    """`2 days 3 h`, `3 h 20 min`, `40 min`."""
    minutes = int(lead.total_seconds()) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes and not days else []
    return " ".join(parts) or "0 min"


def _zone_advice(rule: TimeRule, raw: Any, hours: int) -> str:
    """The likely cause of a lead of whole hours, and the fix that applies to how the time is written."""
    cause = (
        "a local time (JST) written as UTC?"
        if hours == _JST_HOURS
        else "a local time of another zone written as UTC, or the source's clock set hours ahead?"
    )
    if rule.format is TimeFormat.EPOCH_S or rule.format is TimeFormat.EPOCH_MS:
        return f"{cause} epoch numbers count from 1970 in UTC: fix the source"
    written = _ISO_RE.match(raw) if rule.format is TimeFormat.ISO8601 and raw.__class__ is str else None
    if written is not None and written[3]:
        # its own offset overrides `zone`: only a pattern reading the offset as literal text lets the zone apply
        return (
            f'{cause} fix the source, or read it in the mapping\'s zone: format = "strptime" with the offset '
            'as literal text in the pattern (e.g. "%Y-%m-%dT%H:%M:%SZ")'
        )
    return f"{cause} set the mapping's zone or fix the source"


def _fail(rule: TimeRule, what: str) -> FieldError:
    return FieldError(
        what, problem=Problem.BAD_TIMESTAMP, path=rule.path, path_text=rule.path_text, subject="timestamp"
    )


def read_time(rule: TimeRule, raw: Any, now: datetime) -> datetime:
    """`raw` (present, not null) as a UTC time by the rule's format, after 2000, at most MAX_AHEAD ahead of `now`
    (TimeAhead if further)."""
    t: datetime | None = None
    try:
        if rule.format is TimeFormat.ISO8601:
            t = parse_iso(raw, rule.zone) if raw.__class__ is str else None
        elif rule.format is TimeFormat.EPOCH_S or rule.format is TimeFormat.EPOCH_MS:
            t = parse_epoch(raw, rule.format is TimeFormat.EPOCH_MS)
        elif raw.__class__ is str:
            if rule.format is TimeFormat.LOCAL:
                t = parse_local(raw, rule.zone)
            else:
                assert rule.pattern is not None  # the config requires it for strptime
                t = parse_strptime(raw, rule.pattern, rule.zone)
    except _OutOfRange:
        raise _fail(rule, f"{_RANGE}, got {quote_time(raw)}; {_RANGE_FIX}") from None
    if t is None:
        want = _HELP.get(rule.format) or f"a time matching {rule.pattern!r}"
        raise _fail(rule, f"must be {want}, got {quote_time(raw)}")
    if t < EARLIEST:
        raise _fail(rule, f"{_RANGE}, got {quote_time(raw)}; {_RANGE_FIX}")
    if t > now + MAX_AHEAD:
        raise TimeAhead(rule, raw, t, now)
    return t


def observed_at(
    rule: TimeRule | None, item: Any, now: datetime, null_values: frozenset[str] = frozenset()
) -> tuple[datetime, TimeSource]:
    """The item's observation time (device) or `now` (gateway) as the rule says; FieldError otherwise."""
    if rule is None:
        return now, TimeSource.GATEWAY
    raw = lookup(item, rule.path)
    if raw is MISSING or raw is None or (null_values and raw.__class__ is str and raw in null_values):
        if rule.arrival_if_missing:
            return now, TimeSource.GATEWAY
        # not absent, not null: one of the configured null strings, quoted as it is (configuration, not data)
        got = "no such field" if raw is MISSING else "null" if raw is None else repr(raw)
        raise FieldError(
            f'is missing, got {got}; set timestamp.missing = "arrival" to stamp {rule.arrival} instead',
            problem=Problem.MISSING_FIELD,
            path=rule.path,
            path_text=rule.path_text,
            subject="timestamp",
        )
    return read_time(rule, raw, now), TimeSource.DEVICE
