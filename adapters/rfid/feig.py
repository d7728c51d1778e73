"""FEIG OBID i-scan HF readers (ISO 15693 pads): the standard host protocol, sans-I/O.

Source: FEIG ELECTRONIC, "OBID i-scan System-Manual ID ISC.MR/PR/PRH101" (document H60301-3e-ID-B),
chapter 2 (protocol frames) and 6.1 ([0xB0] host commands for ISO 15693); the same frames are in the
ID ISC.MR200 (H40801-5e-ID-B) and ID ISC.LR200 (H90692-16e-ID-B) manuals.

Frames (standard protocol, up to 255 bytes; the advanced protocol that starts with STX 0x02 is not
spoken here and is refused):

    host → reader   LENGTH COM-ADR CONTROL DATA… CRC16
    reader → host   LENGTH COM-ADR CONTROL STATUS DATA… CRC16

LENGTH counts every byte including itself and the CRC. CRC16 is CCITT reflected (polynomial
0x8408), start 0xFFFF, no final XOR, over bytes 1..n-2, sent low byte first (= CRC-16/MCRF4XX,
check value 0x6F91). COM-ADR 255 reaches any reader. Multi-byte values are MSB first.

ISO 15693 host commands ([0xB0]; REQUEST-DATA starts with the ISO command byte and a MODE byte,
bits 0-2 ADR: 000 non-addressed, 001 addressed with the 8-byte UID; bit 3 SEC asks for block
security status):
- 0x01 Inventory, MODE bit 7 MORE → DATA-SETS, then per tag TR-TYPE DSFID UID(8); STATUS 0x94 more;
- 0x23 Read Multiple Blocks MODE UID DB-ADR DB-N → DB-N DB-SIZE (SEC-STATUS DB…) × DB-N;
- 0x2B Get System Information MODE UID → DSFID UID(8) AFI MEM-SIZE(2) IC-REF, MEM-SIZE being ISO
  15693's 16-bit memory size MSB first: block size − 1 (bits 0-4), then number of blocks − 1 (the
  manual gives no byte order; FEIG's own SDK reads it so: ID ISC.SDK V04.06.10,
  FEDM_ISCReader.cpp, Set_0xB0_0x2B_IsoTableData);
- 0x27 Write AFI MODE UID AFI.
NXP ICODE SLI custom commands ([0xB1], manufacturer code 0x04; **verify** against the reader's
manual for your firmware): 0xA2 Set EAS, 0xA3 Reset EAS, 0xA5 EAS Alarm (STATUS 0x00 when the EAS
bit is set, 0x01 "no transponder" when it is not). A tag of another maker ignores them (ISO 15693: a
custom command names its IC manufacturer), which reads as 0x01 too: `has_nxp_eas(uid)` tells which
tags to send them to, from the UID's maker byte (E0 04 …; UIDs here are MSB first).
Status bytes: 0x00 OK, 0x01 no transponder, 0x02 data false (CRC on air), 0x03 write error,
0x83 RF communication error, 0x84 RF warning, 0x94 more data, 0x95 ISO 15693 error (ISO-ERROR byte
follows).
Feedback: [0x72] Set Output (beeper/LED) MODE 0x01, OUT-N, then OUT-NR OUT-S OUT-TIME(2, ×100 ms)
per output — **verify** the output numbers of your model.

Errors (all `FeigFrameError`, an `RfidTagError`, a `DeviceProtocolError`):
    FeigFrameError          a reply that breaks the protocol (wrong length of a reply's data…), no reply
    ├── FeigLengthError     a LENGTH byte no reply can have (below 6): that byte is dropped
    ├── FeigAdvancedFrame   STX 0x02 where LENGTH belongs (the advanced protocol): that byte is dropped
    ├── FeigCrcError        a whole frame whose CRC16 fails: the frame is dropped
    ├── FeigStaleReply      a sound reply to another control byte (a late one): the frame is skipped
    ├── FeigEndlessInventory  STATUS 0x94 (more data) past any pad's worth of tags: the reader is faulty
    └── FeigStatusError     the reader answered with a status other than OK: the reader is alive
        └── FeigTagStatus   …a status about the transponder (`TAG_STATUSES`: gone, failed on air)
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.rfid.errors import RfidTagError

__all__ = [
    "CMD_ISO_CUSTOM",
    "CMD_ISO_HOST",
    "CMD_SET_OUTPUT",
    "MIN_REPLY_LENGTH",
    "TAG_STATUSES",
    "FeigAdvancedFrame",
    "FeigCrcError",
    "FeigEndlessInventory",
    "FeigFrameError",
    "FeigLengthError",
    "FeigResponse",
    "FeigStaleReply",
    "FeigStatusError",
    "FeigTagStatus",
    "FrameReader",
    "InventoryTag",
    "SystemInfo",
    "check_ok",
    "crc16_feig",
    "encode_request",
    "has_nxp_eas",
    "parse_blocks",
    "parse_inventory",
    "parse_system_info",
    "req_eas_alarm",
    "req_inventory",
    "req_read_blocks",
    "req_set_eas",
    "req_set_output",
    "req_system_info",
    "req_write_afi",
]

CMD_ISO_HOST = 0xB0
CMD_ISO_CUSTOM = 0xB1
CMD_SET_OUTPUT = 0x72
NXP = 0x04  # IC manufacturer code (ISO/IEC 7816-6), a 15693 UID's byte after E0
ISO15693_UID_MSB = 0xE0
STATUS_OK = 0x00
STATUS_NO_TRANSPONDER = 0x01
STATUS_MORE = 0x94
STATUS_ISO_ERROR = 0x95
STX = 0x02
# Statuses about the transponder, not the reader (no transponder, data false, write error, RF
# communication error, RF warning, ISO 15693 error): a tag taken off the pad mid-read, or the air
# between them, failed; the reader itself answered and works.
TAG_STATUSES = frozenset({0x01, 0x02, 0x03, 0x83, 0x84, STATUS_ISO_ERROR})
MIN_REPLY_LENGTH = 6  # LENGTH COM-ADR CONTROL STATUS CRC16: no reply is shorter
_WHERE = "rfid feig reader"


class FeigFrameError(RfidTagError):
    """A reader frame that breaks the protocol (length, CRC, unexpected control byte, bad status)."""

    code = "rfid_reader_protocol"


class FeigLengthError(FeigFrameError):
    """A LENGTH byte below 6 cannot start a reply: line noise, a wrong baud rate, a frame's tail."""

    code = "rfid_reader_length"

    def __init__(self, *, length: int) -> None:
        super().__init__(
            _WHERE,
            f"frame length must be {MIN_REPLY_LENGTH}..255",
            str(length),
            "line noise or a wrong baud rate; the byte is skipped",
            length=length,
        )


