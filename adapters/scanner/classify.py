"""What a scan is: patron card, item barcode, ISBN, price row, visit QR, unknown or bad check digit.

Sans-I/O. The AIM symbology id decides where the scanner sends one (`]F` Codabar, `]E` EAN, `]Q`
QR); otherwise the text's shape does: `VQ` + digit is a visit QR, 13 digits are EAN/ISBN (a `192`
or `191` row is the price row, never an item), the rest is NW-7 tried against the station's rules
in order. A rule whose pattern matches but whose check character fails gives `BAD_CHECK` (flagged,
never dropped); text no rule matches is `UNKNOWN`. Results never quote a whole id in their
`detail`, which may reach logs and the station page.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from adapters.scanner.aim import Framed, Symbology
from adapters.scanner.codabar import CodabarConfig, decode_codabar
from adapters.scanner.codec import BarcodeError
from adapters.scanner.ean import BookId, Gtin13, PriceRow, classify_book_scan
from adapters.scanner.visit_qr import verify_visit_qr

__all__ = ["CodabarRule", "IdKind", "ScanClass", "ScanKind", "classify"]


class IdKind(enum.Enum):
    PATRON = "patron"
    ITEM = "item"
    SHELF = "shelf"  # inventory: a shelf label starts that shelf's session


class ScanKind(enum.Enum):
    PATRON = "patron"
    ITEM = "item"
    SHELF = "shelf"
    ISBN = "isbn"
    PRICE_ROW = "price_row"
    GTIN = "gtin"
    VISIT = "visit"
    VISIT_REFUSED = "visit_refused"
    UNKNOWN = "unknown"
    BAD_CHECK = "bad_check"


@dataclass(frozen=True, slots=True, kw_only=True)
class CodabarRule:
    """NW-7 labels of one kind: `pattern` (a full match on the scanned text) picks the rule, `codabar` decodes."""

    kind: IdKind
    pattern: str
    codabar: CodabarConfig

    def __post_init__(self) -> None:
        re.compile(self.pattern)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanClass:
    """The classified scan: `value` is the normalised id (patron, item, ISBN-13, visit point) or None."""

    kind: ScanKind
    value: str | None = None
    id_kind: IdKind | None = None  # for BAD_CHECK: which kind of label failed
    code: str = ""  # the codec's error code for BAD_CHECK / UNKNOWN / VISIT_REFUSED
    key_id: str = ""  # visit QR key id


_EAN = re.compile(r"\d{13}")
_ISBN10 = re.compile(r"\d{9}[\dXx]")
_VISIT = re.compile(r"VQ\d")


def classify(
    framed: Framed,
    rules: Sequence[CodabarRule],
    visit_keys: Mapping[str, bytes],
    *,
    accept_isbn10: bool = False,
) -> ScanClass:
    sym = framed.aim.symbology if framed.aim is not None else None
    text = framed.data
    if sym is Symbology.QR_CODE or (sym is None and _VISIT.match(text)):
        return _visit(text, visit_keys)
    if sym is Symbology.EAN_UPC or (sym is None and _EAN.fullmatch(text)):
        return _ean(text)
    if accept_isbn10 and sym is None and _ISBN10.fullmatch(text):
        return _ean(text)
    if sym not in (None, Symbology.CODABAR):
        return ScanClass(kind=ScanKind.UNKNOWN, code="symbology_not_used")
    for rule in rules:
        if not re.fullmatch(rule.pattern, text):
            continue
        try:
            scan = decode_codabar(text, rule.codabar)
        except BarcodeError as exc:
            if exc.code in ("codabar_check_mismatch", "codabar_no_check_digit"):
                return ScanClass(kind=ScanKind.BAD_CHECK, id_kind=rule.kind, code=exc.code)
            return ScanClass(kind=ScanKind.UNKNOWN, id_kind=rule.kind, code=exc.code)
        return ScanClass(kind=ScanKind(rule.kind.value), value=scan.value, id_kind=rule.kind)
    return ScanClass(kind=ScanKind.UNKNOWN, code="no_rule_matches")


def _visit(text: str, keys: Mapping[str, bytes]) -> ScanClass:
    try:
        point = verify_visit_qr(text, keys)
    except BarcodeError as exc:
        return ScanClass(kind=ScanKind.VISIT_REFUSED, code=exc.code)
    return ScanClass(kind=ScanKind.VISIT, value=point.point_id, key_id=point.key_id)


def _ean(text: str) -> ScanClass:
    try:
        result = classify_book_scan(text)
    except BarcodeError as exc:
        if exc.code in ("ean_check_digit", "isbn_check_digit"):
            return ScanClass(kind=ScanKind.BAD_CHECK, id_kind=IdKind.ITEM, code=exc.code)
        return ScanClass(kind=ScanKind.UNKNOWN, code=exc.code)
    if isinstance(result, BookId):
        return ScanClass(kind=ScanKind.ISBN, value=result.isbn13, id_kind=IdKind.ITEM)
    if isinstance(result, PriceRow):
        return ScanClass(kind=ScanKind.PRICE_ROW)
    assert isinstance(result, Gtin13)
    return ScanClass(kind=ScanKind.GTIN, value=result.gtin)
