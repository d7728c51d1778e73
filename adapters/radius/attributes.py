"""Typed accounting attributes (RFC 2865 5, RFC 2866 5, RFC 2869 5): raw attributes <-> AccountingRecord."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from ipaddress import IPv4Address
from typing import NamedTuple, NoReturn, TypeVar

from adapters.radius.errors import MacAddressError, RadiusAttributeError, RadiusMissingAttribute
from adapters.radius.mac import MacAddress, mask_text, normalize_mac, redact_macs, split_called_station_id
from adapters.radius.packet import VENDOR_SPECIFIC, Attribute

__all__ = [
    "DECODERS",
    "FIELD_COUNT",
    "AccountingRecord",
    "AcctStatusType",
    "AttributeType",
    "TerminateCause",
    "escaped_text",
    "finish_record",
    "record_from_attributes",
    "record_to_attributes",
]


class AttributeType(IntEnum):
    USER_NAME = 1
    NAS_IP_ADDRESS = 4
    FRAMED_IP_ADDRESS = 8
    VENDOR_SPECIFIC = 26
    CALLED_STATION_ID = 30
    CALLING_STATION_ID = 31
    NAS_IDENTIFIER = 32
    PROXY_STATE = 33
    ACCT_STATUS_TYPE = 40
    ACCT_DELAY_TIME = 41
    ACCT_INPUT_OCTETS = 42
    ACCT_OUTPUT_OCTETS = 43
    ACCT_SESSION_ID = 44
    ACCT_SESSION_TIME = 46
    ACCT_TERMINATE_CAUSE = 49
    ACCT_INPUT_GIGAWORDS = 52
    ACCT_OUTPUT_GIGAWORDS = 53
    EVENT_TIMESTAMP = 55


class AcctStatusType(IntEnum):
    """RFC 2866 5.1 (values 9-15 are reserved there for tunnel accounting and Failed)."""

    START = 1
    STOP = 2
    INTERIM_UPDATE = 3
    ACCOUNTING_ON = 7
    ACCOUNTING_OFF = 8


class TerminateCause(IntEnum):
    """RFC 2866 5.10; `label` is the RFC's own wording."""

    USER_REQUEST = 1
    LOST_CARRIER = 2
    LOST_SERVICE = 3
    IDLE_TIMEOUT = 4
    SESSION_TIMEOUT = 5
    ADMIN_RESET = 6
    ADMIN_REBOOT = 7
    PORT_ERROR = 8
    NAS_ERROR = 9
    NAS_REQUEST = 10
    NAS_REBOOT = 11
    PORT_UNNEEDED = 12
    PORT_PREEMPTED = 13
    PORT_SUSPENDED = 14
    SERVICE_UNAVAILABLE = 15
    CALLBACK = 16
    USER_ERROR = 17
    HOST_REQUEST = 18

    @property
    def label(self) -> str:
        return _LABELS.get(self.name, self.name.replace("_", " ").title())


_LABELS = {"NAS_ERROR": "NAS Error", "NAS_REQUEST": "NAS Request", "NAS_REBOOT": "NAS Reboot"}

_NAMES = {
    1: "User-Name",
    4: "NAS-IP-Address",
    8: "Framed-IP-Address",
    30: "Called-Station-Id",
    31: "Calling-Station-Id",
    32: "NAS-Identifier",
    40: "Acct-Status-Type",
    41: "Acct-Delay-Time",
    42: "Acct-Input-Octets",
    43: "Acct-Output-Octets",
    44: "Acct-Session-Id",
    46: "Acct-Session-Time",
    49: "Acct-Terminate-Cause",
    52: "Acct-Input-Gigawords",
    53: "Acct-Output-Gigawords",
    55: "Event-Timestamp",
}
_WHERE = "radius accounting attributes"
_U32 = 0xFFFFFFFF


