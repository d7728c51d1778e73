"""RADIUS accounting (RFC 2866) codec for public Wi-Fi session logs: sans-I/O, verified, typed."""

from adapters.radius.attributes import AccountingRecord, AcctStatusType, AttributeType, TerminateCause
from adapters.radius.codec import (
    AccountingRequest,
    RetransmissionKey,
    SessionKey,
    build_accounting_request,
    build_accounting_response,
    decode_request,
)
from adapters.radius.errors import (
    MacAddressError,
    RadiusAttributeError,
    RadiusAuthenticatorError,
    RadiusCodeError,
    RadiusError,
    RadiusLengthError,
    RadiusMissingAttribute,
)
from adapters.radius.mac import MacAddress, mask_mac, normalize_mac, redact_macs, split_called_station_id
from adapters.radius.packet import Attribute, Code, Packet

__all__ = [
    "AccountingRecord",
    "AccountingRequest",
    "AcctStatusType",
    "Attribute",
    "AttributeType",
    "Code",
    "MacAddress",
    "MacAddressError",
    "Packet",
    "RadiusAttributeError",
    "RadiusAuthenticatorError",
    "RadiusCodeError",
    "RadiusError",
    "RadiusLengthError",
    "RadiusMissingAttribute",
    "RetransmissionKey",
    "SessionKey",
    "TerminateCause",
    "build_accounting_request",
    "build_accounting_response",
    "decode_request",
    "mask_mac",
    "normalize_mac",
    "redact_macs",
    "split_called_station_id",
]
