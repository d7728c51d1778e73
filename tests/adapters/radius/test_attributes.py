"""Typed accounting attributes: accessors, counters, causes, and the errors a technician would see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address

import pytest

from adapters.radius import AccountingRecord, AcctStatusType, Attribute, TerminateCause
from adapters.radius.attributes import record_from_attributes, record_to_attributes
from adapters.radius.errors import RadiusAttributeError, RadiusMissingAttribute


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def test_stop_record_with_every_typed_attribute() -> None:
    attrs = (
        Attribute(40, u32(2)),
        Attribute(1, "利用者".encode()),
        Attribute(31, b"aabb.ccdd.eeff"),
        Attribute(30, b"00-11-22-33-44-55:Kobe_Free"),
        Attribute(4, bytes([10, 0, 0, 1])),
        Attribute(32, b"ap-01"),
        Attribute(44, b"5F3A"),
        Attribute(46, u32(3600)),
        Attribute(42, u32(10)),
        Attribute(52, u32(2)),
        Attribute(43, u32(20)),
        Attribute(53, u32(1)),
        Attribute(49, u32(4)),
        Attribute(41, u32(0)),
        Attribute(55, u32(1_700_000_000)),
        Attribute(8, bytes([192, 168, 10, 23])),
        Attribute(26, u32(9) + b"\x01\x03x"),
        Attribute(5, u32(1)),  # NAS-Port: not typed here, not an error
    )
    r = record_from_attributes(attrs)
    assert r.status is AcctStatusType.STOP
    assert r.user_name == "利用者"
    assert r.client_mac is not None and r.client_mac.value == "aa:bb:cc:dd:ee:ff"
    assert (r.ap_mac.value if r.ap_mac else None, r.ssid) == ("00:11:22:33:44:55", "Kobe_Free")
    assert r.nas_ip_address == IPv4Address("10.0.0.1")
    assert r.nas_identifier == "ap-01"
    assert r.session_id == "5F3A"
    assert r.session_time == 3600
    assert r.input_octets == 2 * 2**32 + 10
    assert r.output_octets == 2**32 + 20
    assert r.terminate_cause == 4 and r.terminate_cause_name == "Idle Timeout"
    assert r.delay_time == 0
    assert r.event_timestamp == datetime.fromtimestamp(1_700_000_000, UTC)
    assert r.framed_ip_address == IPv4Address("192.168.10.23")
    assert r.vendor_attributes == (Attribute(26, u32(9) + b"\x01\x03x"),)
    assert record_from_attributes(record_to_attributes(r)) == r


def test_gigawords_without_octets_and_absent_counters() -> None:
    r = record_from_attributes((Attribute(40, u32(3)), Attribute(53, u32(1))))
    assert r.output_octets == 2**32
    assert r.input_octets is None
    assert r.status is AcctStatusType.INTERIM_UPDATE


@pytest.mark.parametrize(
    ("cause", "name"),
    [
        (1, "User Request"),
        (2, "Lost Carrier"),
        (9, "NAS Error"),
        (10, "NAS Request"),
        (11, "NAS Reboot"),
        (15, "Service Unavailable"),
        (18, "Host Request"),
        (99, "Unknown (99)"),
    ],
)
def test_terminate_cause_names_follow_rfc_2866(cause: int, name: str) -> None:
    r = AccountingRecord(status_type=2, terminate_cause=cause)
    assert r.terminate_cause_name == name


def test_all_terminate_causes_have_rfc_labels() -> None:
    assert [c.label for c in TerminateCause][:8] == [
        "User Request",
        "Lost Carrier",
        "Lost Service",
        "Idle Timeout",
        "Session Timeout",
        "Admin Reset",
        "Admin Reboot",
        "Port Error",
    ]


def test_optional_accessors_when_absent_or_not_a_mac() -> None:
    r = AccountingRecord(status_type=7)
    assert r.status is AcctStatusType.ACCOUNTING_ON
    assert (r.client_mac, r.ap_mac, r.ssid, r.terminate_cause_name) == (None, None, None, None)
    assert AccountingRecord(status_type=15).status is None
    assert AccountingRecord(status_type=1, calling_station_id="+81-78-000-0000").client_mac is None


def test_event_time_subtracts_the_delay() -> None:
    now = datetime(2026, 4, 1, 9, 0, 0, tzinfo=UTC)
    assert AccountingRecord(status_type=1, delay_time=30).event_time(now) == now - timedelta(seconds=30)
    assert AccountingRecord(status_type=1).event_time(now) == now


def test_missing_status_type() -> None:
    with pytest.raises(RadiusMissingAttribute) as err:
        record_from_attributes((Attribute(1, b"nemo"),))
    assert str(err.value) == (
        "radius accounting attributes Acct-Status-Type (40): mandatory attribute is missing, got none; "
        "RFC 2866 5.1: every Accounting-Request carries one"
    )
    assert err.value.code == "radius_missing_attribute"


def test_duplicate_typed_attribute() -> None:
    with pytest.raises(RadiusAttributeError) as err:
        record_from_attributes((Attribute(40, u32(1)), Attribute(44, b"a"), Attribute(44, b"b")))
    assert str(err.value) == (
        "radius accounting attributes Acct-Session-Id (44): attribute appears more than once, "
        "got a second occurrence; RFC 2866 allows it at most once per request"
    )


def test_integer_attribute_of_the_wrong_size() -> None:
    with pytest.raises(RadiusAttributeError) as err:
        record_from_attributes((Attribute(40, b"\x01"),))
    assert str(err.value) == "radius accounting attributes Acct-Status-Type (40): value must be 4 octets, got 1 octets"


def test_non_utf8_text_is_kept_reversibly() -> None:
    r = record_from_attributes((Attribute(40, u32(1)), Attribute(1, b"\xff\xfeab")))
    assert r.user_name == "\\xff\\xfeab"


def test_repr_masks_user_name_and_macs() -> None:
    r = AccountingRecord(
        status_type=1,
        user_name="nemo@example.jp",
        calling_station_id="AA-BB-CC-DD-EE-FF",
        called_station_id="00-11-22-33-44-55:FreeWiFi",
        session_id="S1",
    )
    assert repr(r) == (
        'AccountingRecord(status_type=1, user_name="nemo***" (15 chars), '
        "calling_station_id='aa:bb:cc:**:**:**', called_station_id='00:11:22:**:**:**:FreeWiFi', session_id='S1')"
    )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            AccountingRecord(status_type=2**32),
            "radius accounting build Acct-Status-Type (40): must be 0..4294967295, got 4294967296",
        ),
        (
            AccountingRecord(status_type=1, session_time=-1),
            "radius accounting build Acct-Session-Time (46): must be 0..4294967295, got -1",
        ),
        (
            AccountingRecord(status_type=1, input_octets=2**64),
            "radius accounting build Acct-Input-Octets (42): must be 0..2^64-1, got 18446744073709551616",
        ),
    ],
)
def test_build_range_errors(record: AccountingRecord, message: str) -> None:
    with pytest.raises(RadiusAttributeError) as err:
        record_to_attributes(record)
    assert str(err.value) == message
