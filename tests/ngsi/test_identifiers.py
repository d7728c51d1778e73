"""Identifier, tenant, service path and id-template rules, at run time and as pydantic validators."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import AfterValidator, ValidationError

from gateway.configbase import Section, format_validation_error
from gateway.ngsi.identifiers import (
    check_attribute_name,
    check_entity_id,
    check_entity_type,
    check_id_template,
    check_metadata_name,
    check_service,
    check_service_path,
    template_fields,
)

RULE = "1-256 printable ASCII characters without blanks or any of < > \" ' = ; ( ) & ? / # { } | \\ ^ `"


@pytest.mark.parametrize(
    "text", ["urn:ngsi-ld:WaterObserved:hitoyoshi", "gauge_01", "a.b-c~d", "a" * 256, "x@y:z", "50%"]
)
def test_legal_ids(text: str) -> None:
    assert check_entity_id(text) == text
    assert check_entity_type(text) == text


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("人吉", "found '人'"),
        ("gauge 1", "found ' '"),
        ("a(b)", "found '('"),
        ("a/b", "found '/'"),
        ("a#b", "found '#'"),
        ("a{b}", "found '{'"),
        ("tab\there", "found '\\t'"),
        ("", "it is empty"),
        ("a" * 257, "it has 257 characters"),
    ],
)
def test_illegal_ids_say_why(text: str, found: str) -> None:
    with pytest.raises(ValueError, match=r"^entity id must be ") as exc:
        check_entity_id(text)
    assert str(exc.value) == f"entity id must be {RULE} ({found})"


@pytest.mark.parametrize(
    "name",
    ["id", "type", "geo:distance", "*", "dateCreated", "dateModified", "dateExpires", "alterationType", "servicePath"],
)
def test_reserved_attribute_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"^attribute name must not be one Orion reserves ") as exc:
        check_attribute_name(name)
    assert str(exc.value) == (
        "attribute name must not be one Orion reserves (*, alterationType, dateCreated, dateExpires,"
        " dateModified, geo:distance, id, servicePath, type)"
    )


def test_metadata_names() -> None:
    assert check_metadata_name("accuracy") == "accuracy"
    assert check_metadata_name("ignoreType") == "ignoreType"  # legitimate: marks an informative location
    for name in ("dateCreated", "dateModified", "previousValue", "actionType", "*", "evalPriority"):
        with pytest.raises(ValueError, match=r"^metadata name must not be one Orion reserves"):
            check_metadata_name(name)


def test_service() -> None:
    assert check_service("kumamoto_city") == "kumamoto_city"
    for bad in ("Kumamoto", "kumamoto-city", "", "a" * 51):
        with pytest.raises(ValueError, match=r"^must be 1-50 characters ") as exc:
            check_service(bad)
        assert str(exc.value) == "must be 1-50 characters of a-z 0-9 _ (lower case; Orion's Fiware-Service)"


@pytest.mark.parametrize("path", ["/", "/river", "/River_1/gauges", "/" + "/".join(["a"] * 10), "/" + "a" * 50])
def test_service_paths(path: str) -> None:
    assert check_service_path(path) == path


@pytest.mark.parametrize(
    "path", ["river", "/river/", "/a-b", "/a/#", "/a,/b", "//a", "/" + "/".join(["a"] * 11), "/" + "a" * 51]
)
def test_bad_service_paths(path: str) -> None:
    with pytest.raises(ValueError, match=r"^must be / or / followed by ") as exc:
        check_service_path(path)
    assert str(exc.value).startswith("must be / or / followed by 1-10 segments of A-Z a-z 0-9 _ (1-50 each)")


def test_id_templates() -> None:
    assert check_id_template("urn:ngsi-ld:WaterObserved:{device}") == "urn:ngsi-ld:WaterObserved:{device}"
    assert template_fields("urn:ngsi-ld:{type}:{site}-{device}") == ["type", "site", "device"]
    with pytest.raises(ValueError, match=r"^must be .* outside the \{name\} placeholders ") as exc:
        check_id_template("urn:ngsi-ld:Water Observed:{device}")
    assert str(exc.value) == f"must be {RULE} outside the {{name}} placeholders (found ' ')"
    with pytest.raises(ValueError, match=r"^must use placeholders of the form ") as exc:
        check_id_template("urn:{device")
    assert str(exc.value) == "must use placeholders of the form {name} (a letter or _ then letters, digits, _)"
    with pytest.raises(ValueError, match="placeholders of the form"):
        check_id_template("urn:{1st}")


class _Mapping(Section):
    entity_id: Annotated[str, AfterValidator(check_id_template)]
    service: Annotated[str, AfterValidator(check_service)] = "city"


def test_as_pydantic_validators_with_key_paths() -> None:
    with pytest.raises(ValidationError) as exc:
        _Mapping.model_validate({"entity_id": "gauge(1)", "service": "City"})
    assert format_validation_error(exc.value, _Mapping, "uplinks[0]") == [
        f"uplinks[0].entity_id: must be {RULE} outside the {{name}} placeholders (found '('), got \"gauge(1)\"",
        'uplinks[0].service: must be 1-50 characters of a-z 0-9 _ (lower case; Orion\'s Fiware-Service), got "City"',
    ]
