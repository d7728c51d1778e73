"""RFC 6587 framing: octet counting and LF frames, split across arbitrary reads."""

from __future__ import annotations

import pytest

from adapters.wifi_syslog import (
    FrameSplitter,
    Framing,
    SyslogFramingError,
    encode_non_transparent,
    encode_octet_counted,
)


def fed(s: FrameSplitter, data: bytes) -> list[bytes]:
    """The frames `data` completes."""
    s.feed(data)
    return list(iter(s.next, None))


def test_octet_counting_across_chunks() -> None:
    s = FrameSplitter()
    stream = encode_octet_counted(b"<13>a b") + encode_octet_counted(b"<14>second\nline")
    frames: list[bytes] = []
    for i in range(len(stream)):
        frames += fed(s, stream[i : i + 1])
    assert frames == [b"<13>a b", b"<14>second\nline"]
    assert s.pending == 0
    assert s.close() == []


def test_newline_framing_strips_cr_nul_and_skips_empty_lines() -> None:
    s = FrameSplitter(Framing.NON_TRANSPARENT)
    assert fed(s, b"<13>one\r\n\n<13>two\x00\n<13>thr") == [b"<13>one", b"<13>two"]
    assert s.pending == 7
    assert s.close() == [b"<13>thr"]


def test_auto_mixes_per_frame_and_explicit_modes() -> None:
    assert fed(FrameSplitter(), b"4 <1>a<2>b\n3 <3>") == [b"<1>a", b"<2>b", b"<3>"]
    assert fed(FrameSplitter(Framing.OCTET_COUNTING), b"3 abc") == [b"abc"]
    assert encode_non_transparent(b"x") == b"x\n"


def test_incomplete_count_waits() -> None:
    s = FrameSplitter()
    assert fed(s, b"12") == []
    assert fed(s, b"3") == []
    assert s.pending == 3


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (
            b"12345 x",
            'syslog tcp stream: octet count must be 1-4 digits followed by a space, got "12345"; check the sender\'s framing setting (octet-counting vs newline)',
        ),
        (
            b"12a4 x",
            'syslog tcp stream: octet count must be a decimal number without leading zeros, got "12a4"; check the sender\'s framing setting (octet-counting vs newline)',
        ),
        (
            b"01 x",
            'syslog tcp stream: octet count must be a decimal number without leading zeros, got "01"; check the sender\'s framing setting (octet-counting vs newline)',
        ),
        (
            b"9999 x",
            "syslog tcp stream: frame larger than the 8192-octet limit, got 9999 octets; raise max_frame or shorten the sender's messages",
        ),
    ],
)
def test_octet_count_errors(stream: bytes, message: str) -> None:
    with pytest.raises(SyslogFramingError) as err:
        fed(FrameSplitter(), stream)
    assert str(err.value) == message
    assert err.value.code == "syslog_framing"


def test_line_too_long_and_cut_frame() -> None:
    s = FrameSplitter(max_frame=8)
    with pytest.raises(SyslogFramingError, match=r"^syslog tcp stream: no LF within the 8-octet limit, got 9 octets; "):
        fed(s, b"<13>abcde")
    assert s.pending == 0
    s = FrameSplitter()
    s.feed(b"10 <13>")
    with pytest.raises(SyslogFramingError) as err:
        s.close()
    assert str(err.value) == (
        "syslog tcp stream: connection closed inside an octet-counted frame, got 7 octets pending; "
        "the sender was cut off; the partial message is dropped"
    )


def test_the_frames_before_a_framing_error_in_the_same_read_come_out_first() -> None:
    # one read: two good frames, then an octet count no frame can have
    s = FrameSplitter()
    s.feed(encode_octet_counted(b"<13>one") + encode_non_transparent(b"<13>two") + b"12345 x")
    assert [s.next(), s.next()] == [b"<13>one", b"<13>two"]
    with pytest.raises(SyslogFramingError, match="octet count must be 1-4 digits"):
        s.next()


def test_invalid_limit() -> None:
    with pytest.raises(ValueError, match=r"^FrameSplitter: max_frame must be at least 1, got 0$"):
        FrameSplitter(max_frame=0)
