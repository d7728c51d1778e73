"""Syslog messages: RFC 3164 and RFC 5424 text in, typed SyslogMessage out (and back), no I/O, no clock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import NamedTuple
from zoneinfo import ZoneInfo

from adapters.radius.mac import redact_macs
from adapters.wifi_syslog.errors import SyslogHeaderError, SyslogStructuredDataError, quote

__all__ = [
    "DEFAULT_ZONE",
    "YEAR_SLACK",
    "SDElement",
    "SyslogFormat",
    "SyslogMessage",
    "encode_rfc3164",
    "encode_rfc5424",
    "parse_syslog",
]

DEFAULT_ZONE = ZoneInfo("Asia/Tokyo")
_MONTHS = {
    m: i for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)
}
_MONTH_NAMES = {i: m for m, i in _MONTHS.items()}
# An RFC 3164 line read after a time (`year_after`) may be this much before it and still be of that year: a line
# delayed (a relay's queue) rather than one of the next year
YEAR_SLACK = timedelta(days=1)

_PRI = re.compile(r"<(\d{1,3})>")
# RFC 3164 4.1.2 TIMESTAMP (day space-padded), with the fractional seconds some daemons append.
_TS3164 = re.compile(r"([A-Z][a-z]{2}) ([ 1-3]?\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? ")
# RFC 3164 TAG: vendors exceed its 32 alphanumerics (UniFi puts `<ap-mac>,<model>-<version>` there).
_TAG = re.compile(r"([^\s:\[\]]{1,64})(?:\[([^\]\s]{0,128})\])?: ?")
_HEAD5424 = re.compile(r"([1-9]\d{0,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ")
_TS5424 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)")
_SD_NAME = re.compile(r"[!#-<>-\\^-~]{1,32}")  # PRINTUSASCII except '=', SP, ']' and '"'
_SD_PARAM = re.compile(r'([!#-<>-\\^-~]{1,32})="((?:[^"\\\]]|\\.)*)"', re.DOTALL)
_SD_OPEN_VALUE = re.compile(r'(?:[^"\\\]]|\\.)*(?:\\)?\Z', re.DOTALL)  # runs to the end: never closed
_SD_UNESCAPE = re.compile(r'\\(["\\\]])')

# Fast path (bench/codec_bench_radius_syslog.py): one regex call for what the general path checks
# in several steps (PRI, then the RFC 5424 header and its field checks, or the RFC 3164 timestamp,
# HOSTNAME and TAG). It matches a subset of the lines the general path's regexes match (ASCII digits
# only, 5424 fields already within the RFC's limits) and yields the same fields for them; everything
# else takes the general path. What follows a match (calendar checks, STRUCTURED-DATA) is code both
# paths share, so every error reads the same. The 3164 HOSTNAME and TAG groups are optional exactly
# where the general path falls back to "no hostname" / "no tag".
_FAST = re.compile(
    r"<(0|[1-9][0-9]?|1[0-8][0-9]|19[01])>(?:"  # 1: PRI, 0..191 without leading zeros
    # 2-6: RFC 5424 TIMESTAMP, then HOSTNAME APP-NAME PROCID MSGID as PRINTUSASCII within their limits
    r"1 (-|[0-9]{4}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9](?:\.[0-9]{1,6})?(?:Z|[+-][0-9][0-9]:[0-9][0-9])) "
    r"([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) "
    # 7-12: RFC 3164 TIMESTAMP; 13: HOSTNAME (a first word not ending in ':', without '[', followed by
    # a space); 14-15: TAG[PID] as _TAG
    r"|([A-Z][a-z]{2}) ([ 1-3]?[0-9]) ([0-9][0-9]):([0-9][0-9]):([0-9][0-9])(?:\.([0-9]{1,6}))? "
    r"(?:([^ \[]*)(?<!:) )?(?:([^\s:\[\]]{1,64})(?:\[([^\]\s]{0,128})\])?: ?)?"
    r")"
)
_FAST_5424 = 2  # the group that is set when the RFC 5424 branch matched
_FAST_3164_TS = 7  # first of the six RFC 3164 timestamp groups
# A whole well-formed SD-ELEMENT; its params are then split by _SD_PARAM.findall in C.
_FAST_SD_ELEMENT = re.compile(r'\[([!#-<>-\\^-~]{1,32})((?: [!#-<>-\\^-~]{1,32}="(?:[^"\\\]]|\\.)*")*)\]', re.DOTALL)


class SyslogFormat(Enum):
    RFC3164 = "rfc3164"
    RFC5424 = "rfc5424"


@dataclass(frozen=True, slots=True, kw_only=True)
class SDElement:
    """One RFC 5424 SD-ELEMENT: `[id name="value" ...]`; params keep their order and repeats."""

    id: str
    params: tuple[tuple[str, str], ...] = ()


class SyslogMessage(NamedTuple):
    """A parsed syslog message; `timestamp` is aware (None for RFC 5424 NILVALUE or a 3164 line without one).

    Immutable; a NamedTuple rather than a frozen dataclass because one is built per line on the hot
    path (bench/codec_bench_radius_syslog.py). Build it with keywords.
    """

    format: SyslogFormat
    facility: int
    severity: int
    timestamp: datetime | None
    hostname: str | None
    app_name: str | None
    procid: str | None = None
    msgid: str | None = None
    structured_data: tuple[SDElement, ...] = ()
    message: str = ""

    @property
    def subject(self) -> str:
        """`tag[pid]: message` (or the message alone): the text vendor patterns are matched against."""
        if self.app_name is None:
            return self.message
        if self.procid is None:
            return f"{self.app_name}: {self.message}"
        return f"{self.app_name}[{self.procid}]: {self.message}"

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self, strict=True))
        return redact_macs(f"SyslogMessage({inner})")


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    return data.decode("utf-8", "backslashreplace")


def parse_syslog(
    data: bytes | str, *, now: datetime, zone: ZoneInfo = DEFAULT_ZONE, year_after: datetime | None = None
) -> SyslogMessage:
    """One syslog message (RFC 5424 when a version follows PRI, else RFC 3164), or a SyslogHeaderError.

    RFC 3164 has neither year nor zone: the clock time is read in `zone`, and the year is the one that
    puts the message nearest to `now` (a December line arriving in January belongs to last year). Given
    `year_after` (a clock known to be behind: only a time it is after is known), the year is the first that
    puts the message after `year_after` less YEAR_SLACK.
    """
    text = _text(data).rstrip("\r\n\x00")
    fast = _FAST.match(text)
    if fast is not None:
        pri = int(fast.group(1))
        if fast.group(_FAST_5424) is not None:
            ts_text, hostname, app_name, procid, msgid = fast.group(2, 3, 4, 5, 6)
            timestamp = None if ts_text == "-" else _calendar_5424(ts_text)
            return _body_5424(text, fast.end(), pri, timestamp, hostname, app_name, procid, msgid)
        hostname, app_name, procid = fast.group(13, 14, 15)
        return tuple.__new__(
            SyslogMessage,
            (
                SyslogFormat.RFC3164,
                pri >> 3,
                pri & 7,
                _timestamp_3164(fast, _FAST_3164_TS, now, zone, year_after),
                hostname,
                app_name,
                procid,
                None,
                (),
                text[fast.end() :],
            ),
        )
    return _parse_general(text, now, zone, year_after)


def _parse_general(text: str, now: datetime, zone: ZoneInfo, year_after: datetime | None = None) -> SyslogMessage:
    """parse_syslog without the fast path: the lines _FAST does not match, malformed ones included."""
    m = _PRI.match(text)
    if m is None:
        raise SyslogHeaderError(
            where="syslog header",
            what="message must start with <PRI> (RFC 5424 6.2.1)",
            got=quote(text[:20]),
            fix="point the device at the gateway's syslog port, not a raw log stream",
        )
    pri = int(m.group(1))
    if pri > 191 or (len(m.group(1)) > 1 and m.group(1)[0] == "0"):
        raise SyslogHeaderError(
            where="syslog header PRI",
            what="must be 0..191 without leading zeros",
            got=quote(m.group(0)),
        )
    pos = m.end()
    # RFC 5424 puts VERSION (a digit) right after PRI; RFC 3164 a month name.
    head = _HEAD5424.match(text, pos) if text[pos : pos + 1].isdigit() else None
    if head is not None:
        return _parse_5424(text, head, pri)
    return _parse_3164(text, pos, pri, now, zone, year_after)


def _parse_3164(
    text: str, pos: int, pri: int, now: datetime, zone: ZoneInfo, year_after: datetime | None
) -> SyslogMessage:
    ts = _TS3164.match(text, pos)
    if ts is None:
        # RFC 3164 4.3.3: without a valid TIMESTAMP the whole remainder is CONTENT.
        return _content_3164(text[pos:], pri, None, None)
    return _after_timestamp_3164(text, ts.end(), pri, _timestamp_3164(ts, 1, now, zone, year_after))


def _after_timestamp_3164(text: str, pos: int, pri: int, timestamp: datetime) -> SyslogMessage:
    host, sep, rest = text[pos:].partition(" ")
    # BusyBox syslogd forwards without HOSTNAME (`<30>Mar  5 12:00:00 hostapd: ...`): a first
    # word that is already a TAG is not a host.
    if host.endswith(":") or "[" in host or not sep:
        return _content_3164(text[pos:], pri, timestamp, None)
    return _content_3164(rest, pri, timestamp, host)


def _content_3164(rest: str, pri: int, timestamp: datetime | None, hostname: str | None) -> SyslogMessage:
    tag = _TAG.match(rest)
    if tag is not None:
        app_name, procid, message = tag.group(1), tag.group(2), rest[tag.end() :]
    else:
        app_name, procid, message = None, None, rest
    return tuple.__new__(
        SyslogMessage,
        (SyslogFormat.RFC3164, pri >> 3, pri & 7, timestamp, hostname, app_name, procid, None, (), message),
    )


def _timestamp_3164(
    ts: re.Match[str], first: int, now: datetime, zone: ZoneInfo, year_after: datetime | None = None
) -> datetime:
    """The timestamp in groups first..first+5 (month name, day, hour, minute, second, fraction) of `ts`."""
    fields = ts.group(first, first + 1, first + 2, first + 3, first + 4, first + 5)
    month = _MONTHS.get(fields[0])
    if month is None:
        raise SyslogHeaderError(
            where="syslog RFC 3164 timestamp",
            what="unknown month name",
            got=quote(_quoted_3164(ts, first)),
            fix="expected Jan..Dec in English",
        )
    if year_after is not None:
        year = _year_after(fields, month, year_after - YEAR_SLACK, zone)
    else:
        if 3 < now.day < 26:
            # Two UTC offsets differ by less than two days, so away from a month's ends the date in
            # `zone` has the same month and year as `now`'s own: astimezone (a third of a microsecond
            # per line) is only needed near them.
            year, now_month = now.year, now.month
        else:
            local_now = now.astimezone(zone)
            year, now_month = local_now.year, local_now.month
        # Messages arrive within seconds, so a month more than one ahead of `now` is last year's (a
        # December line read in January); a January line read in December comes from a clock that
        # has already rolled over.
        if month > now_month + 1:
            year -= 1
        elif month == 1 and now_month == 12:
            year += 1
    key = (fields, year, zone)
    stamp = _stamps.get(key)
    if stamp is None:
        stamp = _new_timestamp_3164(ts, first, fields, year, month, zone)
        if len(_stamps) >= _STAMP_MEMO_MAX:
            _stamps.clear()  # bounded; a second's lines share one entry, so a small memo suffices
        _stamps[key] = stamp
    return stamp


def _year_after(fields: tuple[str, ...], month: int, start: datetime, zone: ZoneInfo) -> int:
    """The first year whose `fields` (read in `zone`) fall after `start`; Feb 29 waits for a leap year. A date
    no year has (Feb 30) gets `start`'s year, for _new_timestamp_3164 to name it."""
    _, day, hour, minute, second, frac = fields
    first = start.astimezone(zone).year
    for year in range(first, first + 9):  # a leap year comes within 8 years (2100 is none)
        try:
            stamp = datetime(
                year, month, int(day), int(hour), int(minute), int(second), int(frac.ljust(6, "0")) if frac else 0
            )
        except ValueError:
            continue
        if stamp.replace(tzinfo=zone) > start:
            return year
    return first


