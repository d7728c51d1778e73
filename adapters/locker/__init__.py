"""Locker control boards: sans-I/O frame codecs for Kerong CU16/CU48 and XOR-checksum boards."""

from adapters.locker.codec import (
    BoardStatus,
    Dialect,
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
    Split,
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
    split_frames,
)

__all__ = [
    "BoardStatus", "Dialect", "LockPolarity", "LockState", "LockerChecksumError",
    "LockerFrameError", "LockerFrameLength", "LockerFrameTruncated", "LockerUnexpectedFrame",
    "LockerValueInvalid", "LockerWrongBoard", "OccupancyPolarity", "Split",
    "decode_cu16_status", "decode_cu48_status", "decode_xor_lock_reply", "decode_xor_status",
    "encode_cu16_query", "encode_cu16_unlock", "encode_cu48_query", "encode_cu48_unlock",
    "encode_xor_query", "encode_xor_query_all", "encode_xor_unlock", "split_frames",
]
