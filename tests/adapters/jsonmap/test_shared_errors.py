"""The mapping errors http_poll and mqtt share live in adapters.jsonmap: one wording, one set of reasons."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.http_poll.mapping import MalformedReason as HttpReason
from adapters.jsonmap.errors import FieldError, Problem, not_json
from adapters.jsonmap.templates import checked_id, field_ref, id_field
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
        ({"station": {"code": 1.5}}, Problem.WRONG_TYPE, "must be a string or an integer, got float 1.5"),
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
        "'urn:ngsi-ld:Thing:a b'"
    )


def test_bytes_that_are_no_json() -> None:
    problem = not_json(0, b"<html>")
    assert (problem.problem, problem.what) == (Problem.NOT_JSON, "is not JSON (invalid at character 0), got b'<html>'")