# RFC 3164 timestamps have whole seconds (fractions are rare), so under load every line of one
# second carries the same text: remembering its datetime saves the int() calls and the aware
# datetime construction (half a microsecond per line). datetimes are immutable, safe to share.
_STAMP_MEMO_MAX = 1024
_stamps: dict[tuple[tuple[str, ...], int, ZoneInfo], datetime] = {}


def _new_timestamp_3164(
    ts: re.Match[str], first: int, fields: tuple[str, ...], year: int, month: int, zone: ZoneInfo
) -> datetime:
    _, day, hour, minute, second, frac = fields
    try:
        return datetime(
            year,
            month,
            int(day),
            int(hour),
            int(minute),
            int(second),
            int(frac.ljust(6, "0")) if frac else 0,
            tzinfo=zone,
        )
    except ValueError as exc:
        raise SyslogHeaderError(
            where="syslog RFC 3164 timestamp",
            what=f"not a valid date or time in {year} ({exc})",
            got=quote(_quoted_3164(ts, first)),
        ) from None


def _quoted_3164(ts: re.Match[str], first: int) -> str:
    """The timestamp as written, from the month name to the seconds or their fraction."""
    return ts.string[ts.start(first) : ts.end(first + 5 if ts.group(first + 5) else first + 4)]


