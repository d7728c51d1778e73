"""Streaming frame splitter: serial reads arrive in pieces, with noise between frames."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.locker import Dialect, Split, decode_cu16_status, decode_cu48_status, split_frames
from tests.adapters.locker.test_codec import kerong, xor

# Data bytes include 0x03 on purpose: an ETX value inside the data must not end the frame.
CU16_REPLY = kerong(0x02, 0x00, 0x35, 0x03, 0x80, 0x00, 0x03, 0x03)
CU48_REPLY = kerong(0x02, 0x05, 0x00, 0x75, 0x01, 0x03, 0x00, 0x00, 0x00, 0x80, 0x03)
XOR_UNLOCK_REPLY = bytes.fromhex("8a0101008a")
XOR_QUERY_REPLY_12 = xor(0x80, 0x02, 0x05, 0x03, 0x33)
XOR_QUERY_REPLY_24 = xor(0x80, 0x01, 0x80, 0x00, 0x01, 0x33)
XOR_SINGLE_REPLY = xor(0x80, 0x01, 0x01, 0x11)


def test_fixtures_are_valid_frames() -> None:
    assert decode_cu16_status(CU16_REPLY, board=0).locks[0].locked is True
    assert decode_cu48_status(CU48_REPLY, board=5).locks[0].locked is True


def test_kerong_pieces_and_noise() -> None:
    stream = b"\xff\x00" + CU16_REPLY + CU48_REPLY
    first = split_frames(stream[:7], Dialect.KERONG)
    assert first == Split(frames=(), remainder=stream[2:7], discarded=2)
    rest = split_frames(first.remainder + stream[7:], Dialect.KERONG)
    assert rest == Split(frames=(CU16_REPLY, CU48_REPLY), remainder=b"", discarded=0)


def test_kerong_waits_for_checksum_after_etx() -> None:
    assert split_frames(CU16_REPLY[:-1], Dialect.KERONG).remainder == CU16_REPLY[:-1]


def test_kerong_resynchronises_after_a_false_start() -> None:
    noise = b"\x02" + bytes(range(0x40, 0x40 + 40))  # a start byte followed by no frame end
    result = split_frames(noise + CU16_REPLY, Dialect.KERONG)
    assert result.frames == (CU16_REPLY,)
    assert result.discarded == len(noise)


def test_xor_frames_of_every_shape() -> None:
    stream = b"\x11" + XOR_UNLOCK_REPLY + XOR_QUERY_REPLY_12 + XOR_SINGLE_REPLY
    result = split_frames(stream, Dialect.XOR_12)
    # The last 5-byte reply could be the head of a 6-byte query-all reply: kept until quiet.
    assert result == Split(frames=(XOR_UNLOCK_REPLY, XOR_QUERY_REPLY_12), remainder=XOR_SINGLE_REPLY, discarded=1)
    assert split_frames(result.remainder, Dialect.XOR_12, final=True).frames == (XOR_SINGLE_REPLY,)
    assert split_frames(XOR_SINGLE_REPLY + XOR_UNLOCK_REPLY, Dialect.XOR_12).frames == (
        XOR_SINGLE_REPLY,
        XOR_UNLOCK_REPLY,
    )
    # 80 01 80 00 01 | 33 X: the first five bytes alone also pass the XOR check.
    assert split_frames(XOR_QUERY_REPLY_24, Dialect.XOR_24, final=True).frames == (XOR_QUERY_REPLY_24,)
    partial = split_frames(XOR_QUERY_REPLY_24[:5], Dialect.XOR_24)
    assert partial == Split(frames=(), remainder=XOR_QUERY_REPLY_24[:5], discarded=0)
    assert split_frames(XOR_UNLOCK_REPLY[:3], Dialect.XOR_12).remainder == XOR_UNLOCK_REPLY[:3]
    assert split_frames(XOR_SINGLE_REPLY[:3], Dialect.XOR_12).remainder == XOR_SINGLE_REPLY[:3]


def test_xor_bad_frame_is_skipped() -> None:
    garbage = bytes.fromhex("8a01010000")  # bad XOR
    result = split_frames(garbage + XOR_UNLOCK_REPLY, Dialect.XOR_24)
    assert result.frames == (XOR_UNLOCK_REPLY,)
    assert result.discarded == 5
    bad_query = xor(0x80, 0x01, 0x01, 0x22)  # valid XOR but no known status or command
    result = split_frames(bad_query + b"\x00\x00" + XOR_SINGLE_REPLY, Dialect.XOR_12, final=True)
    assert result.frames == (XOR_SINGLE_REPLY,)
    assert split_frames(bad_query, Dialect.XOR_24).remainder == bad_query  # may still grow


frames = st.sampled_from([CU16_REPLY, CU48_REPLY])


@settings(max_examples=200)
@given(st.lists(frames, min_size=1, max_size=6), st.lists(st.integers(1, 12), max_size=30))
def test_any_chunking_yields_the_same_frames(sent: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(sent)
    got: list[bytes] = []
    pending = b""
    pos = 0
    for size in [*cuts, len(stream)]:
        chunk, pos = stream[pos : pos + size], pos + size
        result = split_frames(pending + chunk, Dialect.KERONG)
        got += result.frames
        pending = result.remainder
        assert result.discarded == 0
    assert got == sent and pending == b""


@settings(max_examples=300)
@given(st.binary(max_size=64), st.sampled_from(list(Dialect)), st.booleans())
def test_arbitrary_bytes_never_raise(data: bytes, dialect: Dialect, final: bool) -> None:
    result = split_frames(data, dialect, final=final)
    assert b"".join(result.frames) + result.remainder in data or result.discarded
    assert sum(map(len, result.frames)) + len(result.remainder) + result.discarded == len(data)
