"""Locker board codecs: golden frames from public drivers, error texts, round trips, fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.locker import (
    BoardStatus,
    LockerChecksumError,
    LockerFrameError,
    LockerFrameLength,
    LockerFrameTruncated,
    LockerUnexpectedFrame,
    LockerValueInvalid,
    LockerWrongBoard,
    LockPolarity,
    LockState,
    OccupancyPolarity,
    decode_cu16_status,
    decode_cu48_status,
    decode_xor_lock_reply,
    decode_xor_status,
    encode_cu16_query,
    encode_cu16_unlock,
    encode_cu48_query,
    encode_cu48_unlock,
    encode_xor_query,
    encode_xor_query_all,
    encode_xor_unlock,
)

# --- golden frames -------------------------------------------------------------------------
# Kerong CU16: DEVICES.md and the public KR-CU16 drivers (CartWise Python controller, "Kerong
# Lock Controller Module" TypeScript): 02 ADDR CMD 03 SUM, ADDR = board << 4 | lock-1.
# Kerong CU48: public "CuProtocol" TypeScript driver (CU_DETECTION_MESSAGE 02 00 00 60 03 65,
# MESS_CU_TEMP 02 00 00 61 03 66). XOR boards: public "rs485-lock-board-codec" TypeScript tests
# (8A 02 01 11 98, 80 02 00 33 B1) and several Android/C#/Arduino drivers (8A 01 01 11 9B,
# 8A 01 02 11 98, 8A 03 0C 11 94, 8A 02 0A 11 93).
GOLDEN_ENCODE = [
    (encode_cu16_unlock(0, 1), "02 00 31 03 36"),
    (encode_cu16_query(0), "02 00 30 03 35"),
    (encode_cu16_unlock(1, 16), "02 1f 31 03 55"),
    (encode_cu48_query(0), "02 00 00 60 03 65"),
    (encode_cu48_unlock(0, 1), "02 00 00 61 03 66"),
    (encode_xor_unlock(1, 1), "8a 01 01 11 9b"),
    (encode_xor_unlock(2, 1), "8a 02 01 11 98"),
    (encode_xor_unlock(1, 2), "8a 01 02 11 98"),
    (encode_xor_unlock(3, 12), "8a 03 0c 11 94"),
    (encode_xor_unlock(2, 10), "8a 02 0a 11 93"),
    (encode_xor_query_all(2), "80 02 00 33 b1"),
    (encode_xor_query(1, 1), "80 01 01 33 b3"),
]


@pytest.mark.parametrize(("frame", "hexbytes"), GOLDEN_ENCODE)
def test_golden_encodings(frame: bytes, hexbytes: str) -> None:
    assert frame == bytes.fromhex(hexbytes)


def kerong(*body: int) -> bytes:
    return bytes(body) + bytes((sum(body) & 0xFF,))


def xor(*body: int) -> bytes:
    x = 0
    for b in body:
        x ^= b
    return bytes(body) + bytes((x,))


def test_cu16_status_bits_and_polarity() -> None:
    # lock 1 and lock 16 bits set; infrared on lock 2 and lock 9.
    frame = kerong(0x02, 0x30, 0x35, 0b0000_0001, 0b1000_0000, 0b0000_0010, 0b0000_0001, 0x03)
    status = decode_cu16_status(frame, board=3)
    assert status.board == 3
    assert status.locks[0] == LockState(lock=1, locked=True, occupied=False)
    assert status.locks[1] == LockState(lock=2, locked=False, occupied=True)
    assert status.locks[8] == LockState(lock=9, locked=False, occupied=True)
    assert status.locks[15] == LockState(lock=16, locked=True, occupied=False)
    inverted = decode_cu16_status(
        frame, board=3, polarity=LockPolarity.SET_MEANS_UNLOCKED, occupancy_polarity=OccupancyPolarity.SET_MEANS_EMPTY
    )
    assert inverted.locks[0] == LockState(lock=1, locked=False, occupied=True)
    assert [s.lock for s in inverted.locks] == list(range(1, 17))


def test_cu16_errors() -> None:
    good = kerong(0x02, 0x00, 0x35, 0, 0, 0, 0, 0x03)
    with pytest.raises(LockerFrameTruncated) as info:
        decode_cu16_status(good[:5], board=0)
    assert str(info.value) == (
        "locker cu16: frame truncated, need 9 bytes, got 5 bytes; wait for the rest of the frame or check the baud rate"
    )
    assert info.value.code == "locker_frame_truncated"
    with pytest.raises(LockerFrameLength) as length:
        decode_cu16_status(good + b"\x00", board=0)
    assert str(length.value) == (
        "locker cu16: frame has the wrong length, expected 9 bytes, got 10 bytes; "
        "check the board model configured for this bus"
    )
    with pytest.raises(LockerChecksumError) as checksum:
        decode_cu16_status(good[:-1] + b"\x00", board=0)
    assert str(checksum.value) == (
        "locker cu16: checksum mismatch, expected 0x3A, got 0x00; noise on the RS-485 line or two boards answering"
    )
    assert checksum.value.params == {"where": "locker cu16", "expected": 0x3A, "got": 0}
    with pytest.raises(LockerWrongBoard) as wrong:
        decode_cu16_status(kerong(0x02, 0x10, 0x35, 0, 0, 0, 0, 0x03), board=0)
    assert str(wrong.value) == (
        "locker cu16: reply from the wrong board, expected board 0, got board 1; "
        "two boards share an address, or a late reply"
    )
    with pytest.raises(LockerUnexpectedFrame) as start:
        decode_cu16_status(kerong(0x05, 0x00, 0x35, 0, 0, 0, 0, 0x03), board=0)
    assert str(start.value) == "locker cu16: unexpected start byte, expected 0x02, got 0x05"
    with pytest.raises(LockerUnexpectedFrame) as end:
        decode_cu16_status(kerong(0x02, 0x00, 0x35, 0, 0, 0, 0, 0x04), board=0)
    assert str(end.value) == "locker cu16: unexpected end byte, expected 0x03, got 0x04"
    with pytest.raises(LockerUnexpectedFrame) as command:
        decode_cu16_status(kerong(0x02, 0x00, 0x31, 0, 0, 0, 0, 0x03), board=0)
    assert str(command.value) == ("locker cu16: unexpected reply command, expected 0x35, got 0x31")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: encode_cu16_unlock(15, 1), "locker cu16: board must be 0..14, got 15"),
        (lambda: encode_cu16_unlock(0, 0), "locker cu16: lock must be 1..16, got 0"),
        (lambda: encode_cu16_unlock(0, 17), "locker cu16: lock must be 1..16, got 17"),
        (lambda: encode_cu48_unlock(0, 49), "locker cu48: lock must be 1..48, got 49"),
        (lambda: encode_cu48_query(256), "locker cu48: board must be 0..255, got 256"),
        (lambda: encode_xor_unlock(0, 1), "locker xor board: board must be 1..255, got 0"),
        (lambda: encode_xor_unlock(1, 13, channels=12), "locker xor board: lock must be 1..12, got 13"),
        (lambda: encode_xor_query(1, 1, channels=16), "locker xor board: channels must be 12..24, got 16"),
        (lambda: decode_xor_status(b"", board=1, channels=8), "locker xor board: channels must be 12..24, got 8"),
    ],
)
def test_encoders_refuse_unaddressable_locks(call: object, message: str) -> None:
    with pytest.raises(LockerValueInvalid) as info:
        call()  # type: ignore[operator]
    assert str(info.value) == message


def test_cu48_status() -> None:
    data = (1 | 1 << 47 | 1 << 20).to_bytes(6, "little")
    frame = kerong(0x02, 0x05, 0x00, 0x75, *data, 0x03)
    status = decode_cu48_status(frame, board=5)
    locked = [s.lock for s in status.locks if s.locked]
    assert locked == [1, 21, 48]
    assert all(s.occupied is None for s in status.locks)
    flipped = decode_cu48_status(frame, board=5, polarity=LockPolarity.SET_MEANS_UNLOCKED)
    assert len([s for s in flipped.locks if s.locked]) == 45
    with pytest.raises(LockerWrongBoard):
        decode_cu48_status(frame, board=4)
    with pytest.raises(LockerUnexpectedFrame) as info:
        decode_cu48_status(kerong(0x02, 0x05, 0x00, 0x60, *data, 0x03), board=5)
    assert str(info.value) == "locker cu48: unexpected reply command, expected 0x75, got 0x60"


def test_xor_lock_replies_and_polarity() -> None:
    # status 0x00 after an unlock means "opened" on door-closing feedback wiring (public
    # rs485-lock-board-codec: 8A 01 01 00 8A is the expected success frame).
    opened = bytes.fromhex("8a0101008a")
    assert decode_xor_lock_reply(opened, board=1, lock=1) == LockState(lock=1, locked=False)
    failed = bytes.fromhex("8a0101119b")
    assert decode_xor_lock_reply(failed, board=1, lock=1).locked is True
    assert decode_xor_lock_reply(failed, board=1, lock=1, polarity=LockPolarity.SET_MEANS_UNLOCKED).locked is False
    assert decode_xor_lock_reply(xor(0x80, 1, 7, 0x11), board=1, lock=7).locked is True
    with pytest.raises(LockerWrongBoard):
        decode_xor_lock_reply(opened, board=2, lock=1)
    with pytest.raises(LockerUnexpectedFrame) as lock:
        decode_xor_lock_reply(opened, board=1, lock=2)
    assert str(lock.value) == "locker xor board: unexpected lock, expected 2, got 0x01"
    with pytest.raises(LockerUnexpectedFrame) as status:
        decode_xor_lock_reply(xor(0x8A, 1, 1, 0x22), board=1, lock=1)
    assert str(status.value) == ("locker xor board: unexpected status, expected 0x00 or 0x11, got 0x22")
    with pytest.raises(LockerUnexpectedFrame) as head:
        decode_xor_lock_reply(xor(0x81, 1, 1, 0x11), board=1, lock=1)
    assert str(head.value) == "locker xor board: unexpected start byte, expected 0x8A, got 0x81"
    with pytest.raises(LockerChecksumError) as checksum:
        decode_xor_lock_reply(bytes.fromhex("8a01010000"), board=1, lock=1)
    assert str(checksum.value) == (
        "locker xor board: checksum mismatch, expected 0x8A, got 0x00; noise on the RS-485 line or two boards answering"
    )
    with pytest.raises(LockerFrameTruncated):
        decode_xor_lock_reply(b"", board=1, lock=1)
    with pytest.raises(LockerFrameLength):
        decode_xor_lock_reply(opened + b"\x00", board=1, lock=1)


def test_xor_status_highest_group_first() -> None:
    # public rs485-lock-board-codec test: 80 02 05 03 33 X on 12 channels -> channels 1, 2
    # closed (bits 0, 1 of the low group), 9 and 11 closed (bits 0, 2 of the high group).
    frame = xor(0x80, 0x02, 0b0101, 0b0000_0011, 0x33)
    status = decode_xor_status(frame, board=2, channels=12)
    assert [s.lock for s in status.locks if s.locked] == [1, 2, 9, 11]
    assert len(status.locks) == 12
    frame24 = xor(0x80, 0x01, 0x80, 0x00, 0x01, 0x33)
    status24 = decode_xor_status(frame24, board=1, channels=24)
    assert [s.lock for s in status24.locks if s.locked] == [1, 24]
    with pytest.raises(LockerUnexpectedFrame) as command:
        decode_xor_status(xor(0x80, 0x02, 0, 0, 0x34), board=2, channels=12)
    assert str(command.value) == ("locker xor board: unexpected reply command, expected 0x33, got 0x34")
    with pytest.raises(LockerWrongBoard):
        decode_xor_status(frame, board=1, channels=12)


# --- properties ------------------------------------------------------------------------------

polarities = st.sampled_from(list(LockPolarity))


def _bits(states: tuple[LockState, ...], polarity: LockPolarity) -> int:
    value = 0
    for s in states:
        if s.locked == (polarity is LockPolarity.SET_MEANS_LOCKED):
            value |= 1 << (s.lock - 1)
    return value


@settings(max_examples=200)
@given(
    st.integers(0, 14),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    polarities,
    st.sampled_from(list(OccupancyPolarity)),
)
def test_cu16_round_trip(board: int, locks: int, ir: int, polarity: LockPolarity, occupancy: OccupancyPolarity) -> None:
    frame = kerong(0x02, board << 4, 0x35, locks & 0xFF, locks >> 8, ir & 0xFF, ir >> 8, 0x03)
    status = decode_cu16_status(frame, board=board, polarity=polarity, occupancy_polarity=occupancy)
    assert _bits(status.locks, polarity) == locks
    set_occupied = occupancy is OccupancyPolarity.SET_MEANS_OCCUPIED
    assert sum((s.occupied == set_occupied) << (s.lock - 1) for s in status.locks) == ir


@settings(max_examples=200)
@given(st.integers(0, 14), st.integers(1, 16))
def test_cu16_unlock_addresses_exactly_one_lock(board: int, lock: int) -> None:
    frame = encode_cu16_unlock(board, lock)
    assert frame[1] >> 4 == board and (frame[1] & 0x0F) + 1 == lock
    assert frame[1] != 0xF0  # never the broadcast address


@settings(max_examples=200)
@given(st.integers(0, 255), st.integers(0, 2**48 - 1), polarities)
def test_cu48_round_trip(board: int, bits: int, polarity: LockPolarity) -> None:
    frame = kerong(0x02, board, 0x00, 0x75, *bits.to_bytes(6, "little"), 0x03)
    status = decode_cu48_status(frame, board=board, polarity=polarity)
    assert isinstance(status, BoardStatus) and _bits(status.locks, polarity) == bits
    unlock = encode_cu48_unlock(board, (bits % 48) + 1)
    assert unlock[2] == bits % 48


@settings(max_examples=200)
@given(st.integers(1, 255), st.sampled_from([12, 24]), st.integers(0, 2**24 - 1), polarities)
def test_xor_round_trip(board: int, channels: int, bits: int, polarity: LockPolarity) -> None:
    bits &= (1 << channels) - 1
    groups = channels // 8 + (channels % 8 > 0)
    frame = xor(0x80, board, *bits.to_bytes(groups, "big"), 0x33)
    status = decode_xor_status(frame, board=board, channels=channels, polarity=polarity)
    assert _bits(status.locks, polarity) == bits
    lock = bits % channels + 1
    reply = encode_xor_unlock(board, lock, channels=channels)
    assert decode_xor_lock_reply(reply, board=board, lock=lock, polarity=polarity).locked is (
        polarity is LockPolarity.SET_MEANS_LOCKED
    )


@settings(max_examples=200)
@given(st.binary(max_size=14), st.integers(0, 255), st.integers(1, 24))
def test_arbitrary_bytes_only_typed_errors(data: bytes, board: int, lock: int) -> None:
    for decode in (
        lambda: decode_cu16_status(data, board=board % 15),
        lambda: decode_cu48_status(data, board=board),
        lambda: decode_xor_lock_reply(data, board=board, lock=lock),
        lambda: decode_xor_status(data, board=board, channels=12),
        lambda: decode_xor_status(data, board=board, channels=24),
    ):
        with contextlib.suppress(LockerFrameError):
            decode()


@settings(max_examples=200)
@given(st.integers(0, 14), st.integers(0, 0xFFFF), st.data())
def test_single_bit_flip_never_decodes_silently(board: int, locks: int, data: st.DataObject) -> None:
    frame = bytearray(kerong(0x02, board << 4, 0x35, locks & 0xFF, locks >> 8, 0, 0, 0x03))
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(LockerFrameError):
        decode_cu16_status(bytes(frame), board=board)
