"""The reversible percent encoding and the value-encoding modes."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.values import (
    decode_percent,
    decode_percent_value,
    encode_attribute_value,
    encode_metadata_value,
    encode_percent,
    encode_percent_value,
    first_banned,
)

BANNED = set("<>\"'=;()")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def test_the_community_convention() -> None:
    assert encode_percent("人吉(水の手橋)") == "人吉%28水の手橋%29"
    assert encode_percent("a\"b'c;d<e=f>") == "a%22b%27c%3Bd%3Ce%3Df%3E"
    assert encode_percent("50% (max)") == "50%25 %28max%29"
    assert encode_percent("%28") == "%2528"  # `%` first, so an already-encoded-looking text survives
    assert encode_percent("plain") == "plain"
    assert decode_percent("人吉%28水の手橋%29") == "人吉(水の手橋)"
    assert decode_percent("%2528") == "%28"
    assert decode_percent("%41 %zz") == "%41 %zz"  # only the codes we produce are decoded


@settings(max_examples=300)
@given(st.text())
def test_round_trip_and_no_banned_character(text: str) -> None:
    encoded = encode_percent(text)
    assert decode_percent(encoded) == text
    assert BANNED.isdisjoint(encoded)
    assert unquote(encoded) == text  # what a consumer in another language would use


@settings(max_examples=200)
@given(json_values)
def test_nested_round_trip(value: Any) -> None:
    encoded = encode_percent_value(value)
    assert first_banned(encoded) is None
    assert decode_percent_value(encoded) == value


def test_first_banned_looks_everywhere() -> None:
    assert first_banned({"a": [1, {"b": "x;y"}]}) == ";"
    assert first_banned({"k(": 1}) == "("
    assert first_banned(("ok", 3.5, None, True)) is None


def test_modes() -> None:
    pct, tu, rej = ValueEncoding.PERCENT, ValueEncoding.TEXT_UNRESTRICTED, ValueEncoding.REJECT
    assert encode_attribute_value("Text", "a(b)", pct) == ("Text", "a%28b%29")
    assert encode_attribute_value("Text", "a(b)", tu) == ("TextUnrestricted", "a(b)")
    assert encode_attribute_value("Text", "50%", tu) == ("Text", "50%")
    # structured and custom-typed values fall back to percent under text-unrestricted
    assert encode_attribute_value("StructuredValue", {"n": "a(b)"}, tu) == ("StructuredValue", {"n": "a%28b%29"})
    assert encode_attribute_value("Status", "a(b)", tu) == ("Status", "a%28b%29")
    assert encode_attribute_value("Text", "a(b)", rej) == ("Text", "a(b)")
    assert encode_attribute_value("TextUnrestricted", "a(b)", pct) == ("TextUnrestricted", "a(b)")
    assert encode_attribute_value("Number", 1.5, pct) == ("Number", 1.5)
    assert encode_metadata_value("a(b)", tu) == "a%28b%29"
    assert encode_metadata_value("a(b)", rej) == "a(b)"