def _parse_5424(text: str, head: re.Match[str], pri: int) -> SyslogMessage:
    version, ts_text, hostname, app_name, procid, msgid = head.groups()
    if version != "1":
        raise SyslogHeaderError(
            where="syslog RFC 5424 header VERSION",
            what="only version 1 is defined",
            got=quote(version),
        )
    for name, value, limit in (
        ("HOSTNAME", hostname, 255),
        ("APP-NAME", app_name, 48),
        ("PROCID", procid, 128),
        ("MSGID", msgid, 32),
    ):
        if len(value) > limit or not value.isascii() or not value.isprintable():
            raise SyslogHeaderError(
                where=f"syslog RFC 5424 header {name}",
                what=f"must be 1-{limit} printable US-ASCII characters",
                got=quote(value),
            )
    timestamp = None if ts_text == "-" else _timestamp_5424(ts_text)
    return _body_5424(text, head.end(), pri, timestamp, hostname, app_name, procid, msgid)


def _body_5424(
    text: str, pos: int, pri: int, timestamp: datetime | None, hostname: str, app_name: str, procid: str, msgid: str
) -> SyslogMessage:
    """STRUCTURED-DATA and MSG after a checked header ending at `pos`."""
    sd: tuple[SDElement, ...] = ()
    if text.startswith("-", pos):
        pos += 1
    else:
        sd, pos = _parse_sd(text, pos)
    if pos < len(text):
        if text[pos] != " ":
            raise SyslogStructuredDataError(
                where="syslog RFC 5424 STRUCTURED-DATA",
                what="must be followed by a space before MSG",
                got=quote(text[pos : pos + 20]),
            )
        pos += 1
    message = text[pos:]
    if message.startswith("\ufeff"):
        message = message[1:]
    # positional tuple.__new__: the NamedTuple keyword constructor costs half a microsecond per line
    return tuple.__new__(
        SyslogMessage,
        (
            SyslogFormat.RFC5424,
            pri >> 3,
            pri & 7,
            timestamp,
            None if hostname == "-" else hostname,
            None if app_name == "-" else app_name,
            None if procid == "-" else procid,
            None if msgid == "-" else msgid,
            sd,
            message,
        ),
    )


