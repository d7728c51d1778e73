"""ISO 28560-3 / Danish data model: golden tag, CRC, block order, errors, properties."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.rfid import (
    BlockOrder,
    DanishTag,
    RfidTagError,
    TagBadField,
    TagBlank,
    TagCrcMismatch,
    TagLengthInvalid,
    TagTruncated,
    TagUnknownVersion,
    TagValueInvalid,
    Usage,
    decode_danish,
    encode_danish,
)
from adapters.rfid.crc import crc16_ibm3740
from adapters.rfid.danish import reverse_blocks

# GallusMax/libdanrfid DDMDataTest.java / CRCTest.java: 32-byte tag, barcode "11223344",
# country "DE", library "705", CRC 0x3E51 stored LSB first at bytes 19..20.
GOLDEN = bytes.fromhex("11010131313232333334340000000000000000513e4445373035000000000000")


def test_golden_tag_decodes() -> None:
    decoded = decode_danish(GOLDEN)
    assert decoded.tag == DanishTag(
        primary_item_id="11223344",
        usage=Usage.CIRCULATING,
        version=1,
        parts_in_set=1,
        part_number=1,
        country="DE",
        isil="705",
    )
    assert decoded.crc == 0x3E51
    assert decoded.block_order is BlockOrder.AS_READ


def test_golden_tag_encodes_byte_for_byte() -> None:
    assert encode_danish(decode_danish(GOLDEN).tag) == GOLDEN


def test_crc_covers_two_implicit_nul_bytes_on_32_byte_tags() -> None:
    covered = GOLDEN[:19] + GOLDEN[21:]
    assert crc16_ibm3740(covered + b"\x00\x00") == 0x3E51
    assert crc16_ibm3740(covered) != 0x3E51


def test_full_34_byte_block_keeps_11_character_isil() -> None:
    tag = DanishTag(primary_item_id="A1", country="JP", isil="1234567890A", usage=Usage.ACQUISITION)
    raw = encode_danish(tag, size=34)
    assert len(raw) == 34
    assert decode_danish(raw).tag == tag
    assert decode_danish(raw + b"\xff" * 6).tag == tag  # trailing extension blocks ignored


def test_reversed_blocks_autodetected_and_explicit() -> None:
    flipped = reverse_blocks(GOLDEN)
    assert flipped[:4] == bytes.fromhex("31010111")
    auto = decode_danish(flipped)
    assert auto.block_order is BlockOrder.REVERSED
    assert auto.tag.primary_item_id == "11223344"
    assert decode_danish(flipped, block_order=BlockOrder.REVERSED).tag == auto.tag
    with pytest.raises(TagCrcMismatch):
        decode_danish(flipped, block_order=BlockOrder.AS_READ)


def test_reversed_encoding_of_34_bytes_pads_to_whole_blocks() -> None:
    tag = DanishTag(primary_item_id="X", isil="ABCDEFGHIJK")
    raw = encode_danish(tag, size=34, block_order=BlockOrder.REVERSED)
    assert len(raw) == 36
    assert decode_danish(raw, block_order=BlockOrder.REVERSED).tag == tag


def test_unknown_usage_nibble_kept_as_int() -> None:
    tag = DanishTag(primary_item_id="7", usage=5, version=2)
    decoded = decode_danish(encode_danish(tag)).tag
    assert decoded.usage == 5 and not isinstance(decoded.usage, Usage)
    assert decoded.version == 2


def _with_crc(block: bytearray) -> bytes:
    crc = crc16_ibm3740(bytes(block[:19] + block[21:]) + b"\x00\x00")
    block[19:21] = crc.to_bytes(2, "little")
    return bytes(block)


def test_bad_crc_message() -> None:
    broken = bytearray(GOLDEN)
    broken[5] ^= 0x01
    with pytest.raises(TagCrcMismatch) as info:
        decode_danish(bytes(broken), block_order=BlockOrder.AS_READ)
    assert str(info.value) == (
        "rfid danish tag: CRC mismatch, expected 0x2B37, got 0x3E51; the tag is damaged, was "
        "read incompletely, uses another data model (ISO 28560-2?) or the reader's block order "
        "differs from block_order"
    )
    assert info.value.params == {"where": "rfid danish tag", "expected": 0x2B37, "got": 0x3E51}
    with pytest.raises(TagCrcMismatch):  # AUTO tries both orders before giving up
        decode_danish(bytes(broken))


def test_unknown_version() -> None:
    block = bytearray(GOLDEN)
    block[0] = 0x31
    with pytest.raises(TagUnknownVersion) as info:
        decode_danish(_with_crc(block))
    assert str(info.value) == (
        "rfid danish tag: unknown data model version (supported: 1, 2), got 3; "
        "check the tag format configured for this reader"
    )
    assert info.value.code == "rfid_unknown_version"


def test_truncated_blank_and_length_errors() -> None:
    with pytest.raises(TagTruncated) as info:
        decode_danish(GOLDEN[:20])
    assert str(info.value) == (
        "rfid danish tag: tag data truncated, need 32 bytes, got 20 bytes; read at least 8 blocks of 4 bytes"
    )
    with pytest.raises(TagBlank) as blank:
        decode_danish(bytes(32))
    assert str(blank.value) == (
        "rfid danish tag: blank tag (no data written), got 32 zero bytes; program the tag before issuing the item"
    )
    with pytest.raises(TagLengthInvalid) as length:
        decode_danish(GOLDEN + b"\x00", block_order=BlockOrder.REVERSED)
    assert str(length.value) == (
        "rfid danish tag: block reversal needs whole 4-byte blocks, got 33 bytes; "
        "pass the blocks exactly as the reader returned them"
    )
    # AUTO with a length that is not whole blocks still reads the as-read order.
    assert decode_danish(GOLDEN + b"\x00").tag.primary_item_id == "11223344"
    with pytest.raises(TagCrcMismatch):
        decode_danish(reverse_blocks(GOLDEN) + b"\x00")


def test_bad_field_bytes_are_quoted_not_the_whole_value() -> None:
    block = bytearray(GOLDEN)
    block[6] = 0x07
    with pytest.raises(TagBadField) as info:
        decode_danish(_with_crc(block))
    assert str(info.value) == ("rfid danish tag primary_item_id: not printable ASCII, got byte 0x07 at offset 3")
    empty = bytearray(GOLDEN)
    empty[3:19] = bytes(16)
    with pytest.raises(TagBadField) as info:
        decode_danish(_with_crc(empty))
    assert str(info.value) == (
        "rfid danish tag primary_item_id: empty, got 16 NUL bytes; program the item identifier onto the tag"
    )


@pytest.mark.parametrize(
    ("kwargs", "tag", "message"),
    [
        ({"size": 33}, DanishTag(primary_item_id="1"), "rfid danish tag size: must be 32 or 34, got 33"),
        (
            {"block_order": BlockOrder.AUTO},
            DanishTag(primary_item_id="1"),
            "rfid danish tag block_order: must be as_read or reversed, got auto",
        ),
        ({}, DanishTag(primary_item_id=""), "rfid danish tag primary_item_id: must not be empty, got ''"),
        (
            {},
            DanishTag(primary_item_id="1", country="JPN"),
            "rfid danish tag country: must be 2 characters or empty, got 'JPN'",
        ),
        (
            {},
            DanishTag(primary_item_id="1", isil="1234567890"),
            "rfid danish tag isil: must be at most 9 printable ASCII characters, got 10 characters",
        ),
        (
            {},
            DanishTag(primary_item_id="図書"),
            "rfid danish tag primary_item_id: must be at most 16 printable ASCII characters, got 2 characters",
        ),
        ({}, DanishTag(primary_item_id="1", usage=16), "rfid danish tag usage: must be 0..15, got 16"),
        ({}, DanishTag(primary_item_id="1", version=0), "rfid danish tag version: must be 1..15, got 0"),
    ],
)
def test_encode_rejects_values(kwargs: dict[str, object], tag: DanishTag, message: str) -> None:
    with pytest.raises(TagValueInvalid) as info:
        encode_danish(tag, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16)
tags = st.builds(
    DanishTag,
    primary_item_id=printable.filter(bool),
    usage=st.integers(0, 15),
    version=st.sampled_from([1, 2]),
    parts_in_set=st.integers(0, 255),
    part_number=st.integers(0, 255),
    country=st.one_of(st.just(""), st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=2, max_size=2)),
    isil=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=9),
)


@settings(max_examples=200)
@given(tags, st.sampled_from([32, 34]), st.sampled_from([BlockOrder.AS_READ, BlockOrder.REVERSED]))
def test_round_trip(tag: DanishTag, size: int, order: BlockOrder) -> None:
    raw = encode_danish(tag, size=size, block_order=order)
    assert decode_danish(raw, block_order=order).tag == tag
    auto = decode_danish(raw)
    assert auto.tag == tag


@settings(max_examples=300)
@given(tags, st.data())
def test_single_bit_flip_always_detected(tag: DanishTag, data: st.DataObject) -> None:
    raw = bytearray(encode_danish(tag))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(TagCrcMismatch):
        decode_danish(bytes(raw), block_order=BlockOrder.AS_READ)


@settings(max_examples=300)
@given(st.binary(max_size=40), st.sampled_from(list(BlockOrder)))
def test_arbitrary_bytes_only_typed_errors(data: bytes, order: BlockOrder) -> None:
    with contextlib.suppress(RfidTagError):
        decode_danish(data, block_order=order)