class FeigAdvancedFrame(FeigFrameError):
    """STX 0x02 where a LENGTH byte belongs: the reader is set to the advanced protocol."""

    code = "rfid_reader_advanced_protocol"

    def __init__(self) -> None:
        super().__init__(_WHERE, "advanced protocol frame (STX)", "0x02", "set the reader to the standard protocol")


class FeigCrcError(FeigFrameError):
    """A whole frame (LENGTH bytes) whose CRC16 does not match: noise changed it on the line."""

    code = "rfid_reader_crc"

    def __init__(self, *, length: int, expected: int, got: int) -> None:
        super().__init__(
            _WHERE,
            f"CRC mismatch in a {length}-byte frame, expected 0x{expected:04X}",
            f"0x{got:04X}",
            "the frame is dropped; check the cable, its shield and the baud rate",
            length=length,
            expected=expected,
            got=got,
        )


class FeigStaleReply(FeigFrameError):
    """A sound reply whose control byte is not the request's: a reader answering a request the host gave up on."""

    code = "rfid_reader_stale_reply"

    def __init__(self, *, expected: int, got: int) -> None:
        super().__init__(
            _WHERE,
            f"reply to control 0x{expected:02X} expected",
            f"0x{got:02X}",
            "a late reply to an earlier request, skipped",
            expected=expected,
            got=got,
        )


class FeigEndlessInventory(FeigFrameError):
    """An inventory whose replies go on saying "more data" (STATUS 0x94) beyond what a pad can hold, or with
    nothing new: firmware that never ends the inventory, which would otherwise be followed for good."""

    code = "rfid_reader_endless_inventory"

    def __init__(self, where: str, *, rounds: int, uids: int, why: str) -> None:
        super().__init__(
            where,
            f'the reader keeps answering "more data" (STATUS 0x94) to the inventory, {why}',
            f"{rounds} replies with {uids} distinct tags",
            "check the reader's firmware and settings (power it off and on); "
            "the pad is opened again when it is found again",
            rounds=rounds,
            uids=uids,
        )