def _timestamp_5424(ts_text: str) -> datetime:
    if _TS5424.fullmatch(ts_text) is None:
        raise SyslogHeaderError(
            where="syslog RFC 5424 TIMESTAMP",
            what="must be RFC 3339 with a zone, e.g. 2024-01-31T23:59:59.123+09:00",
            got=quote(ts_text),
        )
    return _calendar_5424(ts_text)


def _calendar_5424(ts_text: str) -> datetime:
    """`ts_text` already matches the RFC 3339 grammar; fromisoformat checks the calendar."""
    try:
        return datetime.fromisoformat(ts_text)
    except ValueError as exc:
        raise SyslogHeaderError(
            where="syslog RFC 5424 TIMESTAMP",
            what=f"not a valid date or time ({exc})",
            got=quote(ts_text),
        ) from None


def _sd_error(what: str, text: str, pos: int) -> SyslogStructuredDataError:
    return SyslogStructuredDataError(
        where=f"syslog RFC 5424 STRUCTURED-DATA at offset {pos}", what=what, got=quote(text[pos : pos + 30])
    )


def _parse_sd(text: str, pos: int) -> tuple[tuple[SDElement, ...], int]:
    """RFC 5424 6.3: one or more `[SD-ID *(SP PARAM-NAME="PARAM-VALUE")]`; `\\"`, `\\\\` and `\\]` escape."""
    elements: list[SDElement] = []
    end = len(text)
    while pos < end and text[pos] == "[":
        whole = _FAST_SD_ELEMENT.match(text, pos)
        if whole is not None:
            raw = whole.group(2)
            pairs = _SD_PARAM.findall(raw)
            if "\\" in raw:
                # RFC 5424 6.3.3: only \", \\ and \] are escapes; a backslash before anything else stays
                pairs = [(name, _SD_UNESCAPE.sub(r"\1", value)) for name, value in pairs]
            elements.append(SDElement(id=whole.group(1), params=tuple(pairs)))
            pos = whole.end()
            continue
        elements.append(_parse_sd_element(text, pos))  # raises the exact error
    if not elements:
        raise _sd_error('STRUCTURED-DATA must be "-" or start with [', text, pos)
    return tuple(elements), pos


