"""CRC-16 variants used by library RFID: the Danish data model's and ISO/IEC 15693's frame CRC.

Both are the 0x1021 polynomial with init 0xFFFF (reveng catalogue names in brackets):

* Danish data model / ISO 28560-3 [CRC-16/IBM-3740, a.k.a. CCITT-FALSE]: MSB-first, no final
  XOR, check("123456789") = 0x29B1; the reference string "RFID tag data model" gives 0x1AEE
  (GallusMax/libdanrfid CRC.java and CRCTest.java). Stored on the tag least significant byte first.
* ISO/IEC 15693 air-interface CRC [CRC-16/IBM-SDLC, alias X-25, CRC-16/ISO-IEC-14443-3-B]:
  reflected (0x8408), final XOR 0xFFFF, check = 0x906E, appended LSB first; a frame including
  its CRC leaves the residue 0xF0B8.

`binascii.crc_hqx` is the MSB-first 0x1021 CRC in C; the reflected variant is obtained by
bit-reversing every input byte and the 16-bit result (init 0xFFFF is its own reflection), which
keeps both well above the 100,000 tags/s budget without a Python byte loop.
"""

from __future__ import annotations

import binascii

from adapters.rfid.errors import TagCrcMismatch, TagTruncated

_REVERSE_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _reverse16(value: int) -> int:
    return (_REVERSE_BITS[value & 0xFF] << 8) | _REVERSE_BITS[value >> 8]


def crc16_ibm3740(data: bytes, init: int = 0xFFFF) -> int:
    """CRC-16/IBM-3740 (CCITT-FALSE) of `data`, as used by the Danish data model."""
    return binascii.crc_hqx(data, init)


def crc16_iso15693(data: bytes) -> int:
    """CRC-16/IBM-SDLC of `data`, as appended to every ISO/IEC 15693 request and response."""
    return _reverse16(binascii.crc_hqx(data.translate(_REVERSE_BITS), 0xFFFF)) ^ 0xFFFF


def append_iso15693_crc(payload: bytes) -> bytes:
    """`payload` followed by its ISO/IEC 15693 CRC, least significant byte first."""
    return payload + crc16_iso15693(payload).to_bytes(2, "little")


def check_iso15693_frame(frame: bytes) -> bytes:
    """Verify an ISO/IEC 15693 frame's trailing CRC and return the payload without it."""
    if len(frame) < 3:
        raise TagTruncated(
            "iso15693 frame", need=3, got=len(frame), fix="a frame is at least one byte plus the 2-byte CRC"
        )
    payload = frame[:-2]
    expected = crc16_iso15693(payload)
    got = frame[-2] | (frame[-1] << 8)
    if expected != got:
        raise TagCrcMismatch(
            "iso15693 frame", expected=expected, got=got, fix="the frame was corrupted on the air interface; read again"
        )
    return payload
