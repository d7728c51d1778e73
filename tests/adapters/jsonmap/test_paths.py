"""JSON paths: what parses, what is refused with the shared message, and lookups that never raise."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.jsonmap.paths import MISSING, PATH_HELP, lookup, parse_path, path_text

KEY = st.text(
    st.characters(blacklist_characters=".[]{}", blacklist_categories=("Zs", "Cc", "Zl", "Zp", "Cs")),
    min_size=1,
    max_size=8,
).filter(lambda k: not any(c.isspace() for c in k))
JAPANESE_KEY = st.sampled_from(["水位", "観測時刻", "観測所", "ｺｰﾄﾞ", "値"])
PART = (KEY | JAPANESE_KEY) | st.integers(0, 20)
FIELD_PATH = st.tuples(KEY | JAPANESE_KEY, st.lists(PART, max_size=5)).map(lambda t: (t[0], *t[1]))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY | JAPANESE_KEY, inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("temperature", ("temperature",)),
        ("object.temperature", ("object", "temperature")),
        ("rxInfo[0].rssi", ("rxInfo", 0, "rssi")),
        ("観測値[0].水位", ("観測値", 0, "水位")),
        ("a[1][2]", ("a", 1, 2)),
        ("data.観測所一覧", ("data", "観測所一覧")),
    ],
)
def test_paths_parse_into_keys_and_indexes(text: str, parts: tuple[Any, ...]) -> None:
    assert parse_path(text) == parts
    assert path_text(parts) == text


@pytest.mark.parametrize("text", ["", "a..b", ".a", "a.", "a[x]", "a[-1]", "a b", "a[0", "a]", "{a}", "a.[0]"])
def test_malformed_paths_are_refused_with_the_shared_message(text: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(PATH_HELP)}$"):
        parse_path(text)
    assert PATH_HELP == (
        "must be a JSON path like data.stations or 観測値[0].水位 (keys separated by '.', list items as [i])"
    )


def test_only_a_list_path_may_start_with_an_index() -> None:
    # a field lives in a JSON object, so `[0].x` could never match one; a list of items may be inside a list
    with pytest.raises(ValueError, match=f"^{re.escape(PATH_HELP)}$"):
        parse_path("[0].stations")
    assert parse_path("[0].stations", may_start_with_index=True) == (0, "stations")


@settings(max_examples=200, deadline=None)
@given(FIELD_PATH)
def test_any_path_round_trips_through_its_text(parts: tuple[Any, ...]) -> None:
    assert parse_path(path_text(parts)) == parts


@settings(max_examples=200, deadline=None)
@given(doc=JSON, parts=st.lists(PART, max_size=5))
def test_lookup_never_raises_and_finds_what_is_there(doc: Any, parts: list[Any]) -> None:
    path = tuple(parts)
    found = lookup(doc, path)
    node = doc
    for p in path:
        ok = (isinstance(p, int) and isinstance(node, list) and p < len(node)) or (
            isinstance(p, str) and isinstance(node, dict) and p in node
        )
        if not ok:
            assert found is MISSING
            return
        node = node[p]
    assert found is node


def test_lookup_keeps_null_apart_from_absent() -> None:
    doc = json.loads('{"a": {"b": null}, "l": [1]}')
    assert lookup(doc, ("a", "b")) is None
    assert lookup(doc, ("a", "c")) is MISSING
    assert lookup(doc, ("l", 1)) is MISSING
    assert lookup(doc, ("l", "x")) is MISSING
    assert lookup(doc, ("a", 0)) is MISSING
    assert repr(MISSING) == "MISSING"