class AccountingRecord(NamedTuple):
    """What an Accounting-Request says about a session; octet counters already include gigawords.

    Immutable like our boundary dataclasses, but a NamedTuple: it is built once per datagram on the
    hot path, and a frozen dataclass's __init__ costs four times as much (bench/codec_bench_radius_syslog.py).
    Build it with keywords.
    """

    status_type: int
    user_name: str | None = None
    calling_station_id: str | None = None
    called_station_id: str | None = None
    nas_ip_address: IPv4Address | None = None
    nas_identifier: str | None = None
    session_id: str | None = None
    session_time: int | None = None
    input_octets: int | None = None
    output_octets: int | None = None
    terminate_cause: int | None = None
    delay_time: int | None = None
    event_timestamp: datetime | None = None
    framed_ip_address: IPv4Address | None = None
    vendor_attributes: tuple[Attribute, ...] = ()

    @property
    def status(self) -> AcctStatusType | None:
        try:
            return AcctStatusType(self.status_type)
        except ValueError:
            return None

    @property
    def terminate_cause_name(self) -> str | None:
        """RFC 2866 wording ("Lost Carrier"), `Unknown (n)` for values outside the RFC, None if absent."""
        if self.terminate_cause is None:
            return None
        try:
            return TerminateCause(self.terminate_cause).label
        except ValueError:
            return f"Unknown ({self.terminate_cause})"

    @property
    def client_mac(self) -> MacAddress | None:
        """Calling-Station-Id as a MAC (Wi-Fi NASes put the client MAC there), None if it is not one."""
        if self.calling_station_id is None:
            return None
        try:
            return MacAddress(normalize_mac(self.calling_station_id))
        except MacAddressError:
            return None

    @property
    def ap_mac(self) -> MacAddress | None:
        return None if self.called_station_id is None else split_called_station_id(self.called_station_id)[0]

    @property
    def ssid(self) -> str | None:
        return None if self.called_station_id is None else split_called_station_id(self.called_station_id)[1]

    def event_time(self, now: datetime) -> datetime:
        """When the event happened by the gateway's clock: arrival minus Acct-Delay-Time (RFC 2866 5.2)."""
        return now - timedelta(seconds=self.delay_time or 0)

    def __repr__(self) -> str:
        shown: list[str] = []
        for name, value in zip(self._fields, self, strict=True):
            if value is None or value == ():
                continue
            if name == "user_name":
                shown.append(f"user_name={mask_text(str(value))}")
            elif name in ("calling_station_id", "called_station_id"):
                shown.append(f"{name}={redact_macs(str(value))!r}")
            else:
                shown.append(f"{name}={value!r}")
        return f"AccountingRecord({', '.join(shown)})"


def record_from_attributes(attributes: tuple[Attribute, ...]) -> AccountingRecord:
    """The typed record; raises on duplicated or mis-sized typed attributes and on a missing Acct-Status-Type."""
    # Filled by field position, not by keywords. decode_request has its own copy of this loop merged
    # into the datagram walk (onepass.py) and falls back here only to name a problem exactly.
    slots: list[object] = [None] * FIELD_COUNT
    vsas: list[Attribute] = []
    decoders = DECODERS
    for atype, value in attributes:
        entry = decoders.get(atype)
        if entry is None:
            if atype == VENDOR_SPECIFIC:
                vsas.append(Attribute(atype, value))
            continue
        size, index, convert = entry
        if slots[index] is not None or (size and len(value) != size):
            _typed_error(atype, value, slots[index] is not None)
        try:
            slots[index] = convert(value)
        except UnicodeDecodeError:
            slots[index] = escaped_text(value)
    if slots[0] is None:
        raise RadiusMissingAttribute(
            where=f"{_WHERE} Acct-Status-Type (40)",
            what="mandatory attribute is missing",
            got="none",
            fix="RFC 2866 5.1: every Accounting-Request carries one",
        )
    return finish_record(slots, vsas)


def finish_record(slots: list[object], vsas: list[Attribute]) -> AccountingRecord:
    """The record from converted `slots` (FIELD_COUNT long, status set, no duplicates): gigawords folded in."""
    # RFC 2869 5.1/5.2: Gigawords counts the 2^32 wraps of the matching Octets counter.
    for octets, gigawords in _GIGAWORDS:
        high = slots[gigawords]
        if high is not None:
            slots[octets] = (slots[octets] or 0) + (high << 32)  # type: ignore[operator]
    del slots[FIELD_COUNT - 2 :]
    slots.append(tuple(vsas))
    return tuple.__new__(AccountingRecord, slots)


def escaped_text(value: bytes) -> str:
    """RFC 2865 text is UTF-8; a NAS sending other bytes must not stop accounting, and the escape is reversible."""
    return value.decode("utf-8", "backslashreplace")


def _typed_error(atype: int, value: bytes, duplicate: bool) -> NoReturn:
    if duplicate:
        raise RadiusAttributeError(
            where=f"{_WHERE} {_NAMES[atype]} ({atype})",
            what="attribute appears more than once",
            got="a second occurrence",
            fix="RFC 2866 allows it at most once per request",
        )
    raise RadiusAttributeError(
        where=f"{_WHERE} {_NAMES[atype]} ({atype})",
        what="value must be 4 octets",
        got=f"{len(value)} octets",
    )


def _timestamp(value: bytes) -> datetime:
    return datetime.fromtimestamp(int.from_bytes(value, "big"), UTC)


_T = TypeVar("_T")
_MEMO_MAX = 4096


