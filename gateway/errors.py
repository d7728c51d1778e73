"""The gateway's exception tree; every error has a stable code and named parameters.

GatewayError
├── ConfigError (ValueError)              a configuration file or section is invalid
├── AdapterError                          a southbound adapter failed
│   ├── DeviceTimeout (TimeoutError)      a device did not answer in time
│   └── DeviceProtocolError (ValueError)  a device sent something we cannot decode
│       └── DeviceFormatError             … built from its parts (where, what, got, fix)
├── ReadingError (ValueError)             a Reading breaks NGSI rules and cannot be stored
├── BufferError                           the outbox cannot do what was asked
│   ├── BufferFull                        caps or the disk leave no room (stop accepting, say so)
│   ├── BufferCorrupt                     the database file failed its integrity check
│   └── BufferUnavailable                 the data directory or the file cannot be used (exit 2)
└── UplinkError                           delivery to the far side failed
    ├── UplinkRejected (ValueError)       permanent: the far side refused this record (400/422)
    └── UplinkTransient (ConnectionError) temporary: retry later with backoff (5xx, timeouts)

Messages follow `<where>: <what>, got <value>[; <fix>]` so a technician can act on them.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    code = "gateway_error"

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message)
        self.message = message
        self.params = params

    def __str__(self) -> str:
        return self.message


class ConfigError(GatewayError, ValueError):
    code = "config_invalid"

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = list(errors)
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(self.errors), source=source, count=len(self.errors))


class AdapterError(GatewayError):
    code = "adapter_error"


class DeviceTimeout(AdapterError, TimeoutError):
    code = "device_timeout"


class DeviceProtocolError(AdapterError, ValueError):
    code = "device_protocol"


class DeviceFormatError(DeviceProtocolError):
    """A decoding error built from its parts, so the message always reads `<where>: <what>, got <got>[; <fix>]`.

    Callers pass personal data (user names, MACs) already masked: `got` ends up in the message,
    the parameters and the repr.
    """

    code = "device_format"

    def __init__(self, *, where: str, what: str, got: object, fix: str = "", **params: Any) -> None:
        text = f"{where}: {what}, got {got}"
        if fix:
            text += f"; {fix}"
        super().__init__(text, where=where, what=what, got=got, **params)
        self.where = where
        self.what = what
        self.got = got
        self.fix = fix


class ReadingError(GatewayError, ValueError):
    code = "reading_invalid"


class BufferError(GatewayError):
    code = "buffer_error"


class BufferFull(BufferError):
    code = "buffer_full"


class BufferCorrupt(BufferError):
    code = "buffer_corrupt"


class BufferUnavailable(BufferError):
    """Opening failed for a reason on the box, not in the data: permissions, a directory in the way, a read-only disk."""

    code = "buffer_unavailable"


class UplinkError(GatewayError):
    code = "uplink_error"


class UplinkRejected(UplinkError, ValueError):
    code = "uplink_rejected"


class UplinkTransient(UplinkError, ConnectionError):
    code = "uplink_transient"
