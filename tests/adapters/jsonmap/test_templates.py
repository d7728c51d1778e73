"""Id templates: literal text and placeholders split once, unbalanced braces and bad literals refused with exact text."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.jsonmap.paths import MISSING
from adapters.jsonmap.templates import FieldRef, check_literals, field_ref, id_text, parse_template

HELP = "placeholders are {<path>}"


def parse(text: str) -> tuple[str | FieldRef, ...]:
    return parse_template(text, field_ref, HELP)


def test_literals_and_placeholders_split_in_order() -> None:
    assert parse("urn:ngsi-ld:WaterObserved:{観測所.コード}-{値[0]}") == (
        "urn:ngsi-ld:WaterObserved:",
        FieldRef(path=("観測所", "コード"), text="観測所.コード"),
        "-",
        FieldRef(path=("値", 0), text="値[0]"),
    )
    assert parse("Device") == ("Device",)
    assert parse_template("{payload.a}", lambda inner: field_ref(inner, "payload."), HELP) == (
        FieldRef(path=("a",), text="payload.a"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("urn:x:{code", "has a '{' without its '}'; placeholders are {<path>}"),
        ("urn:x:code}", "has a '}' without its '{'; placeholders are {<path>}"),
        ("urn:x:}{code}", "has a '}' without its '{'; placeholders are {<path>}"),
        ("", "must not be empty"),
    ],
)
def test_unbalanced_braces_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse(text)


def test_the_placeholder_parser_words_its_own_refusals() -> None:
    with pytest.raises(ValueError, match=r"^must be a JSON path like"):
        parse("urn:x:{a..b}")


def test_literal_parts_must_be_legal_in_an_orion_id() -> None:
    check_literals(parse("urn:ngsi-ld:WaterObserved:{code}"))
    with pytest.raises(ValueError, match=re.escape("outside the {name} placeholders (found ' ')")):
        check_literals(parse("urn:ngsi-ld:Water Observed:{code}"))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_any_text_parses_or_is_refused_with_a_value_error(text: str) -> None:
    try:
        parts = parse(text)
    except ValueError:
        return
    rebuilt = "".join(p if isinstance(p, str) else "{" + p.text + "}" for p in parts)
    assert rebuilt == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0431", "0431"),
        (860101, "860101"),
        (-1, "-1"),
        (1.5, None),
        (True, None),
        (None, None),
        (MISSING, None),
        ({"a": 1}, None),
        ([1], None),
    ],
)
def test_only_strings_and_integers_go_into_ids(value: Any, text: str | None) -> None:
    assert id_text(value) == text
