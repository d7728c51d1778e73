"""Wi-Fi association events from AP syslog (hostapd, OpenWrt, UniFi): sans-I/O framing, parsing, patterns."""

from adapters.wifi_syslog.codec import decode_wifi_event
from adapters.wifi_syslog.errors import (
    SyslogError,
    SyslogFramingError,
    SyslogHeaderError,
    SyslogStructuredDataError,
    WifiEventError,
)
from adapters.wifi_syslog.framing import FrameSplitter, Framing, encode_non_transparent, encode_octet_counted
from adapters.wifi_syslog.message import (
    DEFAULT_ZONE,
    SDElement,
    SyslogFormat,
    SyslogMessage,
    encode_rfc3164,
    encode_rfc5424,
    parse_syslog,
)
from adapters.wifi_syslog.patterns import AssociationKind, PatternSet, WifiEvent, load_patterns

__all__ = [
    "DEFAULT_ZONE",
    "AssociationKind",
    "FrameSplitter",
    "Framing",
    "PatternSet",
    "SDElement",
    "SyslogError",
    "SyslogFormat",
    "SyslogFramingError",
    "SyslogHeaderError",
    "SyslogMessage",
    "SyslogStructuredDataError",
    "WifiEvent",
    "WifiEventError",
    "decode_wifi_event",
    "encode_non_transparent",
    "encode_octet_counted",
    "encode_rfc3164",
    "encode_rfc5424",
    "load_patterns",
    "parse_syslog",
]