def _parse_sd_element(text: str, pos: int) -> SDElement:
    """The general walk of one SD-ELEMENT at `pos`; only reached for one _FAST_SD_ELEMENT rejects."""
    end = len(text)
    m = _SD_NAME.match(text, pos + 1)
    if m is None:
        raise _sd_error('SD-ID must be 1-32 printable characters except = ] " and space', text, pos + 1)
    pos = m.end()
    while pos < end and text[pos] == " ":
        p = _SD_PARAM.match(text, pos + 1)
        if p is None:
            raise _sd_error(_param_problem(text, pos + 1), text, pos + 1)
        pos = p.end()
    raise _sd_error("SD-ELEMENT must end with ]", text, pos)


def _param_problem(text: str, pos: int) -> str:
    n = _SD_NAME.match(text, pos)
    if n is None or not text.startswith('="', n.end()):
        return 'expected PARAM-NAME="PARAM-VALUE"'
    if _SD_OPEN_VALUE.match(text, n.end() + 2) is None:
        return "an unescaped ] inside PARAM-VALUE"
    return "PARAM-VALUE is not closed with a quote"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def encode_rfc5424(msg: SyslogMessage) -> bytes:
    """RFC 5424 text of `msg` (NILVALUE for absent fields, UTF-8 MSG without BOM)."""
    ts = "-"
    if msg.timestamp is not None:
        ts = msg.timestamp.isoformat()
        if ts.endswith("+00:00"):
            ts = ts[:-6] + "Z"
    sd = (
        "".join("[" + e.id + "".join(f' {k}="{_sd_escape(v)}"' for k, v in e.params) + "]" for e in msg.structured_data)
        or "-"
    )
    head = " ".join(
        (
            f"<{msg.facility * 8 + msg.severity}>1",
            ts,
            msg.hostname or "-",
            msg.app_name or "-",
            msg.procid or "-",
            msg.msgid or "-",
            sd,
        )
    )
    return (head + " " + msg.message if msg.message else head).encode()


def encode_rfc3164(msg: SyslogMessage, *, zone: ZoneInfo = DEFAULT_ZONE) -> bytes:
    """RFC 3164 text of `msg`; the timestamp is written as clock time in `zone`, without year or zone."""
    parts = [f"<{msg.facility * 8 + msg.severity}>"]
    if msg.timestamp is not None:
        t = msg.timestamp.astimezone(zone)
        frac = f".{t.microsecond:06d}" if t.microsecond else ""
        parts.append(f"{_MONTH_NAMES[t.month]} {t.day:2d} {t:%H:%M:%S}{frac} ")
        if msg.hostname:
            parts.append(msg.hostname + " ")
    if msg.app_name is not None:
        parts.append(msg.app_name if msg.procid is None else f"{msg.app_name}[{msg.procid}]")
        parts.append(": ")
    parts.append(msg.message)
    return "".join(parts).encode()
