"""RFC 3164 / RFC 5424 parsing: headers, year inference, zones, structured data, and exact errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from adapters.wifi_syslog import (
    SDElement,
    SyslogFormat,
    SyslogHeaderError,
    SyslogMessage,
    SyslogStructuredDataError,
    encode_rfc3164,
    encode_rfc5424,
    parse_syslog,
)

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 25, 8, 31, tzinfo=UTC)  # 17:31 in Tokyo


def test_rfc3164_with_hostname_and_tag() -> None:
    m = parse_syslog(
        b"<13>Nov 25 17:30:42 vm hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:ff auth_alg=open", now=NOW
    )
    assert m == SyslogMessage(
        format=SyslogFormat.RFC3164,
        facility=1,
        severity=5,
        timestamp=datetime(2026, 11, 25, 17, 30, 42, tzinfo=TOKYO),
        hostname="vm",
        app_name="hostapd",
        message="wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:ff auth_alg=open",
    )
    assert m.subject == "hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:ff auth_alg=open"


def test_rfc3164_busybox_without_hostname_and_with_pid() -> None:
    m = parse_syslog("<30>Nov  5 12:00:00 hostapd[1234]: wlan1: AP-STA-DISCONNECTED 00:11:22:33:44:55\n", now=NOW)
    assert (m.hostname, m.app_name, m.procid) == (None, "hostapd", "1234")
    assert (m.facility, m.severity) == (3, 6)
    assert m.timestamp == datetime(2026, 11, 5, 12, 0, 0, tzinfo=TOKYO)
    assert m.subject == "hostapd[1234]: wlan1: AP-STA-DISCONNECTED 00:11:22:33:44:55"


def test_rfc3164_fractional_seconds_and_single_word() -> None:
    m = parse_syslog("<14>Nov 25 17:30:42.25 lonely", now=NOW)
    assert m.timestamp == datetime(2026, 11, 25, 17, 30, 42, 250000, tzinfo=TOKYO)
    assert (m.hostname, m.app_name, m.message) == (None, None, "lonely")


def test_rfc3164_without_timestamp_is_all_content() -> None:
    m = parse_syslog("<14>kernel: something odd", now=NOW)
    assert (m.timestamp, m.hostname, m.app_name, m.message) == (None, None, "kernel", "something odd")


@pytest.mark.parametrize(
    ("now", "line_month", "year"),
    [
        (datetime(2027, 1, 1, 0, 5, tzinfo=TOKYO), "Dec 31 23:59:58", 2026),  # December line read in January
        (datetime(2026, 12, 31, 23, 59, tzinfo=TOKYO), "Jan  1 00:00:03", 2027),  # device clock already past midnight
        (datetime(2026, 3, 31, 23, 59, tzinfo=TOKYO), "Apr  1 00:00:01", 2026),  # next month: clock skew, same year
        (datetime(2026, 3, 1, tzinfo=TOKYO), "Jul  1 00:00:00", 2025),  # months ahead: a buffered old line
        (datetime(2026, 11, 1, tzinfo=TOKYO), "Jan  2 00:00:00", 2026),
    ],
)
def test_year_inference(now: datetime, line_month: str, year: int) -> None:
    m = parse_syslog(f"<13>{line_month} ap x: y", now=now)
    assert m.timestamp is not None and m.timestamp.year == year


def test_year_inference_uses_the_configured_zone() -> None:
    # 2026-12-31T15:30Z is already 2027-01-01 in Tokyo but still 2026 in UTC.
    now = datetime(2026, 12, 31, 15, 30, tzinfo=UTC)
    assert parse_syslog("<13>Jan  1 00:29:00 ap x: y", now=now).timestamp == datetime(2027, 1, 1, 0, 29, tzinfo=TOKYO)
    utc = parse_syslog("<13>Dec 31 15:29:00 ap x: y", now=now, zone=ZoneInfo("UTC"))
    assert utc.timestamp == datetime(2026, 12, 31, 15, 29, tzinfo=UTC)


def test_rfc5424_from_logger_with_structured_data() -> None:
    line = (
        b'<13>1 2026-11-25T17:30:42.785139+00:00 vm hostapd - - [timeQuality tzKnown="1" isSynced="0"]'
        b'[x@32473 a="b\\"c" d="e\\\\f\\]" g="h\\i"] wlan0: AP-STA-DISCONNECTED aa:bb:cc:dd:ee:ff'
    )
    m = parse_syslog(line, now=NOW)
    assert m.format is SyslogFormat.RFC5424
    assert m.timestamp == datetime(2026, 11, 25, 17, 30, 42, 785139, tzinfo=UTC)
    assert (m.hostname, m.app_name, m.procid, m.msgid) == ("vm", "hostapd", None, None)
    assert m.structured_data == (
        SDElement(id="timeQuality", params=(("tzKnown", "1"), ("isSynced", "0"))),
        SDElement(id="x@32473", params=(("a", 'b"c'), ("d", "e\\f]"), ("g", "h\\i"))),
    )
    assert m.message == "wlan0: AP-STA-DISCONNECTED aa:bb:cc:dd:ee:ff"


def test_rfc5424_nilvalues_bom_and_empty_message() -> None:
    m = parse_syslog("<165>1 - - - - - -", now=NOW)
    assert (m.facility, m.severity, m.timestamp, m.hostname, m.app_name, m.structured_data, m.message) == (
        20,
        5,
        None,
        None,
        None,
        (),
        "",
    )
    m = parse_syslog(
        '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 42 ID47 [exampleSDID@32473 iut="3"] \ufeffAn application event',
        now=NOW,
    )
    assert m.timestamp == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert (m.procid, m.msgid, m.message) == ("42", "ID47", "An application event")
    assert m.subject == "evntslog[42]: An application event"


def test_rfc5424_example_with_offset() -> None:
    # RFC 5424 6.5 example 2
    m = parse_syslog(
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.", now=NOW
    )
    assert m.timestamp == datetime(2003, 8, 24, 5, 14, 15, 3, tzinfo=timezone(timedelta(hours=-7)))
    assert m.message == "%% It's time to make the do-nuts."


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "hello",
            'syslog header: message must start with <PRI> (RFC 5424 6.2.1), got "hello"; point the device at the gateway\'s syslog port, not a raw log stream',
        ),
        ("<192>Nov 25 17:30:42 a b: c", 'syslog header PRI: must be 0..191 without leading zeros, got "<192>"'),
        ("<013>Nov 25 17:30:42 a b: c", 'syslog header PRI: must be 0..191 without leading zeros, got "<013>"'),
        (
            "<13>Foo 25 17:30:42 a b: c",
            'syslog RFC 3164 timestamp: unknown month name, got "Foo 25 17:30:42"; expected Jan..Dec in English',
        ),
        (
            "<13>Feb 30 17:30:42 a b: c",
            'syslog RFC 3164 timestamp: not a valid date or time in 2026 (day is out of range for month), got "Feb 30 17:30:42"',
        ),
        ("<13>2 2026-01-01T00:00:00Z h a p m -", 'syslog RFC 5424 header VERSION: only version 1 is defined, got "2"'),
        (
            "<13>1 2026-01-01 h a p m -",
            'syslog RFC 5424 TIMESTAMP: must be RFC 3339 with a zone, e.g. 2024-01-31T23:59:59.123+09:00, got "2026-01-01"',
        ),
        (
            "<13>1 2026-02-30T00:00:00Z h a p m -",
            'syslog RFC 5424 TIMESTAMP: not a valid date or time (day is out of range for month), got "2026-02-30T00:00:00Z"',
        ),
        (
            "<13>1 - h " + "a" * 49 + " p m -",
            'syslog RFC 5424 header APP-NAME: must be 1-48 printable US-ASCII characters, got "' + "a" * 49 + '"',
        ),
        (
            "<13>1 - hé a p m -",
            'syslog RFC 5424 header HOSTNAME: must be 1-255 printable US-ASCII characters, got "hé"',
        ),
    ],
)
def test_header_errors(line: str, message: str) -> None:
    with pytest.raises(SyslogHeaderError) as err:
        parse_syslog(line, now=NOW)
    assert str(err.value) == message
    assert err.value.code == "syslog_bad_header"


@pytest.mark.parametrize(
    ("sd", "message"),
    [
        ("x", 'syslog RFC 5424 STRUCTURED-DATA at offset 16: STRUCTURED-DATA must be "-" or start with [, got "x msg"'),
        (
            "[=x]",
            'syslog RFC 5424 STRUCTURED-DATA at offset 17: SD-ID must be 1-32 printable characters except = ] " and space, got "=x] msg"',
        ),
        ("[id a=1]", 'syslog RFC 5424 STRUCTURED-DATA at offset 20: expected PARAM-NAME="PARAM-VALUE", got "a=1] msg"'),
        (
            '[id a="x]"]',
            'syslog RFC 5424 STRUCTURED-DATA at offset 20: an unescaped ] inside PARAM-VALUE, got "a=\\"x]\\"] msg"',
        ),
        (
            '[id a="x',
            'syslog RFC 5424 STRUCTURED-DATA at offset 20: PARAM-VALUE is not closed with a quote, got "a=\\"x"',
        ),
        ('[id a="x"', 'syslog RFC 5424 STRUCTURED-DATA at offset 25: SD-ELEMENT must end with ], got ""'),
        ('[id a="x"x', 'syslog RFC 5424 STRUCTURED-DATA at offset 25: SD-ELEMENT must end with ], got "x"'),
        ("-x", 'syslog RFC 5424 STRUCTURED-DATA: must be followed by a space before MSG, got "x msg"'),
    ],
)
def test_structured_data_errors(sd: str, message: str) -> None:
    line = f"<13>1 - h a p m {sd}" + ("" if sd.startswith('[id a="x') and not sd.endswith("]") else " msg")
    with pytest.raises(SyslogStructuredDataError) as err:
        parse_syslog(line, now=NOW)
    assert str(err.value) == message
    assert err.value.code == "syslog_bad_structured_data"


def test_errors_and_reprs_mask_macs() -> None:
    with pytest.raises(SyslogHeaderError) as err:
        parse_syslog("aa:bb:cc:dd:ee:ff joined", now=NOW)
    assert "dd:ee:ff" not in str(err.value) and "aa:bb:cc:**:**:**" in str(err.value)
    m = parse_syslog("<13>Nov 25 17:30:42 vm hostapd: wlan0: AP-STA-CONNECTED aa:bb:cc:dd:ee:ff", now=NOW)
    assert "dd:ee:ff" not in repr(m)
    assert "message='wlan0: AP-STA-CONNECTED aa:bb:cc:**:**:**'" in repr(m)


def test_encoders() -> None:
    msg = SyslogMessage(
        format=SyslogFormat.RFC5424,
        facility=3,
        severity=6,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        hostname="ap1",
        app_name="hostapd",
        procid="77",
        msgid="EV",
        structured_data=(SDElement(id="m@1", params=(("k", 'q"]\\'),)),),
        message="hi",
    )
    assert encode_rfc5424(msg) == b'<30>1 2026-01-02T03:04:05.006000Z ap1 hostapd 77 EV [m@1 k="q\\"\\]\\\\"] hi'
    assert encode_rfc3164(msg) == b"<30>Jan  2 12:04:05.006000 ap1 hostapd[77]: hi"
    bare = SyslogMessage(
        format=SyslogFormat.RFC3164, facility=0, severity=0, timestamp=None, hostname=None, app_name=None
    )
    assert encode_rfc5424(bare) == b"<0>1 - - - - - -"
    assert encode_rfc3164(bare) == b"<0>"


def test_encode_rfc3164_without_hostname_is_the_busybox_form() -> None:
    msg = SyslogMessage(
        format=SyslogFormat.RFC3164,
        facility=3,
        severity=6,
        timestamp=datetime(2026, 11, 5, 12, 0, 0, tzinfo=TOKYO),
        hostname=None,
        app_name="hostapd",
        message="x",
    )
    assert encode_rfc3164(msg) == b"<30>Nov  5 12:00:00 hostapd: x"
    assert parse_syslog(encode_rfc3164(msg), now=NOW) == msg
