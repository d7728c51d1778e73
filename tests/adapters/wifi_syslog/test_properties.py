"""Property tests: encode -> parse round-trips (3164, 5424, TCP framing) and typed errors only on any input."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.wifi_syslog import (
    FrameSplitter,
    Framing,
    SDElement,
    SyslogError,
    SyslogFormat,
    SyslogFramingError,
    SyslogMessage,
    decode_wifi_event,
    encode_non_transparent,
    encode_octet_counted,
    encode_rfc3164,
    encode_rfc5424,
    load_patterns,
    parse_syslog,
)

PATTERNS = load_patterns()
ZONES = st.sampled_from([ZoneInfo("Asia/Tokyo"), ZoneInfo("UTC"), ZoneInfo("America/New_York")])
printable = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
sd_name = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters='= ]"'), min_size=1, max_size=32
)
message_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60).filter(
    lambda s: not s.startswith("\ufeff")
)
times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31))


@settings(max_examples=200)
@given(
    st.integers(0, 23),
    st.integers(0, 7),
    st.none() | times,
    st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5, minutes=-30))]),
    st.none() | printable.filter(lambda s: s != "-"),
    st.none() | printable.filter(lambda s: s != "-" and len(s) <= 48),
    st.none() | printable.filter(lambda s: s != "-"),
    st.none() | printable.filter(lambda s: s != "-"),
    st.lists(
        st.builds(
            SDElement,
            id=sd_name,
            params=st.lists(st.tuples(sd_name, st.text(max_size=12).filter(lambda s: "\x00" not in s)), max_size=3).map(
                tuple
            ),
        ),
        max_size=3,
    ).map(tuple),
    message_text,
)
def test_rfc5424_round_trip(
    facility: int,
    severity: int,
    ts: datetime | None,
    tz: timezone,
    host: str | None,
    app: str | None,
    procid: str | None,
    msgid: str | None,
    sd: tuple[SDElement, ...],
    text: str,
) -> None:
    msg = SyslogMessage(
        format=SyslogFormat.RFC5424,
        facility=facility,
        severity=severity,
        timestamp=None if ts is None else ts.replace(tzinfo=tz),
        hostname=host,
        app_name=app,
        procid=procid,
        msgid=msgid,
        structured_data=sd,
        message=text.rstrip("\r\n\x00"),
    )
    assert parse_syslog(encode_rfc5424(msg), now=datetime.now(UTC)) == msg


@settings(max_examples=200)
@given(
    st.integers(0, 23),
    st.integers(0, 7),
    times,
    st.integers(-20, 20),
    ZONES,
    st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":["), min_size=1, max_size=20),
    st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":[]"), min_size=1, max_size=20),
    st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="]"), max_size=8),
    message_text,
)
def test_rfc3164_round_trip(
    facility: int,
    severity: int,
    when: datetime,
    skew_days: int,
    zone: ZoneInfo,
    host: str,
    tag: str,
    pid: str | None,
    text: str,
) -> None:
    # A line is read close to when it was written (here within +-20 days, across year ends too).
    stamp = when.replace(tzinfo=zone)
    if stamp.utcoffset() != stamp.replace(fold=1).utcoffset():
        stamp = stamp + timedelta(hours=3)  # an ambiguous or skipped wall time cannot round-trip through 3164
    stamp = datetime.fromtimestamp(stamp.timestamp(), zone)
    msg = SyslogMessage(
        format=SyslogFormat.RFC3164,
        facility=facility,
        severity=severity,
        timestamp=stamp,
        hostname=host,
        app_name=tag,
        procid=pid,
        message=text.strip(),
    )
    parsed = parse_syslog(encode_rfc3164(msg, zone=zone), now=stamp + timedelta(days=skew_days), zone=zone)
    assert parsed == msg


@settings(max_examples=100)
@given(
    st.lists(
        st.binary(min_size=1, max_size=50).filter(
            lambda b: b"\n" not in b and b[:1] not in b"0123456789" and b.rstrip(b"\r\x00") == b
        ),
        max_size=6,
    ),
    st.sampled_from(["octet", "lf", "mixed"]),
    st.lists(st.integers(1, 40), min_size=1, max_size=10),
)
def test_framing_round_trip(messages: list[bytes], mode: str, cuts: list[int]) -> None:
    stream = b"".join(
        encode_octet_counted(m) if mode == "octet" or (mode == "mixed" and i % 2) else encode_non_transparent(m)
        for i, m in enumerate(messages)
    )
    splitter = FrameSplitter(Framing.AUTO)
    frames: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        splitter.feed(stream[pos : pos + step])
        frames += iter(splitter.next, None)
        pos, i = pos + step, i + 1
    assert frames + splitter.close() == messages


@settings(max_examples=500)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: "<13>" + b.decode("latin-1")), ZONES)
def test_arbitrary_text_raises_only_syslog_errors(line: str, zone: ZoneInfo) -> None:
    with contextlib.suppress(SyslogError):
        decode_wifi_event(line, now=datetime(2026, 1, 1, tzinfo=UTC), patterns=PATTERNS, zone=zone)


@settings(max_examples=300)
@given(
    st.sampled_from(
        [
            "<30>Sep  9 20:08:12 ap hostapd: wlan0: AP-STA-CONNECTED ",
            '<30>Sep  9 20:08:12 U 1c6a1b60c3c0,U7: stahtd_dump_event(): {"message_type":"STA_ASSOC_TRACKER","event_type":"association","mac":',
            "<13>1 ",
            "<13>1 - h a p m [",
        ]
    ),
    st.text(max_size=80),
)
def test_near_miss_lines_raise_only_syslog_errors(prefix: str, tail: str) -> None:
    with contextlib.suppress(SyslogError):
        decode_wifi_event(prefix + tail, now=datetime(2026, 1, 1, tzinfo=UTC), patterns=PATTERNS)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=8), st.sampled_from(list(Framing)))
def test_arbitrary_streams_raise_only_framing_errors(chunks: list[bytes], framing: Framing) -> None:
    splitter = FrameSplitter(framing, max_frame=64)
    try:
        for chunk in chunks:
            splitter.feed(chunk)
            while splitter.next() is not None:
                pass
        splitter.close()
    except SyslogFramingError:
        pass


@settings(max_examples=300)
@given(
    st.lists(st.binary(min_size=1, max_size=30).filter(lambda m: b"\n" not in m), min_size=1, max_size=6),
    st.sampled_from([b"12345 x", b"0 x", b"9999 x", b"12a4 x"]),
    st.lists(st.integers(1, 40), min_size=1, max_size=10),
)
def test_every_frame_before_a_framing_error_comes_out_whatever_the_split(
    messages: list[bytes], bad: bytes, cuts: list[int]
) -> None:
    stream = b"".join(encode_octet_counted(m) for m in messages) + bad
    frames: list[bytes] = []
    with pytest.raises(SyslogFramingError):
        split_into(frames, stream, cuts)
    assert frames == messages


def split_into(frames: list[bytes], stream: bytes, cuts: list[int]) -> None:
    """`stream` fed in reads of the `cuts` sizes (cycled), each read's frames taken into `frames`."""
    splitter = FrameSplitter(Framing.AUTO)
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        splitter.feed(stream[pos : pos + step])
        pos, i = pos + step, i + 1
        while (frame := splitter.next()) is not None:
            frames.append(frame)
