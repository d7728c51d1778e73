"""Typed errors of the RADIUS accounting codec, each with a stable code and masked parameters.

RadiusError (DeviceFormatError)
├── RadiusLengthError         datagram or header length out of range (never half-parsed)
├── RadiusAttributeError      an attribute is malformed, truncated, duplicated or of the wrong size
├── RadiusAuthenticatorError  the authenticator does not match the shared secret
├── RadiusCodeError           the packet is not the kind the caller asked for
├── RadiusMissingAttribute    a mandatory attribute is absent
└── MacAddressError           a MAC address in none of the known spellings
"""

from __future__ import annotations

from gateway.errors import DeviceFormatError


class RadiusError(DeviceFormatError):
    """Root of the RADIUS codec errors."""

    code = "radius_error"


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
