"""ISO 28560-3 / Danish data model basic block: decode and encode with CRC check.

Layout of the 34-byte basic block (DS/INF 163 "RFID Data Model for Libraries", ISO 28560-3
"272-bit basic block"; byte offsets as in GallusMax/libdanrfid DDMData.java):

    0      high nibble: data model version, low nibble: type of usage
    1      parts in set           2   part number (ordinal)
    3..18  primary item identifier, ASCII, NUL padded (16)
    19..20 CRC-16/IBM-3740, least significant byte first
    21..22 country of owner library (ISO 3166-1 alpha-2), NUL NUL when not set
    23..33 owner library (ISIL without the country prefix), ASCII, NUL padded (11)

Tags with only 32 bytes of user memory drop bytes 32..33 (the owner library keeps 9
characters); the CRC is still computed over bytes 0..18 and 21..33 with the missing two bytes
taken as 0x00 (libdanrfid CRC.DDCRC pads the 30 covered bytes with two NULs; golden tag
"11 01 01 31 31 32 32 …" with CRC 51 3E from libdanrfid DDMDataTest.java).

Some readers return every 4-byte block byte-reversed; `BlockOrder.AUTO` accepts either order
and reports which one matched the CRC (libdanrfid DDMData.isvalid does the same).
"""

from __future__ import annotations

import enum
from array import array
from dataclasses import dataclass

from adapters.rfid.crc import crc16_ibm3740
from adapters.rfid.errors import (
    TagBadField,
    TagBlank,
    TagCrcMismatch,
    TagLengthInvalid,
    TagTruncated,
    TagUnknownVersion,
    TagValueInvalid,
)

WHERE = "rfid danish tag"
SUPPORTED_VERSIONS = (1, 2)
SHORT_SIZE = 32
FULL_SIZE = 34
_PII_LEN = 16
_ISIL_LEN = 11
_SHORT_ISIL_LEN = 9
_ZERO32 = bytes(SHORT_SIZE)
_PRINTABLE = bytes(range(0x20, 0x7F))
_WORD = "I" if array("I").itemsize == 4 else "L"  # the C type that holds one 4-byte block


class BlockOrder(enum.Enum):
    AS_READ = "as_read"
    REVERSED = "reversed"  # each 4-byte block arrives byte-reversed
    AUTO = "auto"  # try as read, then reversed; the CRC decides


class Usage(enum.IntEnum):
    """Type-of-usage nibble (ISO 28560-1 classes; other values are kept as plain ints)."""

    ACQUISITION = 0
    CIRCULATING = 1
    NOT_CIRCULATING = 2
    LOCAL_3 = 3
    LOCAL_4 = 4
    NO_INFORMATION = 6
    DISCARDED = 7
    PATRON_CARD = 8
    LIBRARY_EQUIPMENT = 9


class TagRole(enum.Enum):
    """What a tag's type of usage makes it at a circulation desk (`tag_role`)."""

    ITEM = "item"
    NOT_FOR_LOAN = "not_for_loan"  # an item a patron must not check out, but may check in
    DISCARDED = "discarded"  # must not circulate; its security stays as it is (checked out)
    PATRON_CARD = "patron_card"  # the primary item id is the patron's card number
    NOT_AN_ITEM = "not_an_item"  # library equipment
    RESERVED = "reserved"  # a value the standard does not assign: nothing is known of the tag


# DS/INF 163 §3.2.1.2 (the Danish model ISO 28560-3 took over; libdanrfid DDMData.java names the
# same values): 0 acquisition "can not be circulated", 2 "the patron must not be able to checkout
# such items (but may do a checkin)", 7 discarded "must not be circulated", security recommended
# checked out, 8 patron card, 9 library equipment. 3 and 4 are local data the library defines and 6
# is "no information": items, as a tag without the element is. 5 and 10-15 are assigned to nothing.
_ROLES: dict[int, TagRole] = {
    Usage.ACQUISITION: TagRole.NOT_FOR_LOAN,
    Usage.CIRCULATING: TagRole.ITEM,
    Usage.NOT_CIRCULATING: TagRole.NOT_FOR_LOAN,
    Usage.LOCAL_3: TagRole.ITEM,
    Usage.LOCAL_4: TagRole.ITEM,
    Usage.NO_INFORMATION: TagRole.ITEM,
    Usage.DISCARDED: TagRole.DISCARDED,
    Usage.PATRON_CARD: TagRole.PATRON_CARD,
    Usage.LIBRARY_EQUIPMENT: TagRole.NOT_AN_ITEM,
}


def tag_role(usage: int | None) -> TagRole:
    """The role of a tag whose type of usage (main qualifier, 0-15) is `usage`; None: the tag does not say."""
    return TagRole.ITEM if usage is None else _ROLES.get(usage, TagRole.RESERVED)


@dataclass(frozen=True, kw_only=True)
class DanishTag:
    primary_item_id: str
    usage: int = Usage.CIRCULATING
    version: int = 1
    parts_in_set: int = 1
    part_number: int = 1
    country: str = ""
    isil: str = ""


@dataclass(frozen=True, kw_only=True)
class DecodedDanishTag:
    tag: DanishTag
    block_order: BlockOrder  # AS_READ or REVERSED: the order the CRC confirmed
    crc: int


def reverse_blocks(data: bytes) -> bytes:
    """Reverse the bytes of every 4-byte block (length must be a multiple of 4)."""
    words = array(_WORD, data)  # 4-byte items: byteswap reverses each block in C
    words.byteswap()
    return words.tobytes()


def _crc_of(body: bytes) -> int:
    return crc16_ibm3740(body[:19] + body[21:FULL_SIZE])


