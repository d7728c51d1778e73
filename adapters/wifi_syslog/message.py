"""Syslog messages: RFC 3164 and RFC 5424 text in, typed SyslogMessage out (and back), no I/O, no clock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import NamedTuple
from zoneinfo import ZoneInfo

from adapters.radius.mac import redact_macs
from adapters.wifi_syslog.errors import SyslogHeaderError, SyslogStructuredDataError, quote

__all__ = [
    "DEFAULT_ZONE",
    "SDElement",
    "SyslogFormat",
    "SyslogMessage",
    "encode_rfc3164",
    "encode_rfc5424",
    "parse_syslog",
]

DEFAULT_ZONE = ZoneInfo("Asia/Tokyo")
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_MONTH_NAMES = {i: m for m, i in _MONTHS.items()}

_PRI = re.compile(r"<(\d{1,3})>")
# RFC 3164 4.1.2 TIMESTAMP (day space-padded), with the fractional seconds some daemons append.
_TS3164 = re.compile(r"([A-Z][a-z]{2}) ([ 1-3]?\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))? ")
# RFC 3164 TAG: vendors exceed its 32 alphanumerics (UniFi puts `<ap-mac>,<model>-<version>` there).
_TAG = re.compile(r"([^\s:\[\]]{1,64})(?:\[([^\]\s]{0,128})\])?: ?")
_HEAD5424 = re.compile(r"([1-9]\d{0,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ")
_TS5424 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)")
_SD_NAME = re.compile(r'[!#-<>-\\^-~]{1,32}')  # PRINTUSASCII except '=', SP, ']' and '"'
_SD_PARAM = re.compile(r'([!#-<>-\\^-~]{1,32})="((?:[^"\\\]]|\\.)*)"', re.DOTALL)
_SD_OPEN_VALUE = re.compile(r'(?:[^"\\\]]|\\.)*(?:\\)?\Z', re.DOTALL)  # runs to the end: never closed
_SD_UNESCAPE = re.compile(r'\\(["\\\]])')


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
        inner = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self))
        return redact_macs(f"SyslogMessage({inner})")


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    return data.decode("utf-8", "backslashreplace")


def parse_syslog(data: bytes | str, *, now: datetime, zone: ZoneInfo = DEFAULT_ZONE) -> SyslogMessage:
    """One syslog message (RFC 5424 when a version follows PRI, else RFC 3164), or a SyslogHeaderError.

    RFC 3164 has neither year nor zone: the clock time is read in `zone`, and the year is the one that
    puts the message nearest to `now` (a December line arriving in January belongs to last year).
    """
    text = _text(data).rstrip("\r\n\x00")
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
    return _parse_3164(text, pos, pri, now, zone)


def _parse_3164(text: str, pos: int, pri: int, now: datetime, zone: ZoneInfo) -> SyslogMessage:
    ts = _TS3164.match(text, pos)
    timestamp: datetime | None = None
    if ts is not None:
        timestamp = _timestamp_3164(ts, now, zone)
        pos = ts.end()
        host, sep, rest = text[pos:].partition(" ")
        # BusyBox syslogd forwards without HOSTNAME (`<30>Mar  5 12:00:00 hostapd: ...`): a first
        # word that is already a TAG is not a host.
        if host.endswith(":") or "[" in host or not sep:
            hostname = None
            rest = text[pos:]
        else:
            hostname = host
    else:
        # RFC 3164 4.3.3: without a valid TIMESTAMP the whole remainder is CONTENT.
        hostname = None
        rest = text[pos:]
    tag = _TAG.match(rest)
    if tag is not None:
        app_name, procid, message = tag.group(1), tag.group(2), rest[tag.end() :]
    else:
        app_name, procid, message = None, None, rest
    return SyslogMessage(
        format=SyslogFormat.RFC3164,
        facility=pri >> 3,
        severity=pri & 7,
        timestamp=timestamp,
        hostname=hostname,
        app_name=app_name,
        procid=procid,
        message=message,
    )


def _timestamp_3164(ts: re.Match[str], now: datetime, zone: ZoneInfo) -> datetime:
    month = _MONTHS.get(ts.group(1))
    if month is None:
        raise SyslogHeaderError(
            where="syslog RFC 3164 timestamp",
            what="unknown month name",
            got=quote(ts.group(0).strip()),
            fix="expected Jan..Dec in English",
        )
    local_now = now.astimezone(zone)
    year = local_now.year
    # Messages arrive within seconds, so a month more than one ahead of `now` is last year's (a
    # December line read in January); a January line read in December comes from a clock that
    # has already rolled over.
    if month > local_now.month + 1:
        year -= 1
    elif month == 1 and local_now.month == 12:
        year += 1
    frac = ts.group(6)
    try:
        return datetime(
            year,
            month,
            int(ts.group(2)),
            int(ts.group(3)),
            int(ts.group(4)),
            int(ts.group(5)),
            int(frac.ljust(6, "0")) if frac else 0,
            tzinfo=zone,
        )
    except ValueError as exc:
        raise SyslogHeaderError(
            where="syslog RFC 3164 timestamp",
            what=f"not a valid date or time in {year} ({exc})",
            got=quote(ts.group(0).strip()),
        ) from None


def _parse_5424(text: str, head: re.Match[str], pri: int) -> SyslogMessage:
    version, ts_text, hostname, app_name, procid, msgid = head.groups()
    if version != "1":
        raise SyslogHeaderError(
            where="syslog RFC 5424 header VERSION",
            what="only version 1 is defined",
            got=quote(version),
        )
    for name, value, limit in (("HOSTNAME", hostname, 255), ("APP-NAME", app_name, 48), ("PROCID", procid, 128), ("MSGID", msgid, 32)):
        if len(value) > limit or not value.isascii() or not value.isprintable():
            raise SyslogHeaderError(
                where=f"syslog RFC 5424 header {name}",
                what=f"must be 1-{limit} printable US-ASCII characters",
                got=quote(value),
            )
    timestamp = None if ts_text == "-" else _timestamp_5424(ts_text)
    pos = head.end()
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
    return SyslogMessage(
        format=SyslogFormat.RFC5424,
        facility=pri >> 3,
        severity=pri & 7,
        timestamp=timestamp,
        hostname=None if hostname == "-" else hostname,
        app_name=None if app_name == "-" else app_name,
        procid=None if procid == "-" else procid,
        msgid=None if msgid == "-" else msgid,
        structured_data=sd,
        message=message,
    )


def _timestamp_5424(ts_text: str) -> datetime:
    if _TS5424.fullmatch(ts_text) is None:
        raise SyslogHeaderError(
            where="syslog RFC 5424 TIMESTAMP",
            what="must be RFC 3339 with a zone, e.g. 2024-01-31T23:59:59.123+09:00",
            got=quote(ts_text),
        )
    try:
        # the regex holds the grammar strict; fromisoformat then checks the calendar
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
        m = _SD_NAME.match(text, pos + 1)
        if m is None:
            raise _sd_error("SD-ID must be 1-32 printable characters except = ] \" and space", text, pos + 1)
        sd_id = m.group(0)
        pos = m.end()
        params: list[tuple[str, str]] = []
        while pos < end and text[pos] == " ":
            p = _SD_PARAM.match(text, pos + 1)
            if p is None:
                raise _sd_error(_param_problem(text, pos + 1), text, pos + 1)
            value = p.group(2)
            if "\\" in value:
                # RFC 5424 6.3.3: only \", \\ and \] are escapes; a backslash before anything else stays
                value = _SD_UNESCAPE.sub(r"\1", value)
            params.append((p.group(1), value))
            pos = p.end()
        if pos >= end or text[pos] != "]":
            raise _sd_error("SD-ELEMENT must end with ]", text, pos)
        pos += 1
        elements.append(SDElement(id=sd_id, params=tuple(params)))
    if not elements:
        raise _sd_error('STRUCTURED-DATA must be "-" or start with [', text, pos)
    return tuple(elements), pos


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
    sd = "".join(
        "[" + e.id + "".join(f' {k}="{_sd_escape(v)}"' for k, v in e.params) + "]" for e in msg.structured_data
    ) or "-"
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
