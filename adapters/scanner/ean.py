"""EAN-13/JAN, ISBN-13 and ISBN-10: check digits, 10<->13 conversion, and the book's price row."""

from __future__ import annotations

from dataclasses import dataclass
from operator import mul

from .codec import EanError

__all__ = [
    "BookId",
    "Gtin13",
    "PriceRow",
    "classify_book_scan",
    "ean13_check_digit",
    "isbn10_check_digit",
    "isbn10_to_13",
    "isbn13_to_10",
    "verify_ean13",
    "verify_isbn10",
]

_DIGITS = frozenset("0123456789")
_ISBN10_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
# The second row of a Japanese book's two-row barcode (書籍JANコード 2段目) starts with one of these:
# 192 = price without consumption tax (labels since 1997), 191 = price with 3 % tax (1991-1997).
_PRICE_FLAGS = {"191": True, "192": False}


@dataclass(frozen=True, kw_only=True, slots=True)
class BookId:
    """An item id: the ISBN (upper row of a book's barcode, or a typed ISBN-10)."""

    isbn13: str
    isbn10: str | None  # None for 979 ISBNs, which have no ISBN-10 form


@dataclass(frozen=True, kw_only=True, slots=True)
class PriceRow:
    """The lower row of a Japanese book barcode: classification and price, never an item id."""

    flag: str  # "192" or "191"
    c_code: str  # 4 digits of the Japanese classification code (Cコード), e.g. "0193"
    price_yen: int | None  # None when the row carries 00000 (price of 100,000 yen or more)
    tax_included: bool  # True for 191 rows (3 % tax-inclusive prices)


@dataclass(frozen=True, kw_only=True, slots=True)
class Gtin13:
    """Any other EAN-13/JAN article number."""

    gtin: str


def _fail(code: str, what: str, value: object, fix: str = "", /, **params: object) -> EanError:
    tail = f"; {fix}" if fix else ""
    return EanError(code, f"ean: {what}, got {value}{tail}", **params)


def _digits(text: str, length: int, what: str) -> None:
    if len(text) != length or not _DIGITS.issuperset(text):
        raise _fail(
            "ean_format",
            f"{what} must be {length} digits",
            repr(text[:20]),
            length=len(text),
        )


def ean13_check_digit(body: str) -> str:
    """The EAN-13 check digit of 12 digits (weights 1,3,1,3,... from the left)."""
    _digits(body, 12, "EAN-13 body")
    raw = body.encode("ascii")
    # Summing ASCII codes and removing the 48 ("0") each carries is the fast path in CPython.
    total = sum(raw[0::2]) + 3 * sum(raw[1::2]) - 48 * (6 + 3 * 6)
    return str(-total % 10)


def verify_ean13(text: str) -> str:
    """`text` if it is 13 digits with a correct check digit."""
    _digits(text, 13, "EAN-13")
    expected = ean13_check_digit(text[:12])
    if text[12] != expected:
        raise _fail(
            "ean_check_digit",
            "EAN-13 check digit does not match",
            repr(text[12]),
            "a misread; scan again",
            got=text[12],
        )
    return text


def isbn10_check_digit(body: str) -> str:
    """The ISBN-10 check character of 9 digits (weights 10..2, modulus 11, 10 written X)."""
    _digits(body, 9, "ISBN-10 body")
    total = sum(map(mul, _ISBN10_WEIGHTS, body.encode("ascii"))) - 48 * sum(_ISBN10_WEIGHTS)
    digit = -total % 11
    return "X" if digit == 10 else str(digit)


def verify_isbn10(text: str) -> str:
    """`text` (upper-cased X) if it is a valid ISBN-10 without hyphens."""
    if len(text) != 10:
        raise _fail("ean_format", "ISBN-10 must be 10 characters", repr(text[:20]), length=len(text))
    normal = text[:9] + text[9].upper()
    expected = isbn10_check_digit(normal[:9])
    if normal[9] != expected:
        raise _fail(
            "isbn_check_digit",
            "ISBN-10 check character does not match",
            repr(text[9]),
            "a typo or misread",
            got=text[9],
        )
    return normal


def isbn10_to_13(isbn10: str) -> str:
    """The 978-prefixed ISBN-13 of a valid ISBN-10."""
    body = "978" + verify_isbn10(isbn10)[:9]
    return body + ean13_check_digit(body)


def isbn13_to_10(isbn13: str) -> str:
    """The ISBN-10 of a valid 978 ISBN-13; 979 ISBNs have none."""
    verify_ean13(isbn13)
    if not isbn13.startswith("978"):
        raise _fail(
            "isbn_no_isbn10",
            "only 978 ISBN-13s have an ISBN-10 form",
            repr(isbn13[:3]),
            "store the ISBN-13",
            prefix=isbn13[:3],
        )
    return isbn13[3:12] + isbn10_check_digit(isbn13[3:12])


def classify_book_scan(text: str) -> BookId | PriceRow | Gtin13:
    """Tell a book's ISBN row from its price row (which must never become an item id)."""
    if len(text) == 10:
        return BookId(isbn13=isbn10_to_13(text), isbn10=verify_isbn10(text))
    verify_ean13(text)
    prefix = text[:3]
    if prefix == "978":
        return BookId(isbn13=text, isbn10=text[3:12] + isbn10_check_digit(text[3:12]))
    if prefix == "979":
        return BookId(isbn13=text, isbn10=None)
    if prefix in _PRICE_FLAGS:
        price = int(text[7:12])
        return PriceRow(
            flag=prefix,
            c_code=text[3:7],
            price_yen=price or None,
            tax_included=_PRICE_FLAGS[prefix],
        )
    return Gtin13(gtin=text)
