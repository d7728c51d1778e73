"""Typed errors for library RFID tag codecs: each names what was wrong with the tag data."""

from __future__ import annotations

from gateway.errors import DeviceProtocolError


def _message(where: str, what: str, got: str, fix: str) -> str:
    text = f"{where}: {what}, got {got}"
    return f"{text}; {fix}" if fix else text


class RfidTagError(DeviceProtocolError):
    """Root of every error a tag codec raises; `where` names the codec and field."""

    code = "rfid_tag_invalid"

    def __init__(self, where: str, what: str, got: str, fix: str = "", /, **params: object) -> None:
        super().__init__(_message(where, what, got, fix), where=where, **params)


class TagTruncated(RfidTagError):
    code = "rfid_truncated"

    def __init__(self, where: str, *, need: int, got: int, fix: str = "") -> None:
        super().__init__(
            where,
            f"tag data truncated, need {need} bytes",
            f"{got} bytes",
            fix or "read more blocks from the tag",
            need=need,
            got=got,
        )


class TagLengthInvalid(RfidTagError):
    code = "rfid_bad_length"

    def __init__(self, where: str, *, what: str, got: int, fix: str = "") -> None:
        super().__init__(where, what, f"{got} bytes", fix, length=got)


class TagBlank(RfidTagError):
    code = "rfid_blank_tag"

    def __init__(self, where: str, *, got: int) -> None:
        super().__init__(
            where,
            "blank tag (no data written)",
            f"{got} zero bytes",
            "program the tag before issuing the item",
            length=got,
        )


class TagCrcMismatch(RfidTagError):
    code = "rfid_crc_mismatch"

    def __init__(self, where: str, *, expected: int, got: int, fix: str = "") -> None:
        super().__init__(
            where,
            f"CRC mismatch, expected 0x{expected:04X}",
            f"0x{got:04X}",
            fix,
            expected=expected,
            got=got,
        )


class TagUnknownVersion(RfidTagError):
    code = "rfid_unknown_version"

    def __init__(self, where: str, *, version: int, supported: tuple[int, ...]) -> None:
        names = ", ".join(str(v) for v in supported)
        super().__init__(
            where,
            f"unknown data model version (supported: {names})",
            str(version),
            "check the tag format configured for this reader",
            version=version,
        )


class TagBadField(RfidTagError):
    code = "rfid_bad_field"

    def __init__(self, where: str, *, field: str, what: str, got: str, fix: str = "") -> None:
        super().__init__(f"{where} {field}", what, got, fix, field=field, value=got)


class TagBadCompaction(RfidTagError):
    code = "rfid_bad_compaction"

    def __init__(self, where: str, *, compaction: str, what: str, got: str) -> None:
        super().__init__(f"{where} ({compaction} compaction)", what, got, "", compaction=compaction, value=got)


class TagBadStructure(RfidTagError):
    code = "rfid_bad_structure"

    def __init__(self, where: str, *, what: str, got: str, fix: str = "") -> None:
        super().__init__(where, what, got, fix, value=got)


class TagValueInvalid(RfidTagError):
    """Raised by encoders: the value cannot be written in the requested format."""

    code = "rfid_value_invalid"

    def __init__(self, where: str, *, field: str, what: str, got: str, fix: str = "") -> None:
        super().__init__(f"{where} {field}", what, got, fix, field=field, value=got)