def _body(data: bytes) -> bytes:
    return data[:FULL_SIZE] if len(data) >= FULL_SIZE else data[:SHORT_SIZE] + b"\x00\x00"


def _crc_ok(body: bytes) -> tuple[bool, int, int]:
    expected = _crc_of(body)
    got = body[19] | (body[20] << 8)
    return expected == got, expected, got


def _text(raw: bytes, field: str) -> str:
    end = raw.find(0)
    value = raw if end < 0 else raw[:end]
    rejected = value.translate(None, _PRINTABLE)
    if rejected:
        # Quote only the offending byte: the whole value may be a patron card number.
        raise TagBadField(
            WHERE,
            field=field,
            what="not printable ASCII",
            got=f"byte 0x{rejected[0]:02X} at offset {value.index(rejected[0])}",
        )
    return value.decode("ascii")


def decode_danish(data: bytes, *, block_order: BlockOrder = BlockOrder.AUTO) -> DecodedDanishTag:
    """Decode a Danish data model tag from user memory read from block 0 onwards."""
    size = len(data)
    if size < SHORT_SIZE:
        raise TagTruncated(WHERE, need=SHORT_SIZE, got=size, fix="read at least 8 blocks of 4 bytes")
    if data[:SHORT_SIZE] == _ZERO32:
        raise TagBlank(WHERE, got=SHORT_SIZE)
    if block_order is BlockOrder.REVERSED and size % 4:
        raise TagLengthInvalid(
            WHERE,
            what="block reversal needs whole 4-byte blocks",
            got=size,
            fix="pass the blocks exactly as the reader returned them",
        )
    if block_order is BlockOrder.REVERSED:
        data = reverse_blocks(data)
    body = _body(data)
    ok, expected, got = _crc_ok(body)
    used = BlockOrder.REVERSED if block_order is BlockOrder.REVERSED else BlockOrder.AS_READ
    if not ok and block_order is BlockOrder.AUTO and size % 4 == 0:
        flipped = _body(reverse_blocks(data))
        if _crc_ok(flipped)[0]:
            ok, body, used = True, flipped, BlockOrder.REVERSED
    if not ok:
        raise TagCrcMismatch(
            WHERE,
            expected=expected,
            got=got,
            fix="the tag is damaged, was read incompletely, uses another data model "
            "(ISO 28560-2?) or the reader's block order differs from block_order",
        )
    version = body[0] >> 4
    if version not in SUPPORTED_VERSIONS:
        raise TagUnknownVersion(WHERE, version=version, supported=SUPPORTED_VERSIONS)
    pii = _text(body[3:19], "primary_item_id")
    if not pii:
        raise TagBadField(
            WHERE,
            field="primary_item_id",
            what="empty",
            got="16 NUL bytes",
            fix="program the item identifier onto the tag",
        )
    usage_nibble = body[0] & 0x0F
    usage: int = Usage(usage_nibble) if usage_nibble in Usage._value2member_map_ else usage_nibble
    tag = DanishTag(
        primary_item_id=pii,
        usage=usage,
        version=version,
        parts_in_set=body[1],
        part_number=body[2],
        country=_text(body[21:23], "country"),
        isil=_text(body[23:FULL_SIZE], "isil"),
    )
    return DecodedDanishTag(tag=tag, block_order=used, crc=body[19] | (body[20] << 8))


def _field(value: str, field: str, limit: int) -> bytes:
    if len(value) > limit or not value.isascii() or not value.isprintable():
        raise TagValueInvalid(
            WHERE,
            field=field,
            what=f"must be at most {limit} printable ASCII characters",
            got=f"{len(value)} characters",
        )
    return value.encode("ascii").ljust(limit, b"\x00")


def _byte(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise TagValueInvalid(WHERE, field=field, what=f"must be {low}..{high}", got=str(value))
    return value


def encode_danish(tag: DanishTag, *, size: int = SHORT_SIZE, block_order: BlockOrder = BlockOrder.AS_READ) -> bytes:
    """Encode `tag` as a basic block of `size` bytes (32 or 34), CRC included."""
    if size not in (SHORT_SIZE, FULL_SIZE):
        raise TagValueInvalid(WHERE, field="size", what="must be 32 or 34", got=str(size))
    if block_order is BlockOrder.AUTO:
        raise TagValueInvalid(WHERE, field="block_order", what="must be as_read or reversed", got="auto")
    if not tag.primary_item_id:
        raise TagValueInvalid(WHERE, field="primary_item_id", what="must not be empty", got="''")
    if tag.country and len(tag.country) != 2:
        raise TagValueInvalid(WHERE, field="country", what="must be 2 characters or empty", got=repr(tag.country))
    isil_limit = _ISIL_LEN if size == FULL_SIZE else _SHORT_ISIL_LEN
    head = bytes(
        (
            (_byte(tag.version, "version", 1, 15) << 4) | _byte(tag.usage, "usage", 0, 15),
            _byte(tag.parts_in_set, "parts_in_set", 0, 255),
            _byte(tag.part_number, "part_number", 0, 255),
        )
    ) + _field(tag.primary_item_id, "primary_item_id", _PII_LEN)
    tail = _field(tag.country, "country", 2) + _field(tag.isil, "isil", isil_limit)
    crc = crc16_ibm3740(head + tail.ljust(13, b"\x00"))
    block = head + crc.to_bytes(2, "little") + tail
    if block_order is BlockOrder.REVERSED:
        block = reverse_blocks(block.ljust(-(-len(block) // 4) * 4, b"\x00"))
    return block
