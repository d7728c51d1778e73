"""Wi-Fi syslog codec: one datagram or TCP frame in, a typed association event (or None) out."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from adapters.wifi_syslog.message import DEFAULT_ZONE, parse_syslog
from adapters.wifi_syslog.patterns import PatternSet, WifiEvent

__all__ = ["decode_wifi_event"]


def decode_wifi_event(
    data: bytes | str,
    *,
    now: datetime,
    patterns: PatternSet,
    zone: ZoneInfo = DEFAULT_ZONE,
    year_after: datetime | None = None,
) -> WifiEvent | None:
    """Parse one syslog message and match it against the vendor patterns; SyslogError on bad input.
    `year_after`: as parse_syslog's, for a gateway clock known to be behind."""
    return patterns.match(parse_syslog(data, now=now, zone=zone, year_after=year_after), now=now)
