"""CRC-16 variants: catalogue check values, public golden frames and a bitwise reference."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.rfid import (
    TagCrcMismatch,
    TagTruncated,
    append_iso15693_crc,
    check_iso15693_frame,
    crc16_ibm3740,
    crc16_iso15693,
)


def reference_x25(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def reference_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def test_catalogue_check_values() -> None:
    # reveng CRC catalogue: CRC-16/IBM-SDLC check 0x906E; CRC-16/IBM-3740 check 0x29B1.
    assert crc16_iso15693(b"123456789") == 0x906E
    assert crc16_ibm3740(b"123456789") == 0x29B1
    # Danish data model reference string (GallusMax/libdanrfid CRCTest.java).
    assert crc16_ibm3740(b"RFID tag data model") == 0x1AEE


# ISO 15693 requests as sent through a PN532Killer (public protocol notes, "Read UID" and
# "Read single block" examples): inventory 26 01 00 + CRC F6 0A; read block with UID + CRC 06 90.
GOLDEN_15693 = [
    ("260100", "f60a"),
    ("222091c602b9500104e008", "0690"),
]


@pytest.mark.parametrize(("payload", "crc"), GOLDEN_15693)
def test_iso15693_golden_frames(payload: str, crc: str) -> None:
    frame = bytes.fromhex(payload + crc)
    assert append_iso15693_crc(bytes.fromhex(payload)) == frame
    assert check_iso15693_frame(frame) == bytes.fromhex(payload)


def test_iso15693_residue_is_constant() -> None:
    frame = append_iso15693_crc(b"\x26\x01\x00")
    assert reference_x25(frame) ^ 0xFFFF == 0xF0B8


def test_iso15693_bad_crc_names_expected_and_got() -> None:
    with pytest.raises(TagCrcMismatch) as info:
        check_iso15693_frame(bytes.fromhex("260100f60b"))
    assert str(info.value) == (
        "iso15693 frame: CRC mismatch, expected 0x0AF6, got 0x0BF6; "
        "the frame was corrupted on the air interface; read again"
    )
    assert info.value.code == "rfid_crc_mismatch"
    assert info.value.params["expected"] == 0x0AF6


def test_iso15693_frame_too_short() -> None:
    with pytest.raises(TagTruncated) as info:
        check_iso15693_frame(b"\x01\x02")
    assert str(info.value) == (
        "iso15693 frame: tag data truncated, need 3 bytes, got 2 bytes; "
        "a frame is at least one byte plus the 2-byte CRC"
    )


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_crcs_match_bitwise_reference(data: bytes) -> None:
    assert crc16_iso15693(data) == reference_x25(data)
    assert crc16_ibm3740(data) == reference_ccitt_false(data)


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=40), st.data())
def test_iso15693_single_bit_flip_detected(payload: bytes, data: st.DataObject) -> None:
    frame = bytearray(append_iso15693_crc(payload))
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(TagCrcMismatch):
        check_iso15693_frame(bytes(frame))


@settings(max_examples=200)
@given(st.binary(max_size=40))
def test_iso15693_arbitrary_bytes_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(TagCrcMismatch, TagTruncated):
        check_iso15693_frame(data)
