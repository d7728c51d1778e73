"""Sans-I/O codecs for locker control boards: Kerong CU16, Kerong CU48 and XOR 12/24-channel boards.

Lock numbers in this API are 1-based, as printed next to the connectors; each encoder maps them
to the board's wire numbering (CU16 and CU48: 0-based, XOR boards: 1-based).

Kerong KR-CU16 (RS-485 19200 8N1): `02 ADDR CMD 03 SUM`, ADDR = board << 4 | (lock - 1),
SUM = sum of all preceding bytes & 0xFF; 0x31 unlock, 0x30 query; reply
`02 ADDR 35 L1-8 L9-16 IR1-8 IR9-16 03 SUM` (bit 0 of L1-8 = lock 1). Sources: the
CartWise KR-CU16 Python driver and the "Kerong Lock Controller Module" TypeScript driver
(both in public repositories), DEVICES.md (`02 00 31 03 36` unlocks board 0 lock 1).

Kerong CU48: `02 BOARD LOCK CMD 03 SUM`, 0x60 status, 0x61 unlock (LOCK 0-based); status reply
`02 BOARD 00 75 d0..d5 03 SUM` with d0 bit 0 = lock 1 (open-source "CuProtocol" TypeScript
driver: detection frame `02 00 00 60 03 65`, unlock `02 00 00 61 03 66`; reply layout: verify).

XOR boards (9600 8N1): unlock `8A BOARD LOCK 11 X`, query `80 BOARD LOCK 33 X`, query all
`80 BOARD 00 33 X`, X = XOR of the preceding bytes. Replies: `8A BOARD LOCK S X` and
`80 BOARD LOCK S X` with S 0x11 (feedback signal high) or 0x00, and `80 BOARD S.. 33 X` with
ceil(channels/8) status bytes, highest channel group first (open-source
"rs485-lock-board-codec" TypeScript codec and its tests: `8A 01 01 11 9B`, `80 02 00 33 B1`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.errors import DeviceProtocolError

STX, ETX = 0x02, 0x03
CU16_UNLOCK, CU16_QUERY, CU16_REPLY = 0x31, 0x30, 0x35
CU48_STATUS, CU48_UNLOCK, CU48_REPLY = 0x60, 0x61, 0x75
XOR_UNLOCK_HEAD, XOR_QUERY_HEAD = 0x8A, 0x80
XOR_UNLOCK_CMD, XOR_QUERY_CMD = 0x11, 0x33
SIGNAL_HIGH, SIGNAL_LOW = 0x11, 0x00
CU16_LOCKS, CU48_LOCKS = 16, 48
# Board 15 would put lock 1 at ADDR 0xF0, the CU16 broadcast address: never send that.
CU16_MAX_BOARD = 14
CU16_REPLY_LEN, CU48_REPLY_LEN = 9, 12


# --- errors ------------------------------------------------------------------------------


class LockerFrameError(DeviceProtocolError):
    code = "locker_frame_invalid"

    def __init__(self, where: str, what: str, got: str, fix: str = "", /, **params: object) -> None:
        text = f"{where}: {what}, got {got}"
        super().__init__(f"{text}; {fix}" if fix else text, where=where, **params)


class LockerFrameTruncated(LockerFrameError):
    code = "locker_frame_truncated"

    def __init__(self, where: str, *, need: int, got: int) -> None:
        super().__init__(
            where,
            f"frame truncated, need {need} bytes",
            f"{got} bytes",
            "wait for the rest of the frame or check the baud rate",
            need=need,
            got=got,
        )


class LockerFrameLength(LockerFrameError):
    code = "locker_frame_length"

    def __init__(self, where: str, *, expected: int, got: int) -> None:
        super().__init__(
            where,
            f"frame has the wrong length, expected {expected} bytes",
            f"{got} bytes",
            "check the board model configured for this bus",
            expected=expected,
            got=got,
        )


class LockerChecksumError(LockerFrameError):
    code = "locker_checksum"

    def __init__(self, where: str, *, expected: int, got: int) -> None:
        super().__init__(
            where,
            f"checksum mismatch, expected 0x{expected:02X}",
            f"0x{got:02X}",
            "noise on the RS-485 line or two boards answering",
            expected=expected,
            got=got,
        )


class LockerWrongBoard(LockerFrameError):
    code = "locker_wrong_board"

    def __init__(self, where: str, *, expected: int, got: int) -> None:
        super().__init__(
            where,
            f"reply from the wrong board, expected board {expected}",
            f"board {got}",
            "two boards share an address, or a late reply",
            expected=expected,
            got=got,
        )


class LockerUnexpectedFrame(LockerFrameError):
    code = "locker_unexpected_frame"

    def __init__(self, where: str, *, field: str, expected: str, got: int) -> None:
        super().__init__(
            where, f"unexpected {field}, expected {expected}", f"0x{got:02X}", field=field, expected=expected, got=got
        )


class LockerValueInvalid(LockerFrameError):
    """Raised by encoders for a board or lock number the board cannot address."""

    code = "locker_value_invalid"

    def __init__(self, where: str, *, field: str, low: int, high: int, got: int) -> None:
        super().__init__(where, f"{field} must be {low}..{high}", str(got), field=field, low=low, high=high, got=got)


# --- values ------------------------------------------------------------------------------


class LockPolarity(enum.Enum):
    """What a set lock bit (or status 0x11) means; boards and wiring differ."""

    SET_MEANS_LOCKED = "set_means_locked"
    SET_MEANS_UNLOCKED = "set_means_unlocked"


class OccupancyPolarity(enum.Enum):
    SET_MEANS_OCCUPIED = "set_means_occupied"
    SET_MEANS_EMPTY = "set_means_empty"


@dataclass(frozen=True, kw_only=True)
class LockState:
    lock: int  # 1-based
    locked: bool
    occupied: bool | None = None  # None: the board has no infrared sensor for this lock


@dataclass(frozen=True, kw_only=True)
class BoardStatus:
    """Per-lock state of one board, polarity already applied; bit k stands for lock k + 1."""

    board: int
    lock_count: int
    locked_mask: int
    occupied_mask: int | None = None  # None: the board has no infrared sensors

    def lock(self, lock: int) -> LockState:
        bit = 1 << (lock - 1)
        occupied = None if self.occupied_mask is None else bool(self.occupied_mask & bit)
        return LockState(lock=lock, locked=bool(self.locked_mask & bit), occupied=occupied)

    @property
    def locks(self) -> tuple[LockState, ...]:
        return tuple(self.lock(k) for k in range(1, self.lock_count + 1))


# --- shared ------------------------------------------------------------------------------


def _check_range(where: str, field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise LockerValueInvalid(where, field=field, low=low, high=high, got=value)
    return value


def _sum8(data: bytes) -> int:
    return sum(data) & 0xFF


def _xor8(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


def _kerong_frame(body: bytes) -> bytes:
    return body + bytes((_sum8(body),))


def _xor_frame(body: bytes) -> bytes:
    return body + bytes((_xor8(body),))


def _check_kerong(where: str, frame: bytes, length: int, command_at: int, command: int) -> None:
    if len(frame) < length:
        raise LockerFrameTruncated(where, need=length, got=len(frame))
    if len(frame) > length:
        raise LockerFrameLength(where, expected=length, got=len(frame))
    if frame[0] != STX:
        raise LockerUnexpectedFrame(where, field="start byte", expected="0x02", got=frame[0])
    expected = _sum8(frame[:-1])
    if frame[-1] != expected:
        raise LockerChecksumError(where, expected=expected, got=frame[-1])
    if frame[-2] != ETX:
        raise LockerUnexpectedFrame(where, field="end byte", expected="0x03", got=frame[-2])
    if frame[command_at] != command:
        raise LockerUnexpectedFrame(where, field="reply command", expected=f"0x{command:02X}", got=frame[command_at])


def _status(
    board: int,
    count: int,
    bits: int,
    polarity: LockPolarity,
    occupancy: int | None = None,
    occupancy_polarity: OccupancyPolarity = OccupancyPolarity.SET_MEANS_OCCUPIED,
) -> BoardStatus:
    full = (1 << count) - 1
    locked = bits if polarity is LockPolarity.SET_MEANS_LOCKED else ~bits & full
    if occupancy is not None and occupancy_polarity is OccupancyPolarity.SET_MEANS_EMPTY:
        occupancy = ~occupancy & full
    return BoardStatus(board=board, lock_count=count, locked_mask=locked, occupied_mask=occupancy)


# --- Kerong CU16 -------------------------------------------------------------------------

CU16 = "locker cu16"


def _cu16_addr(board: int, lock: int) -> int:
    _check_range(CU16, "board", board, 0, CU16_MAX_BOARD)
    return board << 4 | (_check_range(CU16, "lock", lock, 1, CU16_LOCKS) - 1)


def encode_cu16_unlock(board: int, lock: int) -> bytes:
    return _kerong_frame(bytes((STX, _cu16_addr(board, lock), CU16_UNLOCK, ETX)))


def encode_cu16_query(board: int) -> bytes:
    return _kerong_frame(bytes((STX, _cu16_addr(board, 1), CU16_QUERY, ETX)))


def decode_cu16_status(
    frame: bytes,
    *,
    board: int,
    polarity: LockPolarity = LockPolarity.SET_MEANS_LOCKED,
    occupancy_polarity: OccupancyPolarity = OccupancyPolarity.SET_MEANS_OCCUPIED,
) -> BoardStatus:
    """Decode a CU16 status reply (`02 ADDR 35 L1-8 L9-16 IR1-8 IR9-16 03 SUM`)."""
    _check_kerong(CU16, frame, CU16_REPLY_LEN, 2, CU16_REPLY)
    if frame[1] >> 4 != board:
        raise LockerWrongBoard(CU16, expected=board, got=frame[1] >> 4)
    locks = frame[3] | frame[4] << 8
    infrared = frame[5] | frame[6] << 8
    return _status(board, CU16_LOCKS, locks, polarity, infrared, occupancy_polarity)


# --- Kerong CU48 -------------------------------------------------------------------------

CU48 = "locker cu48"


def encode_cu48_unlock(board: int, lock: int) -> bytes:
    _check_range(CU48, "board", board, 0, 255)
    wire_lock = _check_range(CU48, "lock", lock, 1, CU48_LOCKS) - 1
    return _kerong_frame(bytes((STX, board, wire_lock, CU48_UNLOCK, ETX)))


def encode_cu48_query(board: int) -> bytes:
    _check_range(CU48, "board", board, 0, 255)
    return _kerong_frame(bytes((STX, board, 0x00, CU48_STATUS, ETX)))


def decode_cu48_status(
    frame: bytes, *, board: int, polarity: LockPolarity = LockPolarity.SET_MEANS_LOCKED
) -> BoardStatus:
    """Decode a CU48 status reply (`02 BOARD 00 75 d0..d5 03 SUM`, d0 bit 0 = lock 1)."""
    _check_kerong(CU48, frame, CU48_REPLY_LEN, 3, CU48_REPLY)
    if frame[1] != board:
        raise LockerWrongBoard(CU48, expected=board, got=frame[1])
    bits = int.from_bytes(frame[4:10], "little")
    return _status(board, CU48_LOCKS, bits, polarity)


# --- XOR 12/24-channel boards ------------------------------------------------------------

XOR = "locker xor board"


def _xor_board_lock(board: int, lock: int, channels: int) -> tuple[int, int]:
    _check_channels(channels)
    return (_check_range(XOR, "board", board, 1, 255), _check_range(XOR, "lock", lock, 1, channels))


def _check_channels(channels: int) -> None:
    if channels not in (12, 24):
        raise LockerValueInvalid(XOR, field="channels", low=12, high=24, got=channels)


def encode_xor_unlock(board: int, lock: int, *, channels: int = 24) -> bytes:
    b, lk = _xor_board_lock(board, lock, channels)
    return _xor_frame(bytes((XOR_UNLOCK_HEAD, b, lk, XOR_UNLOCK_CMD)))


def encode_xor_query(board: int, lock: int, *, channels: int = 24) -> bytes:
    b, lk = _xor_board_lock(board, lock, channels)
    return _xor_frame(bytes((XOR_QUERY_HEAD, b, lk, XOR_QUERY_CMD)))


def encode_xor_query_all(board: int) -> bytes:
    return _xor_frame(bytes((XOR_QUERY_HEAD, _check_range(XOR, "board", board, 1, 255), 0x00, XOR_QUERY_CMD)))


def _check_xor(frame: bytes, length: int, head: int) -> None:
    if len(frame) < length:
        raise LockerFrameTruncated(XOR, need=length, got=len(frame))
    if len(frame) > length:
        raise LockerFrameLength(XOR, expected=length, got=len(frame))
    if frame[0] != head:
        raise LockerUnexpectedFrame(XOR, field="start byte", expected=f"0x{head:02X}", got=frame[0])
    expected = _xor8(frame[:-1])
    if frame[-1] != expected:
        raise LockerChecksumError(XOR, expected=expected, got=frame[-1])


def decode_xor_lock_reply(
    frame: bytes,
    *,
    board: int,
    lock: int,
    polarity: LockPolarity = LockPolarity.SET_MEANS_LOCKED,
) -> LockState:
    """Decode the reply to an unlock (`8A ..`) or single-lock query (`80 ..`)."""
    head = frame[0] if frame else XOR_UNLOCK_HEAD
    _check_xor(frame, 5, XOR_QUERY_HEAD if head == XOR_QUERY_HEAD else XOR_UNLOCK_HEAD)
    if frame[1] != board:
        raise LockerWrongBoard(XOR, expected=board, got=frame[1])
    if frame[2] != lock:
        raise LockerUnexpectedFrame(XOR, field="lock", expected=str(lock), got=frame[2])
    status = frame[3]
    if status not in (SIGNAL_HIGH, SIGNAL_LOW):
        raise LockerUnexpectedFrame(XOR, field="status", expected="0x00 or 0x11", got=status)
    high = status == SIGNAL_HIGH
    return LockState(lock=lock, locked=high == (polarity is LockPolarity.SET_MEANS_LOCKED))


def decode_xor_status(
    frame: bytes,
    *,
    board: int,
    channels: int = 24,
    polarity: LockPolarity = LockPolarity.SET_MEANS_LOCKED,
) -> BoardStatus:
    """Decode a query-all reply (`80 BOARD S.. 33 X`, highest channel group first)."""
    _check_channels(channels)
    groups = -(-channels // 8)
    _check_xor(frame, groups + 4, XOR_QUERY_HEAD)
    if frame[1] != board:
        raise LockerWrongBoard(XOR, expected=board, got=frame[1])
    if frame[-2] != XOR_QUERY_CMD:
        raise LockerUnexpectedFrame(XOR, field="reply command", expected="0x33", got=frame[-2])
    bits = int.from_bytes(frame[2 : 2 + groups], "big")
    return _status(board, channels, bits, polarity)


# --- streaming frame splitter ------------------------------------------------------------


class Dialect(enum.Enum):
    KERONG = "kerong"  # CU16 and CU48: 02 … 03 SUM
    XOR_12 = "xor_12"
    XOR_24 = "xor_24"


KERONG_MAX_FRAME = 32


@dataclass(frozen=True, kw_only=True)
class Split:
    frames: tuple[bytes, ...]
    remainder: bytes  # an incomplete frame to prepend to the next read
    discarded: int  # bytes dropped while hunting for a frame start (noise, echoes)


def _kerong_end(buf: bytes, start: int) -> int | None:
    """Index after the frame starting at `start`; None if incomplete; -1 if none can end."""
    total = buf[start]
    limit = min(len(buf), start + KERONG_MAX_FRAME)
    for k in range(start + 1, limit):
        byte = buf[k]
        if k >= start + 3 and byte == ETX and k + 1 < len(buf) and buf[k + 1] == (total + ETX) & 0xFF:
            return k + 2
        total += byte
    return None if limit - start < KERONG_MAX_FRAME else -1


def _xor_valid(frame: bytes) -> bool:
    if _xor8(frame):
        return False
    return frame[3] in (SIGNAL_HIGH, SIGNAL_LOW) if len(frame) == 5 else frame[-2] == XOR_QUERY_CMD


def _xor_end(buf: bytes, start: int, groups: int, final: bool) -> int | None:
    n = len(buf)
    short, long = start + 5, start + groups + 4
    if buf[start] == XOR_UNLOCK_HEAD or (long <= n and _xor_valid(buf[start:long])):
        if buf[start] == XOR_QUERY_HEAD:
            return long
        if short > n:
            return None
        return short if _xor_valid(buf[start:short]) else -1
    if short > n:
        return None
    if _xor_valid(buf[start:short]):
        # A 5-byte single-lock reply can also be the head of a query-all reply: wait for
        # the longer frame unless the line has gone quiet (`final`).
        return short if long <= n or final else None
    return None if long > n else -1


def split_frames(buffer: bytes, dialect: Dialect, *, final: bool = False) -> Split:
    """Cut complete reply frames out of bytes read from the serial line so far.

    Pass `final=True` once the line has been quiet for an inter-frame gap, so a frame that
    could also be the start of a longer one is released instead of kept as remainder.
    """
    frames: list[bytes] = []
    heads = (STX,) if dialect is Dialect.KERONG else (XOR_UNLOCK_HEAD, XOR_QUERY_HEAD)
    groups = 2 if dialect is Dialect.XOR_12 else 3
    discarded = i = 0
    n = len(buffer)
    while i < n:
        if buffer[i] not in heads:
            i += 1
            discarded += 1
            continue
        end = _kerong_end(buffer, i) if dialect is Dialect.KERONG else _xor_end(buffer, i, groups, final)
        if end is None:
            return Split(frames=tuple(frames), remainder=buffer[i:], discarded=discarded)
        if end < 0:
            i += 1  # a start byte inside noise: resynchronise on the next one
            discarded += 1
            continue
        frames.append(buffer[i:end])
        i = end
    return Split(frames=tuple(frames), remainder=b"", discarded=discarded)