class _Memo(dict[bytes, _T]):
    """Value octets -> converted value, for values that repeat from datagram to datagram.

    An IPv4Address costs 0.5 us to build and this second's datetime 0.25 us, but a NAS sends the same
    NAS-IP-Address in every packet, a client keeps its Framed-IP-Address for the session and a busy
    NAS stamps many packets with the same Event-Timestamp. `memo[value]` is dict's C lookup; only a
    miss runs Python (__missing__). Cleared when full, so scanning addresses cannot grow it; the
    values are immutable, so sharing one between records is safe.
    """

    __slots__ = ("_convert",)

    def __init__(self, convert: Callable[[bytes], _T]) -> None:
        super().__init__()
        self._convert = convert

    def __missing__(self, key: bytes) -> _T:
        if len(self) >= _MEMO_MAX:
            self.clear()
        value = self[key] = self._convert(key)
        return value


_FIELDS = AccountingRecord._fields
# Two scratch positions past the record's fields hold the gigawords until they are folded in.
FIELD_COUNT = len(_FIELDS) + 1
_IN_GIGA = len(_FIELDS) - 1
_OUT_GIGA = len(_FIELDS)
_GIGAWORDS = ((_FIELDS.index("input_octets"), _IN_GIGA), (_FIELDS.index("output_octets"), _OUT_GIGA))

# Converters take the value octets alone, so the hot loops make one C call per attribute:
# int.from_bytes is big-endian by default since 3.11 (a "big" argument costs a third more),
# bytes.decode is strict UTF-8 and the loops catch UnicodeDecodeError for escaped_text (a partial
# with keyword arguments costs three times as much), and the memos' __getitem__ run in C on a hit.
_ip_address: Callable[[bytes], object] = _Memo(IPv4Address).__getitem__
_event_timestamp: Callable[[bytes], object] = _Memo(_timestamp).__getitem__
_SPEC: dict[int, tuple[int, str | int, Callable[[bytes], object]]] = {
    1: (0, "user_name", bytes.decode),
    4: (4, "nas_ip_address", _ip_address),
    8: (4, "framed_ip_address", _ip_address),
    30: (0, "called_station_id", bytes.decode),
    31: (0, "calling_station_id", bytes.decode),
    32: (0, "nas_identifier", bytes.decode),
    40: (4, "status_type", int.from_bytes),
    41: (4, "delay_time", int.from_bytes),
    42: (4, "input_octets", int.from_bytes),
    43: (4, "output_octets", int.from_bytes),
    44: (0, "session_id", bytes.decode),
    46: (4, "session_time", int.from_bytes),
    49: (4, "terminate_cause", int.from_bytes),
    52: (4, _IN_GIGA, int.from_bytes),
    53: (4, _OUT_GIGA, int.from_bytes),
    55: (4, "event_timestamp", _event_timestamp),
}
# type -> (required value size, 0 for any; position in the record's slots; converter)
DECODERS: dict[int, tuple[int, int, Callable[[bytes], object]]] = {
    atype: (size, _FIELDS.index(name) if isinstance(name, str) else name, convert)
    for atype, (size, name, convert) in _SPEC.items()
}


def _u32(atype: int, value: int) -> Attribute:
    if not 0 <= value <= _U32:
        raise RadiusAttributeError(
            where=f"radius accounting build {_NAMES[atype]} ({atype})", what="must be 0..4294967295", got=value
        )
    return Attribute(atype, value.to_bytes(4, "big"))


def record_to_attributes(record: AccountingRecord) -> tuple[Attribute, ...]:
    """The attributes carrying `record` (the inverse of record_from_attributes)."""
    out: list[Attribute] = [_u32(40, record.status_type)]
    r = record
    if r.user_name is not None:
        out.append(Attribute(1, r.user_name.encode()))
    if r.nas_ip_address is not None:
        out.append(Attribute(4, r.nas_ip_address.packed))
    if r.framed_ip_address is not None:
        out.append(Attribute(8, r.framed_ip_address.packed))
    if r.called_station_id is not None:
        out.append(Attribute(30, r.called_station_id.encode()))
    if r.calling_station_id is not None:
        out.append(Attribute(31, r.calling_station_id.encode()))
    if r.nas_identifier is not None:
        out.append(Attribute(32, r.nas_identifier.encode()))
    if r.delay_time is not None:
        out.append(_u32(41, r.delay_time))
    for low_type, high_type, total in ((42, 52, r.input_octets), (43, 53, r.output_octets)):
        if total is not None:
            if not 0 <= total < 1 << 64:
                raise RadiusAttributeError(
                    where=f"radius accounting build {_NAMES[low_type]} ({low_type})",
                    what="must be 0..2^64-1",
                    got=total,
                )
            out.append(_u32(low_type, total & _U32))
            if total > _U32:
                out.append(_u32(high_type, total >> 32))
    if r.session_id is not None:
        out.append(Attribute(44, r.session_id.encode()))
    if r.session_time is not None:
        out.append(_u32(46, r.session_time))
    if r.terminate_cause is not None:
        out.append(_u32(49, r.terminate_cause))
    if r.event_timestamp is not None:
        out.append(_u32(55, int(r.event_timestamp.timestamp())))
    out.extend(r.vendor_attributes)
    return tuple(out)
