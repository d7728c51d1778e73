"""Typed errors of the Wi-Fi syslog codec; quoted device text has every MAC-like run masked.

SyslogError (DeviceProtocolError)
├── SyslogFramingError         a TCP stream breaks RFC 6587 framing (close the connection)
├── SyslogHeaderError          PRI, version, timestamp or header fields are malformed
├── SyslogStructuredDataError  RFC 5424 STRUCTURED-DATA is malformed
└── WifiEventError             a vendor pattern matched but its fields are unusable
"""

from __future__ import annotations

from typing import Any

from adapters.radius.mac import redact_macs
from gateway.errors import DeviceProtocolError

_QUOTE_MAX = 60


def quote(text: str) -> str:
    """A short, MAC-masked quotation of device text for an error message."""
    # redact before cutting: a cut through a MAC would leave a fragment the masker cannot recognise
    clean = redact_macs(text)
    cut = clean if len(clean) <= _QUOTE_MAX else clean[:_QUOTE_MAX] + "..."
    return '"' + cut.replace('"', '\\"') + '"'


class SyslogError(DeviceProtocolError):
    """Root of the syslog codec errors; the message reads `<where>: <what>, got <value>[; <fix>]`."""

    code = "syslog_error"

    def __init__(self, *, where: str, what: str, got: str, fix: str = "", **params: Any) -> None:
        text = f"{where}: {what}, got {got}"
        if fix:
            text += f"; {fix}"
        super().__init__(text, where=where, what=what, got=got, **params)
        self.where = where
        self.what = what
        self.got = got
        self.fix = fix


class SyslogFramingError(SyslogError):
    code = "syslog_framing"


class SyslogHeaderError(SyslogError):
    code = "syslog_bad_header"


class SyslogStructuredDataError(SyslogError):
    code = "syslog_bad_structured_data"


class WifiEventError(SyslogError):
    code = "wifi_event_invalid"
