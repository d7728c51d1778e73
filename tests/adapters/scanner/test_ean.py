"""EAN-13/JAN, ISBN-13/10 and the Japanese book barcode's price row."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.scanner.codec import EanError
from adapters.scanner.ean import (
    BookId,
    Gtin13,
    PriceRow,
    classify_book_scan,
    ean13_check_digit,
    isbn10_check_digit,
    isbn10_to_13,
    isbn13_to_10,
    verify_ean13,
    verify_isbn10,
)

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


def numbers(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


# --- golden vectors ------------------------------------------------------------------------


def test_ean13_golden() -> None:
    # activebarcode.com/ja/codes/checkdigit/modulo10.html: 400763000011 -> check digit 6
    assert ean13_check_digit("400763000011") == "6"
    assert verify_ean13("4007630000116") == "4007630000116"


@pytest.mark.parametrize(
    ("upper", "isbn10", "lower", "c_code", "price", "tax_included"),
    [
        # udeoshi.hatenadiary.org/entry/20070504/p1: ISBN 4-344-40504-8 C0193 ¥571
        ("9784344405042", "4344405048", "1920193005714", "0193", 571, False),
        # pot.co.jp/gotogi/13-26.html: ISBN4-16-741408-2 C0195 P450E, 3 % era row starts 191
        ("9784167414085", "4167414082", "1910195004501", "0195", 450, True),
    ],
)
def test_two_row_book_barcodes(
    upper: str, isbn10: str, lower: str, c_code: str, price: int, tax_included: bool
) -> None:
    assert classify_book_scan(upper) == BookId(isbn13=upper, isbn10=isbn10)
    assert classify_book_scan(isbn10) == BookId(isbn13=upper, isbn10=isbn10)
    assert classify_book_scan(lower) == PriceRow(
        flag=lower[:3], c_code=c_code, price_yen=price, tax_included=tax_included
    )
    assert isbn10_to_13(isbn10) == upper
    assert isbn13_to_10(upper) == isbn10


def test_price_row_of_100000_yen_or_more_has_no_price() -> None:
    # luxy.gottago.jp/archives/60589997.html: 5 digits, 100,000 yen and above are written 00000
    body = "192" + "3004" + "00000"
    row = classify_book_scan(body + ean13_check_digit(body))
    assert row == PriceRow(flag="192", c_code="3004", price_yen=None, tax_included=False)


def test_isbn10_with_x_and_lower_case_x() -> None:
    # wdic.org (モジュラス11 ISBN): ISBN 4-88380-478-X
    assert isbn10_check_digit("488380478") == "X"
    assert verify_isbn10("488380478x") == "488380478X"
    assert classify_book_scan("488380478X") == BookId(isbn13="9784883804788", isbn10="488380478X")


def test_979_isbn_and_plain_jan() -> None:
    body = "979101234567"
    isbn = body + ean13_check_digit(body)
    assert classify_book_scan(isbn) == BookId(isbn13=isbn, isbn10=None)
    assert classify_book_scan("4901234567894") == Gtin13(gtin="4901234567894")


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (lambda: verify_ean13("978434440504"), "ean_format", "ean: EAN-13 must be 13 digits, got '978434440504'"),
        (lambda: verify_ean13("978434440504X"), "ean_format", "ean: EAN-13 must be 13 digits, got '978434440504X'"),
        (lambda: verify_ean13("9784344405043"), "ean_check_digit",
         "ean: EAN-13 check digit does not match, got '3'; a misread; scan again"),
        (lambda: verify_isbn10("434440504"), "ean_format", "ean: ISBN-10 must be 10 characters, got '434440504'"),
        (lambda: verify_isbn10("4344405047"), "isbn_check_digit",
         "ean: ISBN-10 check character does not match, got '7'; a typo or misread"),
        (lambda: verify_isbn10("43444O5048"), "ean_format", "ean: ISBN-10 body must be 9 digits, got '43444O504'"),
        (lambda: isbn13_to_10("9791012345678"), "isbn_no_isbn10",
         "ean: only 978 ISBN-13s have an ISBN-10 form, got '979'; store the ISBN-13"),
        (lambda: classify_book_scan("12345"), "ean_format", "ean: EAN-13 must be 13 digits, got '12345'"),
    ],
)  # fmt: skip
def test_errors(call: object, code: str, message: str) -> None:
    with pytest.raises(EanError) as err:
        call()  # type: ignore[operator]
    assert (err.value.code, str(err.value)) == (code, message)


def test_error_params() -> None:
    with pytest.raises(EanError) as err:
        isbn13_to_10("9791012345678")
    assert err.value.params == {"prefix": "979"}


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(body=numbers(12))
def test_computed_ean13_check_digits_verify(body: str) -> None:
    assert verify_ean13(body + ean13_check_digit(body)) == body + ean13_check_digit(body)


@settings(max_examples=300)
@given(body=numbers(12), position=st.integers(0, 12), data=st.data())
def test_ean13_detects_every_single_digit_substitution(body: str, position: int, data: st.DataObject) -> None:
    code = body + ean13_check_digit(body)
    new = data.draw(st.sampled_from("0123456789").filter(lambda c: c != code[position]))
    with pytest.raises(EanError):
        verify_ean13(code[:position] + new + code[position + 1 :])


@settings(max_examples=300)
@given(body=numbers(9), position=st.integers(0, 9), data=st.data())
def test_isbn10_detects_every_single_substitution(body: str, position: int, data: st.DataObject) -> None:
    code = body + isbn10_check_digit(body)
    alphabet = "0123456789X" if position == 9 else "0123456789"
    new = data.draw(st.sampled_from(alphabet).filter(lambda c: c != code[position]))
    with pytest.raises(EanError):
        verify_isbn10(code[:position] + new + code[position + 1 :])


@settings(max_examples=300)
@given(body=numbers(9), first=st.integers(0, 9), second=st.integers(0, 9))
def test_isbn10_detects_every_transposition(body: str, first: int, second: int) -> None:
    code = list(body + isbn10_check_digit(body))
    if first == second or code[first] == code[second] or "X" in (code[first], code[second]):
        return  # nothing transposed, or an X moved into the body (a format error, tested above)
    code[first], code[second] = code[second], code[first]
    with pytest.raises(EanError):
        verify_isbn10("".join(code))


@settings(max_examples=300)
@given(body=numbers(9))
def test_isbn_10_13_round_trip(body: str) -> None:
    isbn10 = body + isbn10_check_digit(body)
    isbn13 = isbn10_to_13(isbn10)
    assert isbn13.startswith("978")
    assert isbn13_to_10(isbn13) == isbn10


@settings(max_examples=300)
@given(flag=st.sampled_from(["191", "192"]), rest=numbers(9))
def test_price_rows_never_become_item_ids(flag: str, rest: str) -> None:
    body = flag + rest
    row = classify_book_scan(body + ean13_check_digit(body))
    assert isinstance(row, PriceRow)
    assert (row.c_code, row.price_yen or 0) == (rest[:4], int(rest[4:]))


@settings(max_examples=400)
@given(text=st.text(alphabet="0123456789Xx-" + "é ", max_size=16) | st.text(max_size=16))
def test_arbitrary_text_raises_only_ean_errors(text: str) -> None:
    try:
        result = classify_book_scan(text)
    except EanError:
        return
    assert isinstance(result, BookId | PriceRow | Gtin13)
