"""The `[ngsi]` section: how string values Orion would refuse are encoded."""

from __future__ import annotations

import enum

from gateway.configbase import Section


class ValueEncoding(enum.Enum):
    # Percent-encode `%` then `" ' ( ) ; < = >` (the Japanese FIWARE community's convention).
    PERCENT = "percent"
    # Send such strings with the `TextUnrestricted` attribute type (platform must allow it).
    TEXT_UNRESTRICTED = "text-unrestricted"
    # Refuse the reading at the source with a clear error.
    REJECT = "reject"


class NgsiConfig(Section):
    value_encoding: ValueEncoding = ValueEncoding.PERCENT
