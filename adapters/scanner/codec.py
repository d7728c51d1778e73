"""The error tree shared by the scanner codecs: one stable code and named parameters per broken rule.

DeviceProtocolError (gateway.errors)
└── BarcodeError                 a scan or a scanner's output could not be decoded
    ├── CodabarError             NW-7 characters, start/stop, length or check character
    ├── EanError                 EAN-13 / ISBN-13 / ISBN-10 digits, length, check digit, conversion
    ├── FramingError             prefix, suffix, AIM symbology identifier, text encoding
    ├── KeymapError              keyboard-wedge key events (unknown key, autorepeat, overlong scan)
    └── VisitQrError             signed home-visit QR payload (format, key id, signature)

Messages follow `<where>: <what>, got <value>[; <fix>]`. Library cards and visit points identify
people, so messages quote the offending character, position or length, never a whole scanned id.
"""

from __future__ import annotations

from gateway.errors import DeviceProtocolError

__all__ = [
    "BarcodeError",
    "CodabarError",
    "EanError",
    "FramingError",
    "KeymapError",
    "VisitQrError",
]


class BarcodeError(DeviceProtocolError):
    """A scan broke a rule; `code` names the rule (stable: UI texts and counters key on it)."""

    code = "barcode_invalid"

    def __init__(self, code: str, message: str, /, **params: object) -> None:
        super().__init__(message, **params)
        self.code = code


class CodabarError(BarcodeError):
    code = "codabar_invalid"


class EanError(BarcodeError):
    code = "ean_invalid"


class FramingError(BarcodeError):
    code = "framing_invalid"


class KeymapError(BarcodeError):
    code = "keymap_invalid"


class VisitQrError(BarcodeError):
    code = "visit_qr_invalid"
