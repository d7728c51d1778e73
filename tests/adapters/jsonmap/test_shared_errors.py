"""The mapping errors http_poll and mqtt share live in adapters.jsonmap: one wording, one set of reasons."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.http_poll.mapping import MalformedReason as HttpReason
from adapters.jsonmap.errors import FieldError, Problem, describe, describe_keys, excerpt, not_json
from adapters.jsonmap.templates import checked_id, field_ref, id_field
from adapters.jsonmap.timestamps import quote_time
from adapters.mqtt.mapping import MalformedReason as MqttReason
from gateway.ngsi.identifiers import check_entity_id

REF = field_ref("payload.station.code", prefix="payload.")


def test_every_field_problem_is_a_reason_of_both_adapters() -> None:
    for problem in Problem:
        assert HttpReason(problem.value).value == MqttReason(problem.value).value == problem.value


@given(st.one_of(st.text(min_size=1), st.integers()))
def test_strings_and_integers_are_id_text(value: str | int) -> None:
    assert id_field({"station": {"code": value}}, REF, "entity_id") == str(value)


@pytest.mark.parametrize(
    ("doc", "problem", "what"),
    [
        ({}, Problem.MISSING_FIELD, "is missing, got no such field"),
        ({"station": {"code": None}}, Problem.MISSING_FIELD, "is missing, got null"),
        (
            {"station": {"code": 1.5}},
            Problem.WRONG_TYPE,
            "must be a string or an integer, got float <1 digit>.<1 digit>",
        ),
        ({"station": {"code": True}}, Problem.WRONG_TYPE, "must be a string or an integer, got bool True"),
    ],
)
def test_an_id_field_that_cannot_be_used_is_worded_once_for_every_adapter(
    doc: dict[str, Any], problem: Problem, what: str
) -> None:
    with pytest.raises(FieldError) as err:
        id_field(doc, REF, "entity_id")
    assert (err.value.problem, err.value.path_text, err.value.subject, err.value.what) == (
        problem,
        "station.code",
        "entity_id {payload.station.code}",
        what,
    )
    assert str(err.value) == f"station.code (entity_id {{payload.station.code}}): {what}"


def test_an_invalid_rendered_id_names_its_template() -> None:
    assert (
        checked_id("urn:ngsi-ld:Thing:a", key="entity_id", template="urn:ngsi-ld:Thing:{id}", check=check_entity_id)
        == "urn:ngsi-ld:Thing:a"
    )
    with pytest.raises(FieldError) as err:
        checked_id("urn:ngsi-ld:Thing:a b", key="entity_id", template="urn:ngsi-ld:Thing:{id}", check=check_entity_id)
    assert err.value.problem is Problem.BAD_ID
    assert str(err.value) == (
        "entity_id urn:ngsi-ld:Thing:{id} renders to an invalid identifier: entity id must be 1-256 printable ASCII "
        "characters without blanks or any of < > \" ' = ; ( ) & ? / # { } | \\ ^ ` (found ' '), got "
        "'urn:ngsi-ld:Thing:<1 letter> <1 letter>'"
    )


def test_bytes_that_are_no_json() -> None:
    problem = not_json(0, b"<html>")
    assert (problem.problem, problem.what) == (Problem.NOT_JSON, "is not JSON (invalid at character 0), got '<html>'")


# --- values are quoted by shape: they may be personal data (a card number, an IDm, a MAC, an e-mail) --------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0012345678901", "'<13 digits>'"),
        ("AABBCCDDEEFF", "'<12 letters>'"),
        ("01 2E 44", "'<2 digits> <2 chars> <2 digits>'"),
        ("taro.yamada@example.jp", "'<4 letters>.<6 letters>@<7 letters>.<2 letters>'"),
        ("24.0 C", "'<2 digits>.<1 digit> <1 letter>'"),  # a unit after the number: the shape says it
        ("北緯32度", "'<5 chars>'"),
        (12345678901, "<11 digits>"),
        (-12.5, "-<2 digits>.<1 digit>"),
        (1e300, "<1 digit>e+<3 digits>"),
        (None, "null"),
        (True, "True"),
        ({"idm": "0123456789ABCDEF"}, "{'idm': '<16 chars>'}"),
        # keys that read as field names are schema; a card number, a MAC or an address as a key is not
        (
            {"0012345678901": 1, "a@b.jp": 3},
            "{'<13 digits>': <1 digit>, '<1 letter>@<1 letter>.<2 letters>': <1 digit>}",
        ),
        ([{"card": "1"}, "x"], "[{'card': '<1 digit>'}, '<1 letter>']"),
        (b"\x01\x2e\x44", "b'<1 byte>.<1 letter>'"),
    ],
)
def test_describe_shows_structure_and_masks_every_value(value: Any, shown: str) -> None:
    assert describe(value) == shown


def test_describe_masks_before_it_cuts() -> None:
    # cut first, the quote would end in a fragment of the card that no masker can recognise
    assert describe("x" * 75 + " 0012345678901") == "'<75 letters> <13 digits>'"
    assert describe(["ab"] * 40) == "['<2 letters>', '<2 letters>', '<2 letters>', '<2 letters>', '<2 letters>', '..."
    assert describe("a" * 10**6) == "'<1000000 letters>'"


def test_keys_are_listed_as_field_names_or_masked() -> None:
    assert describe_keys(["action", "battery", "観測所", "pm2_5"]) == "['action', 'battery', '観測所', 'pm2_5']"
    assert describe_keys(["aa:bb:cc:dd:ee:ff"]) == (
        "['<2 letters>:<2 letters>:<2 letters>:<2 letters>:<2 letters>:<2 letters>']"
    )
    assert describe_keys(["aabb.ccdd.eeff", "dev2026", "deadbeef01"]) == (
        "['<4 letters>.<4 letters>.<4 letters>', '<7 chars>', '<10 chars>']"
    )


@pytest.mark.parametrize(
    ("text", "position", "shown"),
    [
        (b'{"card":"0012345678901","mac":"AABBCCDDEEFF",}', 44, '\'{"card":"<13 digits>","mac":"<12 letters>",}\''),
        (b'{"ok": true, "n": nul}', 18, '\'{"ok": true, "n": <3 letters>}\''),
        (b"<html><body>\xe3\x83\xa1</body></html>", 0, "'<html><body><1 letter></body></html>'"),
        (b"\xff\xfe not json", 0, "'<2 bytes> <3 letters> <4 letters>'"),
        # far into a long payload: the excerpt is around the error, the error two thirds in
        (
            b'{"a": "' + b"x " * 300 + b'", "b": [1,,2]}',
            618,
            '\'...<1 letter> <1 letter> <1 letter> <1 letter> ", "b": [<1 digit>,,<1 digit>]}\'',
        ),
    ],
)
def test_text_that_is_no_json_is_quoted_masked_around_the_error(text: bytes, position: int, shown: str) -> None:
    assert excerpt(text, position) == shown
    assert not_json(position, text).what == f"is not JSON (invalid at character {position}), got {shown}"


@pytest.mark.parametrize(
    "raw",
    ["2026/07/01 25:00", "1970-01-01T00:00:15", "2026-07-01T24:30:00+09:00", "2026年7月1日 9時10分", "2026-07-01"],
)
def test_times_are_quoted_as_they_are(raw: str) -> None:
    assert quote_time(raw) == repr(raw)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("0012-3456-7890-1234", "'<4 digits>-<4 digits>-<4 digits>-<4 digits>'"),  # a card in groups, not a date
        ("0012345678901", "'<13 digits>'"),
        (1714532400, "<10 digits>"),
    ],
)
def test_what_is_no_time_is_masked(raw: Any, shown: str) -> None:
    assert quote_time(raw) == shown
