"""Throughput of the RFID tag and locker board decoders on one core (target: 100,000 inputs/s)."""

from __future__ import annotations

import time
from collections.abc import Callable

from adapters.locker import (
    Dialect,
    decode_cu16_status,
    decode_cu48_status,
    decode_xor_lock_reply,
    decode_xor_status,
    encode_cu16_unlock,
    split_frames,
)
from adapters.rfid import (
    BlockOrder,
    Compaction,
    DataElement,
    append_iso15693_crc,
    check_iso15693_frame,
    compact_text,
    decode_danish,
    decode_iso28560_2,
    encode_elements,
    encode_isil,
)
from adapters.rfid.danish import reverse_blocks

TARGET = 100_000
DANISH = bytes.fromhex("11010131313232333334340000000000000000513e4445373035000000000000")
ISO28560_2 = encode_elements(
    [
        DataElement(oid=1, compaction=Compaction.NUMERIC, payload=compact_text(Compaction.NUMERIC, "30500123456789")),
        DataElement(oid=3, compaction=Compaction.APPLICATION_DEFINED, payload=encode_isil("JP-1000001")),
        DataElement(oid=5, compaction=Compaction.APPLICATION_DEFINED, payload=b"\x10"),
    ]
)
FRAME_15693 = append_iso15693_crc(bytes.fromhex("0001020304050607080910111213141516"))
CU16 = bytes((0x02, 0x30, 0x35, 0x01, 0x80, 0x02, 0x01, 0x03))
CU16 += bytes((sum(CU16) & 0xFF,))
CU48 = bytes((0x02, 0x05, 0x00, 0x75, 1, 2, 3, 4, 5, 6, 0x03))
CU48 += bytes((sum(CU48) & 0xFF,))
XOR_REPLY = bytes.fromhex("8a0101008a")
XOR_STATUS = bytes((0x80, 0x01, 0x80, 0x00, 0x01, 0x33, 0x33 ^ 0x80 ^ 0x01 ^ 0x80 ^ 0x01))
STREAM = CU16 * 8
REVERSED = reverse_blocks(DANISH)


def rate(fn: Callable[[], object], seconds: float = 0.5) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            fn()
        count += 1000
    return count / (time.perf_counter() - start)


CASES: list[tuple[str, Callable[[], object]]] = [
    ("danish decode (as read)", lambda: decode_danish(DANISH, block_order=BlockOrder.AS_READ)),
    ("danish decode (auto, reversed tag)", lambda: decode_danish(REVERSED)),
    ("iso28560-2 decode (PII, ISIL, usage)", lambda: decode_iso28560_2(ISO28560_2)),
    ("iso15693 frame CRC check", lambda: check_iso15693_frame(FRAME_15693)),
    ("cu16 status decode", lambda: decode_cu16_status(CU16, board=3)),
    ("cu48 status decode", lambda: decode_cu48_status(CU48, board=5)),
    ("xor lock reply decode", lambda: decode_xor_lock_reply(XOR_REPLY, board=1, lock=1)),
    ("xor 24-channel status decode", lambda: decode_xor_status(XOR_STATUS, board=1)),
    ("cu16 unlock encode", lambda: encode_cu16_unlock(3, 7)),
    ("kerong splitter (8 frames/input)", lambda: split_frames(STREAM, Dialect.KERONG)),
]


def main() -> int:
    failed = 0
    for name, fn in CASES:
        per_second = rate(fn)
        ok = per_second >= TARGET
        failed += not ok
        print(f"{name:40s} {per_second:12,.0f} inputs/s {'ok' if ok else 'BELOW TARGET'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
