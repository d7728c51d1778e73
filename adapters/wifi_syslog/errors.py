"""Typed errors of the Wi-Fi syslog codec; quoted device text has every MAC-like run masked.

SyslogError (DeviceFormatError)
├── SyslogFramingError         a TCP stream breaks RFC 6587 framing (close the connection)
├── SyslogHeaderError          PRI, version, timestamp or header fields are malformed
├── SyslogStructuredDataError  RFC 5424 STRUCTURED-DATA is malformed
└── WifiEventError             a vendor pattern matched but its fields are unusable
"""

from __future__ import annotations

from adapters.radius.mac import redact_macs
from gateway.errors import DeviceFormatError

_QUOTE_MAX = 60


def quote(text: str) -> str:
    """A short, MAC-masked quotation of device text for an error message."""
    # redact before cutting: a cut through a MAC would leave a fragment the masker cannot recognise
    clean = redact_macs(text)
    cut = clean if len(clean) <= _QUOTE_MAX else clean[:_QUOTE_MAX] + "..."
    return '"' + cut.replace('"', '\\"') + '"'


class SyslogError(DeviceFormatError):
    """Root of the syslog codec errors."""

    code = "syslog_error"


class SyslogFramingError(SyslogError):
    code = "syslog_framing"


class SyslogHeaderError(SyslogError):
    code = "syslog_bad_header"


class SyslogStructuredDataError(SyslogError):
    code = "syslog_bad_structured_data"


class WifiEventError(SyslogError):
    code = "wifi_event_invalid"
