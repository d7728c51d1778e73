"""The decoders' fast paths agree with the general ones: same messages, events and errors; memos stay bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.wifi_syslog import SyslogError, decode_wifi_event, load_patterns, parse_syslog
from adapters.wifi_syslog import message as message_module
from adapters.wifi_syslog import patterns as patterns_module
from adapters.wifi_syslog.message import _parse_general

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 25, 8, 31, tzinfo=UTC)
PATTERNS = load_patterns()


def fast(text: str, now: datetime = NOW, zone: ZoneInfo = TOKYO) -> object:
    try:
        return parse_syslog(text, now=now, zone=zone)
    except SyslogError as exc:
        return type(exc), str(exc)


def general(text: str, now: datetime = NOW, zone: ZoneInfo = TOKYO) -> object:
    try:
        return _parse_general(text, now, zone)
    except SyslogError as exc:
        return type(exc), str(exc)


# Pieces chosen to sit on both sides of what the fast regex accepts (non-ASCII digits, PRI out of
# range or with leading zeros, empty hosts, hosts ending in ':' or holding '[', over-long 5424
# fields); the usual ones weigh more so that most lines take the fast path.


def pieces(usual: list[str], odd: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(usual * 6 + odd)


pri = pieces(["<0>", "<13>", "<30>", "<165>", "<191>"], ["<192>", "<013>", "<٣٠>"])
day = pieces(["25", " 5", "30"], ["5", "٢٥"])
month = pieces(["Nov", "Jan", "Dec", "Feb"], ["Foo", "nov"])
clock = pieces(["17:30:42", "00:00:00", "23:59:59.25"], ["17:30:4", "1٧:30:42", "24:00:00"])
word = pieces(
    ["ap-lib", "hostapd:", "hostapd[12]:", "U7-Pro", "1c6a1b60c3c0,U7-Pro-8.0.26+15443:"], ["", "x[", "a" * 70]
)
rest = st.text(alphabet=st.sampled_from([*'ab :[]0-"=\\', "é", "\t"]), max_size=20)
ts5424 = pieces(
    ["-", "2026-11-25T17:30:42Z", "2026-11-25T17:30:42.123456+09:00", "2026-02-30T00:00:00Z"],
    ["2026-11-25T17:30:42", "٢026-11-25T17:30:42Z", "2026-11-25T17:30:42.1234567Z"],
)
field = pieces(["-", "h", "ap-lib", "a" * 32], ["hé", "a" * 49, "\x01", "x" * 256])
sd = pieces(
    [
        "-",
        '[a b="c"]',
        '[timeQuality tzKnown="1" isSynced="1"]',
        '[x@1 a="b\\"c" d="e\\\\f\\]" g="h\\i"]',
        '[a][b c=""]',
    ],
    ['[a b="c]"]', "[a b=c]", "[a", "x", "[=x]", "[" + "n" * 33 + "]"],
)
version = pieces(["1"], ["2", "١"])

lines_3164 = st.builds(
    lambda p, m, d, c, w1, w2, r: f"{p}{m} {d} {c} {w1} {w2} {r}".rstrip("\r\n\x00"),
    pri,
    month,
    day,
    clock,
    word,
    word,
    rest,
)
lines_5424 = st.builds(
    lambda p, v, t, f1, f2, f3, f4, s, r: f"{p}{v} {t} {f1} {f2} {f3} {f4} {s} {r}".rstrip("\r\n\x00"),
    pri,
    version,
    ts5424,
    field,
    field,
    field,
    field,
    sd,
    rest,
)


@settings(max_examples=400)
@given(lines_3164 | lines_5424)
def test_fast_and_general_paths_agree(line: str) -> None:
    assert fast(line) == general(line)


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([*'<>0123456789 1-:TZ.[]"=abN', "Nov", "<13>", "<13>1 ", "é"]), max_size=30).map("".join)
)
def test_fast_and_general_paths_agree_on_noise(line: str) -> None:
    assert fast(line) == general(line)


@pytest.mark.parametrize(
    ("now", "line", "expected"),
    [
        # `now` on the 4th and 25th in the most distant offsets: its own month still holds in `zone`
        (
            datetime(2026, 12, 4, 0, 0, tzinfo=timezone(timedelta(hours=23, minutes=59))),
            "<13>Jan  1 00:00:00 h t: m",
            datetime(2027, 1, 1, tzinfo=ZoneInfo("Etc/GMT+12")),
        ),
        (
            datetime(2026, 1, 25, 23, 0, tzinfo=timezone(timedelta(hours=-23, minutes=-59))),
            "<13>Dec 31 00:00:00 h t: m",
            datetime(2025, 12, 31, tzinfo=ZoneInfo("Pacific/Kiritimati")),
        ),
        # near a month's end `zone` decides: 23:00 UTC on Dec 31 is already January in Kiritimati (+14)
        (
            datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
            "<13>Dec 31 00:00:00 h t: m",
            datetime(2026, 12, 31, tzinfo=ZoneInfo("Pacific/Kiritimati")),
        ),
        (
            datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
            "<13>Feb  1 00:00:00 h t: m",
            datetime(2027, 2, 1, tzinfo=ZoneInfo("Pacific/Kiritimati")),
        ),
        (
            datetime(2027, 1, 1, 1, 0, tzinfo=UTC),
            "<13>Feb  1 00:00:00 h t: m",
            datetime(2026, 2, 1, tzinfo=ZoneInfo("Etc/GMT+12")),
        ),  # still December there
        (
            datetime(2027, 1, 1, 1, 0, tzinfo=UTC),
            "<13>Mar  1 00:00:00 h t: m",
            datetime(2026, 3, 1, tzinfo=ZoneInfo("Etc/GMT+12")),
        ),
    ],
)
def test_year_inference_near_month_ends_in_distant_zones(now: datetime, line: str, expected: datetime) -> None:
    assert expected.tzinfo is not None
    zone = ZoneInfo(str(expected.tzinfo))
    parsed = parse_syslog(line, now=now, zone=zone)
    assert parsed.timestamp == expected
    assert parsed == _parse_general(line, now, zone)


def test_timestamp_memo_is_bounded_and_keeps_answering() -> None:
    start = datetime(2026, 11, 25, 0, 0, tzinfo=TOKYO)
    for n in range(message_module._STAMP_MEMO_MAX + 50):
        when = start + timedelta(seconds=n)
        m = parse_syslog(f"<13>Nov 25 {when:%H:%M:%S} h t: m", now=NOW)
        assert m.timestamp == when
        assert len(message_module._stamps) <= message_module._STAMP_MEMO_MAX
    # the same text in another zone or year is another timestamp
    assert parse_syslog("<13>Nov 25 00:00:00 h t: m", now=NOW, zone=ZoneInfo("UTC")).timestamp == datetime(
        2026, 11, 25, tzinfo=UTC
    )
    assert parse_syslog("<13>Nov 25 00:00:00 h t: m", now=NOW + timedelta(days=365)).timestamp == datetime(
        2027, 11, 25, tzinfo=TOKYO
    )


def test_mac_memo_is_bounded_and_keeps_answering() -> None:
    for n in range(patterns_module._MAC_MEMO_MAX + 50):
        mac = ":".join(f"{b:02x}" for b in (0x68, 0x5E, 0x1C, n >> 16, (n >> 8) & 255, n & 255))
        e = decode_wifi_event(
            f"<30>Nov 25 17:30:42 ap hostapd: wlan0: AP-STA-CONNECTED {mac.upper()}", now=NOW, patterns=PATTERNS
        )
        assert e is not None and e.client_mac.value == mac
        assert len(patterns_module._macs) <= patterns_module._MAC_MEMO_MAX


JSON_ANYWHERE = """
[vendors.j]
source = "test"
[[vendors.j.patterns]]
name = "p"
regex = 'ev:(?P<json>.*)'
json_group = "json"
kinds = { join = "connected" }
fields = { client_mac = "mac", kind = "what", interface = "radio" }
"""


@pytest.mark.parametrize(
    ("payload", "radio"),
    [
        ('{"what":"join","mac":"00:11:22:33:44:55","radio":"wifi0"}', "wifi0"),
        # whitespace around the object is what json.loads accepts and raw_decode alone would not
        ('  {"what":"join","mac":"00:11:22:33:44:55","radio":"wifi0"}  ', "wifi0"),
        # values that are not strings are kept as their JSON text
        ('{"what":"join","mac":"00:11:22:33:44:55","radio":[1, 2]}', "[1, 2]"),
    ],
)
def test_json_group_reading(payload: str, radio: str) -> None:
    e = decode_wifi_event(f"<13>x: ev:{payload}", now=NOW, patterns=load_patterns(JSON_ANYWHERE))
    assert e is not None and (e.client_mac.value, e.interface) == ("00:11:22:33:44:55", radio)


@pytest.mark.parametrize("payload", ['{"what":"join"} {"x":1}', "\ufeff{}", "[1]", '{"what": "join"'])
def test_json_group_that_is_not_one_object(payload: str) -> None:
    with pytest.raises(SyslogError) as err:
        decode_wifi_event(f"<13>x: ev:{payload}", now=NOW, patterns=load_patterns(JSON_ANYWHERE))
    assert str(err.value).startswith("wifi syslog pattern j.p: json_group does not hold a JSON object, got ")