class FeigStatusError(FeigFrameError):
    """A reply whose STATUS is not OK: the reader refused or failed the request (and so is there)."""

    code = "rfid_reader_status"

    def __init__(self, what: str, got: str, fix: str = "", /, *, status: int) -> None:
        super().__init__(_WHERE, what, got, fix, status=status)
        self.status = status


class FeigTagStatus(FeigStatusError):
    """A STATUS about the transponder (`TAG_STATUSES`): the tag left the field or failed on air, the reader works."""

    code = "rfid_tag_status"


def crc16_feig(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def encode_request(com_adr: int, control: int, data: bytes = b"") -> bytes:
    body = bytes((len(data) + 5, com_adr, control)) + data
    crc = crc16_feig(body)
    return body + bytes((crc & 0xFF, crc >> 8))


@dataclass(frozen=True, slots=True, kw_only=True)
class FeigResponse:
    com_adr: int
    control: int
    status: int
    data: bytes


class FrameReader:
    """Bytes from the serial line in (`feed`), checked `FeigResponse`s out one at a time (`next`).

    Theory of operation. The standard protocol has no start byte: a frame is found by its first
    byte, LENGTH. Every decision below depends on the bytes alone, never on how the line's reads
    cut them, so the same stream gives the same frames and errors whatever the split:
    - LENGTH below 6 cannot start a reply: that one byte is dropped and `next` raises
      `FeigLengthError` (`FeigAdvancedFrame` for STX 0x02);
    - otherwise `next` waits for LENGTH bytes; a frame whose CRC16 fails is dropped whole and
      `next` raises `FeigCrcError`;
    - a frame is consumed before `next` returns or raises, so the call after an error goes on with
      the following byte: every good frame before a bad one has already been returned, and the
      ones after it still will be. The caller counts and logs each error and calls `next` again
      until it returns None (no whole frame buffered).
    A LENGTH byte that noise made larger than the frame leaves the reader waiting for bytes of a
    later frame; only silence on the line can tell, so the transport starts a new reader per
    request (as `SerialPad` does).
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> FeigResponse | None:
        """The next checked frame, None until a whole one is buffered; raises `FeigFrameError` for a bad one."""
        buf = self._buf
        if not buf:
            return None
        n = buf[0]
        if n < MIN_REPLY_LENGTH:
            del buf[0]
            if n == STX:
                raise FeigAdvancedFrame()
            raise FeigLengthError(length=n)
        if len(buf) < n:
            return None
        frame = bytes(buf[:n])
        del buf[:n]
        expected = crc16_feig(frame[:-2])
        got = frame[-2] | frame[-1] << 8
        if expected != got:
            raise FeigCrcError(length=n, expected=expected, got=got)
        return FeigResponse(com_adr=frame[1], control=frame[2], status=frame[3], data=frame[4:-2])

    @property
    def pending(self) -> int:
        """Bytes held for a frame not yet whole."""
        return len(self._buf)


def _uid(uid: bytes) -> bytes:
    if len(uid) != 8:
        raise ValueError(f"{_WHERE}: UID must be 8 bytes, got {len(uid)}")
    return uid


def req_inventory(com_adr: int = 255, *, more: bool = False) -> bytes:
    return encode_request(com_adr, CMD_ISO_HOST, bytes((0x01, 0x80 if more else 0x00)))


def req_read_blocks(uid: bytes, first: int, count: int, com_adr: int = 255) -> bytes:
    return encode_request(com_adr, CMD_ISO_HOST, bytes((0x23, 0x01)) + _uid(uid) + bytes((first, count)))


def req_system_info(uid: bytes, com_adr: int = 255) -> bytes:
    return encode_request(com_adr, CMD_ISO_HOST, bytes((0x2B, 0x01)) + _uid(uid))


def req_write_afi(uid: bytes, afi: int, com_adr: int = 255) -> bytes:
    return encode_request(com_adr, CMD_ISO_HOST, bytes((0x27, 0x01)) + _uid(uid) + bytes((afi,)))


def has_nxp_eas(uid: bytes) -> bool:
    """Whether `uid` (8 bytes, MSB first as the reader reports it) is an NXP tag, the only maker whose tags
    take the EAS commands: ISO 15693 has a tag ignore a custom command carrying another maker's IC code."""
    return len(uid) == 8 and uid[0] == ISO15693_UID_MSB and uid[1] == NXP


def req_set_eas(uid: bytes, on: bool, com_adr: int = 255) -> bytes:
    return encode_request(com_adr, CMD_ISO_CUSTOM, bytes((0xA2 if on else 0xA3, NXP, 0x01)) + _uid(uid))


def req_eas_alarm(uid: bytes, com_adr: int = 255) -> bytes:
    return encode_request(com_adr, CMD_ISO_CUSTOM, bytes((0xA5, NXP, 0x01)) + _uid(uid))


def req_set_output(outputs: list[tuple[int, int, int]], com_adr: int = 255) -> bytes:
    """`outputs`: (output number, state byte, time in 100 ms units) each."""
    data = bytearray((0x01, len(outputs)))
    for number, state, time_100ms in outputs:
        data += bytes((number, state, time_100ms >> 8, time_100ms & 0xFF))
    return encode_request(com_adr, CMD_SET_OUTPUT, bytes(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryTag:
    tr_type: int
    dsfid: int
    uid: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemInfo:
    dsfid: int
    uid: bytes
    afi: int
    block_count: int
    block_size: int
    ic_ref: int


def _status(resp: FeigResponse, *, allow_empty: bool = False) -> None:
    if resp.status in (STATUS_OK, STATUS_MORE):
        return
    if allow_empty and resp.status == STATUS_NO_TRANSPONDER:
        return
    error = FeigTagStatus if resp.status in TAG_STATUSES else FeigStatusError
    if resp.status == STATUS_ISO_ERROR and resp.data:
        raise error("tag answered with an ISO 15693 error", f"0x{resp.data[0]:02X}", status=resp.status)
    raise error(
        "reader status not OK", f"0x{resp.status:02X}", "see the status table in the manual", status=resp.status
    )


def parse_inventory(resp: FeigResponse) -> tuple[list[InventoryTag], bool]:
    """Tags in an inventory reply, and whether the reader holds more (STATUS 0x94)."""
    _status(resp, allow_empty=True)
    if resp.status == STATUS_NO_TRANSPONDER:
        return [], False
    data = resp.data
    if not data or len(data) != 1 + 10 * data[0]:
        raise FeigFrameError(_WHERE, "inventory reply length does not match DATA-SETS", str(len(data)))
    tags = [
        InventoryTag(tr_type=data[i], dsfid=data[i + 1], uid=bytes(data[i + 2 : i + 10]))
        for i in range(1, len(data), 10)
    ]
    return tags, resp.status == STATUS_MORE


def parse_blocks(resp: FeigResponse) -> tuple[bytes, bytes]:
    """(user memory bytes, security status per block) of a Read Multiple Blocks reply."""
    _status(resp)
    data = resp.data
    if len(data) < 2:
        raise FeigFrameError(_WHERE, "read-blocks reply too short", str(len(data)))
    count, size = data[0], data[1]
    if len(data) != 2 + count * (size + 1):
        raise FeigFrameError(_WHERE, "read-blocks reply length does not match DB-N × DB-SIZE", str(len(data)))
    memory = bytearray()
    sec = bytearray()
    for i in range(count):
        at = 2 + i * (size + 1)
        sec.append(data[at])
        memory += data[at + 1 : at + 1 + size]
    return bytes(memory), bytes(sec)


def parse_system_info(resp: FeigResponse) -> SystemInfo:
    _status(resp)
    d = resp.data
    if len(d) != 13:
        raise FeigFrameError(_WHERE, "system-information reply must be 13 bytes", str(len(d)))
    # MEM-SIZE MSB first (see the module docstring): the block size's byte, whose bits 5-7 are RFU, leads
    return SystemInfo(
        dsfid=d[0], uid=bytes(d[1:9]), afi=d[9], block_count=d[11] + 1, block_size=(d[10] & 0x1F) + 1, ic_ref=d[12]
    )


def check_ok(resp: FeigResponse) -> None:
    _status(resp)
