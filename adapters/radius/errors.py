"""Typed errors of the RADIUS accounting codec, each with a stable code and masked parameters.

RadiusError (DeviceProtocolError)
├── RadiusLengthError         datagram or header length out of range (never half-parsed)
├── RadiusAttributeError      an attribute is malformed, truncated, duplicated or of the wrong size
├── RadiusAuthenticatorError  the authenticator does not match the shared secret
├── RadiusCodeError           the packet is not the kind the caller asked for
├── RadiusMissingAttribute    a mandatory attribute is absent
└── MacAddressError           a MAC address in none of the known spellings
"""

from __future__ import annotations

from typing import Any

from gateway.errors import DeviceProtocolError


class RadiusError(DeviceProtocolError):
    """Root of the RADIUS codec errors; the message reads `<where>: <what>, got <value>[; <fix>]`.

    Callers pass personal data (user names, MACs) already masked: `got` ends up in the message,
    the parameters and the repr.
    """

    code = "radius_error"

    def __init__(self, *, where: str, what: str, got: object, fix: str = "", **params: Any) -> None:
        text = f"{where}: {what}, got {got}"
        if fix:
            text += f"; {fix}"
        super().__init__(text, where=where, what=what, got=got, **params)
        self.where = where
        self.what = what
        self.got = got
        self.fix = fix


class RadiusLengthError(RadiusError):
    code = "radius_bad_length"


class RadiusAttributeError(RadiusError):
    code = "radius_bad_attribute"


class RadiusAuthenticatorError(RadiusError):
    code = "radius_bad_authenticator"


class RadiusCodeError(RadiusError):
    code = "radius_unexpected_code"


class RadiusMissingAttribute(RadiusError):
    code = "radius_missing_attribute"


class MacAddressError(RadiusError):
    code = "mac_invalid"
