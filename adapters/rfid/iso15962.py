"""ISO 28560-2 tags: ISO/IEC 15962 no-directory data elements and their compaction schemes.

Each data element on the tag is (sources: ISO 28560-2 via the open-source Finnish "HelmetRfidTag"
parser; ISIL scheme and its worked example from GOST R ISO 28560-2-2014 Annex C.6):

    precursor   bit 7 offset flag | bits 6..4 compaction code | bits 3..0 relative OID
    [OID byte]  only when the precursor's OID bits are 1111: relative OID = 15 + byte  (verify)
    [offset]    only when the offset flag is set: number of filler bytes after the data
    length      one byte: number of compacted data bytes
    data        `length` bytes, then `offset` filler bytes

A precursor of 0x00 terminates the data. Compaction codes: 0 application-defined,
1 integer, 2 numeric, 3 5-bit, 4 6-bit, 5 7-bit, 6 octet string, 7 UTF-8.
Relative OIDs: 1 primary item identifier, 2 content parameter, 3 owner library ISIL,
4 set information, 5 type of usage, 6 shelf location, 7.. further elements kept raw.

Decoding rules where our sources are silent (marked verify in the README): numeric compaction
is packed BCD with a final 0xF pad nibble; 5/6/7-bit compaction packs characters MSB-first and
pads the last byte with 0 bits, so a trailing all-zero character that lies wholly inside the
final byte's padding is padding. The owner library ISIL under application-defined compaction
uses 28560-2's own 4/5-bit scheme with latch/shift between upper-case, lower-case and numeric
sets, padded with 1 bits ("DE-Heu1" -> 21 40 8E 16 BF 1F).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adapters.rfid.errors import (
    TagBadCompaction,
    TagBadField,
    TagBadStructure,
    TagBlank,
    TagTruncated,
    TagValueInvalid,
)

WHERE = "rfid iso28560-2 tag"


class Compaction(enum.IntEnum):
    APPLICATION_DEFINED = 0
    INTEGER = 1
    NUMERIC = 2
    FIVE_BIT = 3
    SIX_BIT = 4
    SEVEN_BIT = 5
    OCTET = 6
    UTF8 = 7


class Oid(enum.IntEnum):
    PRIMARY_ITEM_ID = 1
    CONTENT_PARAMETER = 2
    OWNER_ISIL = 3
    SET_INFORMATION = 4
    TYPE_OF_USAGE = 5
    SHELF_LOCATION = 6


_COMPACTIONS = tuple(Compaction)
_NAMES = {c: c.name.lower() for c in Compaction}
_WIDTH = {Compaction.FIVE_BIT: 5, Compaction.SIX_BIT: 6, Compaction.SEVEN_BIT: 7}
MAX_OID = 15 + 255
# Parts in set and part number: ISO 28560-3 (the Danish block) holds each in one byte; 28560-2 carries
# the same two ISO 28560-1 numbers as digits, so a tag claiming more than a byte holds is refused (verify).
MAX_SET_NUMBER = 255


@dataclass(frozen=True, kw_only=True)
class DataElement:
    oid: int
    compaction: Compaction
    payload: bytes  # the compacted bytes as stored on the tag
    filler: int | None = None  # filler bytes after the data; None when no offset byte


@dataclass(frozen=True, kw_only=True)
class SetInformation:
    parts_in_set: int
    part_number: int


@dataclass(frozen=True, kw_only=True)
class Iso28560Tag:
    primary_item_id: str
    content_parameter: tuple[int, ...] | None = None
    owner_isil: str | None = None
    set_information: SetInformation | None = None
    type_of_usage: int | None = None  # high nibble class, low nibble sub-qualifier
    shelf_location: str | None = None
    others: tuple[DataElement, ...] = ()

    @property
    def usage(self) -> int | None:
        """The type of usage's main qualifier (its high nibble), numbered as ISO 28560-3's nibble
        (`danish.Usage`); None when the tag has no type of usage element."""
        return None if self.type_of_usage is None else self.type_of_usage >> 4


# --- element structure -------------------------------------------------------------------


def decode_elements(data: bytes) -> tuple[DataElement, ...]:
    """Split tag user memory into data elements, stopping at the 0x00 terminator."""
    return tuple(
        DataElement(oid=oid, compaction=compaction, payload=payload, filler=filler)
        for oid, compaction, payload, filler in _raw_elements(data)
    )


def _raw_elements(data: bytes) -> list[tuple[int, Compaction, bytes, int | None]]:
    n = len(data)
    if n == 0:
        raise TagTruncated(WHERE, need=1, got=0)
    if data[0] == 0:
        if data.count(0) == n:
            raise TagBlank(WHERE, got=n)
        raise TagBadStructure(
            WHERE,
            what="no data elements before the terminator",
            got=f"first bytes {data[:4].hex(' ')}",
            fix="the tag may use another data model (ISO 28560-3?)",
        )
    elements: list[tuple[int, Compaction, bytes, int | None]] = []
    seen: set[int] = set()
    i = 0
    while i < n:
        pre = data[i]
        if pre == 0:
            break
        i += 1
        oid = pre & 0x0F
        if oid == 0x0F:
            if i >= n:
                raise TagTruncated(WHERE, need=i + 1, got=n)
            oid = 15 + data[i]
            i += 1
        elif oid == 0:
            raise TagBadStructure(
                WHERE, what="relative OID 0 is not defined", got=f"precursor 0x{pre:02X} at offset {i - 1}"
            )
        filler: int | None = None
        if pre & 0x80:
            if i >= n:
                raise TagTruncated(WHERE, need=i + 1, got=n)
            filler = data[i]
            i += 1
        if i >= n:
            raise TagTruncated(WHERE, need=i + 1, got=n)
        length = data[i]
        i += 1
        end = i + length
        if end > n:
            raise TagTruncated(WHERE, need=end, got=n)
        if oid in seen:
            raise TagBadStructure(WHERE, what="data element appears twice", got=f"relative OID {oid}")
        seen.add(oid)
        elements.append((oid, _COMPACTIONS[(pre >> 4) & 7], data[i:end], filler))
        i = end
        if filler:
            if i + filler > n:
                raise TagTruncated(WHERE, need=i + filler, got=n)
            i += filler
    return elements


def encode_elements(elements: Iterable[DataElement], *, terminate: bool = True) -> bytes:
    """Serialise data elements (followed by the 0x00 terminator unless `terminate` is False)."""
    out = bytearray()
    for el in elements:
        if not 1 <= el.oid <= MAX_OID:
            raise TagValueInvalid(WHERE, field="oid", what=f"must be 1..{MAX_OID}", got=str(el.oid))
        if len(el.payload) > 255:
            raise TagValueInvalid(
                WHERE,
                field=f"oid {el.oid}",
                what="compacted data must be at most 255 bytes",
                got=f"{len(el.payload)} bytes",
            )
        if el.filler is not None and not 0 <= el.filler <= 255:
            raise TagValueInvalid(WHERE, field="filler", what="must be 0..255", got=str(el.filler))
        flag = 0x80 if el.filler is not None else 0
        out.append(flag | (el.compaction << 4) | min(el.oid, 15))
        if el.oid >= 15:
            out.append(el.oid - 15)
        if el.filler is not None:
            out.append(el.filler)
        out.append(len(el.payload))
        out += el.payload
        out += bytes(el.filler or 0)
    if terminate:
        out.append(0)
    return bytes(out)


# --- compaction schemes ------------------------------------------------------------------


def _bad(compaction: Compaction, what: str, got: str) -> TagBadCompaction:
    return TagBadCompaction(WHERE, compaction=_NAMES[compaction], what=what, got=got)


def _unpack(payload: bytes, width: int) -> list[int]:
    total = len(payload) * 8
    if not total:
        return []
    mask = (1 << width) - 1
    value = int.from_bytes(payload, "big")
    codes = [(value >> (total - (k + 1) * width)) & mask for k in range(total // width)]
    fewest = (total - 8) // width + 1  # fewest characters that still need this many bytes
    while len(codes) > fewest and codes[-1] == 0:
        codes.pop()
    return codes


def _pack(codes: Sequence[int], width: int, compaction: Compaction, field: str) -> bytes:
    n = len(codes)
    size = -(-n * width // 8)
    if n and codes[-1] == 0 and n > (size * 8 - 8) // width + 1:
        raise TagValueInvalid(
            WHERE,
            field=field,
            what=f"ends in a character that {_NAMES[compaction]} compaction cannot tell from padding",
            got=f"{n} characters",
            fix="use octet compaction",
        )
    value = 0
    for code in codes:
        value = (value << width) | code
    return (value << (size * 8 - n * width)).to_bytes(size, "big")


def _text_codes(text: str, compaction: Compaction, field: str) -> list[int]:
    codes = []
    for ch in text:
        o = ord(ch)
        ok = (
            0x40 <= o <= 0x5F
            if compaction is Compaction.FIVE_BIT
            else 0x20 <= o <= 0x5F
            if compaction is Compaction.SIX_BIT
            else o < 0x80
        )
        if not ok:
            raise TagValueInvalid(
                WHERE, field=field, what=f"character not in the {_NAMES[compaction]} set", got=f"U+{o:04X}"
            )
        codes.append(o & ((1 << _WIDTH[compaction]) - 1))
    return codes


_FIVE = tuple(chr(0x40 | c) for c in range(32))
_SIX = tuple(chr(c if c >= 0x20 else 0x40 | c) for c in range(64))
_SEVEN = tuple(chr(c) for c in range(128))
_TABLES = {Compaction.FIVE_BIT: _FIVE, Compaction.SIX_BIT: _SIX, Compaction.SEVEN_BIT: _SEVEN}


def decompact_text(compaction: Compaction, payload: bytes) -> str:
    """Decode a string element compacted with any scheme except application-defined."""
    if compaction is Compaction.INTEGER:
        return str(decompact_integer(payload))
    if compaction is Compaction.NUMERIC:
        return _decode_numeric(payload)
    if compaction is Compaction.OCTET:
        return payload.decode("latin-1")
    if compaction is Compaction.UTF8:
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad(compaction, "invalid UTF-8", f"byte 0x{payload[exc.start]:02X} at offset {exc.start}") from None
    if compaction is Compaction.APPLICATION_DEFINED:
        raise _bad(compaction, "no text meaning is defined for this element", f"{len(payload)} bytes")
    table = _TABLES[compaction]
    return "".join([table[c] for c in _unpack(payload, _WIDTH[compaction])])


def decompact_integer(payload: bytes) -> int:
    if not payload:
        raise _bad(Compaction.INTEGER, "empty integer", "0 bytes")
    return int.from_bytes(payload, "big")


def _decode_numeric(payload: bytes) -> str:
    digits = payload.hex()
    if digits.endswith("f"):
        digits = digits[:-1]
    if not digits.isdigit() and digits:
        bad = next(d for d in digits if not d.isdigit())
        raise _bad(Compaction.NUMERIC, "nibble is not a decimal digit", f"0x{bad.upper()}")
    return digits


def compact_text(compaction: Compaction, text: str, *, field: str = "value") -> bytes:
    """Inverse of `decompact_text`."""
    if compaction is Compaction.INTEGER:
        if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
            raise TagValueInvalid(
                WHERE,
                field=field,
                what="integer compaction needs digits without leading zeros",
                got=f"{len(text)} characters",
                fix="use numeric compaction",
            )
        value = int(text)
        return value.to_bytes(max(1, -(-value.bit_length() // 8)), "big")
    if compaction is Compaction.NUMERIC:
        if text and not (text.isdigit() and text.isascii()):
            raise TagValueInvalid(
                WHERE, field=field, what="numeric compaction needs digits", got=f"{len(text)} characters"
            )
        return bytes.fromhex(text + "f" * (len(text) % 2))
    if compaction is Compaction.OCTET:
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            raise TagValueInvalid(
                WHERE,
                field=field,
                what="not ISO 8859-1 text",
                got=f"{len(text)} characters",
                fix="use UTF-8 compaction",
            ) from None
    if compaction is Compaction.UTF8:
        return text.encode("utf-8")
    if compaction is Compaction.APPLICATION_DEFINED:
        raise TagValueInvalid(
            WHERE, field=field, what="application-defined compaction has no text form", got="application_defined"
        )
    return _pack(_text_codes(text, compaction, field), _WIDTH[compaction], compaction, field)


# --- the ISIL scheme of ISO 28560-2 (owner library under application-defined compaction) ---

_UPPER, _LOWER, _DIGIT = 0, 1, 2
_SETS = ("-ABCDEFGHIJKLMNOPQRSTUVWXYZ:", "-abcdefghijklmnopqrstuvwxyz/", "0123456789-:")
_SET_WIDTH = (5, 5, 4)
# (latch, shift) code to reach set `target` from set `source`
_SWITCH = {
    (_UPPER, _LOWER): (28, 29),
    (_UPPER, _DIGIT): (30, 31),
    (_LOWER, _UPPER): (28, 29),
    (_LOWER, _DIGIT): (30, 31),
    (_DIGIT, _UPPER): (12, 13),
    (_DIGIT, _LOWER): (14, 15),
}
_CONTROL = {
    (src, code): (dst, code == shift) for (src, dst), (latch, shift) in _SWITCH.items() for code in (latch, shift)
}


def decode_isil(payload: bytes) -> str:
    total = len(payload) * 8
    value = int.from_bytes(payload, "big")
    out: list[str] = []
    latched = active = _UPPER
    pos = end_of_text = 0
    while True:
        width = _SET_WIDTH[active]
        if pos + width > total:
            break
        code = (value >> (total - pos - width)) & ((1 << width) - 1)
        pos += width
        chars = _SETS[active]
        if code < len(chars):
            out.append(chars[code])
            end_of_text = pos
            active = latched
            continue
        target, is_shift = _CONTROL[(active, code)]
        if is_shift:
            active = target
        else:
            latched = active = target
    pad = total - end_of_text
    if pad >= 8 or (value & ((1 << pad) - 1)) != (1 << pad) - 1:
        raise _bad(
            Compaction.APPLICATION_DEFINED,
            "ISIL padding must be fewer than 8 one bits",
            f"{pad} trailing bits 0b{value & ((1 << pad) - 1):0{max(pad, 1)}b}",
        )
    return "".join(out)


def _set_of(ch: str, field: str) -> int:
    for index in (_UPPER, _LOWER, _DIGIT):
        if ch in _SETS[index]:
            return index
    raise TagValueInvalid(WHERE, field=field, what="character not allowed in an ISIL", got=repr(ch))


def encode_isil(text: str, *, field: str = "owner_isil") -> bytes:
    bits: list[tuple[int, int]] = []  # (code, width)
    mode = _UPPER
    for index, ch in enumerate(text):
        if ch in _SETS[mode]:
            bits.append((_SETS[mode].index(ch), _SET_WIDTH[mode]))
            continue
        target = _set_of(ch, field)
        latch, shift = _SWITCH[(mode, target)]
        following = text[index + 1 : index + 2]
        stay = bool(following) and following in _SETS[target] and following not in _SETS[mode]
        bits.append((latch if stay else shift, _SET_WIDTH[mode]))
        bits.append((_SETS[target].index(ch), _SET_WIDTH[target]))
        if stay:
            mode = target
    value = length = 0
    for code, width in bits:
        value = (value << width) | code
        length += width
    pad = -length % 8
    value = (value << pad) | ((1 << pad) - 1)
    return value.to_bytes((length + pad) // 8, "big")


# --- element meanings --------------------------------------------------------------------


def _content_parameter(compaction: Compaction, payload: bytes) -> tuple[int, ...]:
    if compaction is not Compaction.APPLICATION_DEFINED:
        raise TagBadField(
            WHERE, field="content_parameter", what="must use application-defined compaction", got=_NAMES[compaction]
        )
    value = int.from_bytes(payload, "big")
    width = len(payload) * 8
    return tuple(3 + k for k in range(width) if value >> (width - 1 - k) & 1)


def content_parameter_payload(oids: Iterable[int]) -> bytes:
    """Bit map announcing which relative OIDs (3 and up) are on the tag: MSB first = OID 3."""
    wanted = sorted(set(oids))
    if any(oid < 3 for oid in wanted):
        raise TagValueInvalid(WHERE, field="content_parameter", what="OIDs must be 3 or more", got=str(wanted[0]))
    size = max(1, -(-(wanted[-1] - 2) // 8)) if wanted else 1
    value = 0
    for oid in wanted:
        value |= 1 << (size * 8 - 1 - (oid - 3))
    return value.to_bytes(size, "big")


def _set_information(compaction: Compaction, payload: bytes) -> SetInformation:
    text = decompact_text(compaction, payload)
    if compaction is Compaction.INTEGER and len(text) % 2:
        text = "0" + text  # integer compaction drops the leading zero of "0102"
    if not text or len(text) % 2 or not text.isdigit() or not text.isascii():
        raise TagBadField(
            WHERE,
            field="set_information",
            what="must be an even number of digits (parts in set, part number)",
            got=repr(text),
        )
    half = len(text) // 2
    parts, part = int(text[:half]), int(text[half:])
    for name, value in (("parts in set", parts), ("part number", part)):
        if not 0 <= value <= MAX_SET_NUMBER:
            # a number no station or broker can take (past ±2^53 for a JSON double): refused here,
            # before a station lends or returns the item on it
            shown = str(value) if value < 10**6 else f"{len(str(value))} digits"
            raise TagBadField(
                WHERE,
                field="set_information",
                what=f"{name} must be 0..{MAX_SET_NUMBER} (one byte, as in ISO 28560-3)",
                got=shown,
                fix="the tag was programmed wrong: write its set information again",
            )
    return SetInformation(parts_in_set=parts, part_number=part)


def set_information_text(info: SetInformation) -> str:
    for name, value in (("parts in set", info.parts_in_set), ("part number", info.part_number)):
        if not 0 <= value <= MAX_SET_NUMBER:
            raise TagValueInvalid(
                WHERE, field="set_information", what=f"{name} must be 0..{MAX_SET_NUMBER}", got=str(value)
            )
    width = max(2, len(str(info.parts_in_set)), len(str(info.part_number)))
    return f"{info.parts_in_set:0{width}d}{info.part_number:0{width}d}"


def _type_of_usage(compaction: Compaction, payload: bytes) -> int:
    if compaction is Compaction.APPLICATION_DEFINED and len(payload) == 1:
        return payload[0]
    if compaction is Compaction.INTEGER and payload and int.from_bytes(payload, "big") <= 0xFF:
        return int.from_bytes(payload, "big")
    raise TagBadField(
        WHERE,
        field="type_of_usage",
        what="must be one byte, application-defined or integer compaction",
        got=f"{_NAMES[compaction]}, {len(payload)} bytes",
    )


def decode_iso28560_2(data: bytes) -> Iso28560Tag:
    """Decode an ISO 28560-2 tag's user memory into the library data elements."""
    pii: str | None = None
    content: tuple[int, ...] | None = None
    isil: str | None = None
    set_info: SetInformation | None = None
    usage: int | None = None
    shelf: str | None = None
    others: list[DataElement] = []
    for oid, compaction, payload, filler in _raw_elements(data):
        if oid == 1:
            pii = decompact_text(compaction, payload)
        elif oid == 2:
            content = _content_parameter(compaction, payload)
        elif oid == 3:
            isil = (
                decode_isil(payload)
                if compaction is Compaction.APPLICATION_DEFINED
                else decompact_text(compaction, payload)
            )
        elif oid == 4:
            set_info = _set_information(compaction, payload)
        elif oid == 5:
            usage = _type_of_usage(compaction, payload)
        elif oid == 6:
            shelf = decompact_text(compaction, payload)
        else:
            others.append(DataElement(oid=oid, compaction=compaction, payload=payload, filler=filler))
    if not pii:
        raise TagBadStructure(
            WHERE,
            what="no primary item identifier (relative OID 1)",
            got="empty" if pii == "" else "absent",
            fix="the tag is not programmed for library use",
        )
    return Iso28560Tag(
        primary_item_id=pii,
        content_parameter=content,
        owner_isil=isil,
        set_information=set_info,
        type_of_usage=usage,
        shelf_location=shelf,
        others=tuple(others),
    )
