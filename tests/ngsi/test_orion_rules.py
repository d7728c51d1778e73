"""The Orion oracle itself, checked against vectors taken from Orion's own tests and manual.

Sources (telefonicaid/fiware-orion):
- test/acceptance/behave/components/ngsiv2/entities/create_entities.feature — tenant and service path
  vectors, Content-Type/Content-Length/size errors, entity type characters and length, value characters
- src/lib/common/errorMessages.h — "empty entities vector", ParseError text
- src/lib/ngsi/ContextAttribute.cpp — "Invalid characters in attribute value" (strings in compounds too)
- src/lib/mongoBackend/location.cpp, errorMessages.h ERROR_DESC_NO_RESOURCES_AVAILABLE_GEOLOC — 413
  NoResourcesAvailable text for a second location
- src/lib/rest/rest.cpp connectionTreat(), src/lib/parse/textParse.cpp — the order of the HTTP layer's checks
- doc/manuals/orion-api.md — TextUnrestricted and ignoreType examples (Hospital1), Datetime support
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.orion_rules import parse_orion_datetime, validate_ld_upsert, validate_v2_update


def v2(doc: Any, *, strict: bool = True, raw: bytes | None = None, **headers: str) -> tuple[int, Any]:
    body = raw if raw is not None else json.dumps(doc, ensure_ascii=False).encode()
    h = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Fiware-Service": "city"}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return validate_v2_update(h, body, strict=strict)


def batch(*entities: dict[str, Any]) -> dict[str, Any]:
    return {"actionType": "append", "entities": list(entities)}


def room(**attrs: Any) -> dict[str, Any]:
    return {"id": "room2", "type": "house", **attrs}


TEMP = {"temperature": {"type": "Number", "value": 34}}


def bad(description: str) -> tuple[int, dict[str, str]]:
    return 400, {"error": "BadRequest", "description": description}


def test_a_plain_batch_is_accepted() -> None:
    assert v2(batch(room(**TEMP)), Fiware_ServicePath="/test") == (204, None)


@pytest.mark.parametrize(
    "service", ["servicedot.sr", "Service-sr", "Service(sr)", "service#sr", "service%sr", "service&sr"]
)
def test_tenant_characters(service: str) -> None:
    assert v2(batch(room(**TEMP)), Fiware_Service=service) == bad(
        "bad character in tenant name - only underscore and alphanumeric characters are allowed"
    )


def test_tenant_length() -> None:
    assert v2(batch(room(**TEMP)), Fiware_Service="a" * 51) == bad(
        "bad length - a tenant name can be max 50 characters long"
    )
    assert v2(batch(room(**TEMP)), Fiware_Service="a" * 50)[0] == 204


def test_upper_case_tenant_is_orion_legal_but_strictly_refused() -> None:
    assert v2(batch(room(**TEMP)), strict=False, Fiware_Service="SERVICE")[0] == 204
    assert v2(batch(room(**TEMP)), Fiware_Service="SERVICE")[0] == 400


@pytest.mark.parametrize(
    ("path", "description"),
    [
        ("/service.sr", "a component of ServicePath contains an illegal character"),
        ("/Service-sr", "a component of ServicePath contains an illegal character"),
        ("/serv(45)", "a component of ServicePath contains an illegal character"),
        ("sdffsfs", "Only /absolute/ Service Paths allowed [a service path must begin with /]"),
        ("/service,sr", "Only /absolute/ Service Paths allowed [a service path must begin with /]"),
        ("/a,/b", "more than one service path in context update request"),
        ("/" + "a" * 51, "component-name too long in ServicePath"),
        ("/a" * 11, "too many components in ServicePath"),
    ],
)
def test_service_path_errors(path: str, description: str) -> None:
    assert v2(batch(room(**TEMP)), Fiware_ServicePath=path) == bad(description)


@pytest.mark.parametrize(
    "path",
    ["/", "/Service_path", "/SERVICE", "/serv1/serv2/serv3/serv4/serv5/serv6/serv7/serv8/serv9/serv10", "/" + "a" * 50],
)
def test_service_paths_accepted(path: str) -> None:
    assert v2(batch(room(**TEMP)), Fiware_ServicePath=path) == (204, None)


def test_trailing_slash_is_dropped_by_orion_but_strictly_refused() -> None:
    assert v2(batch(room(**TEMP)), strict=False, Fiware_ServicePath="/a/")[0] == 204
    assert v2(batch(room(**TEMP)), Fiware_ServicePath="/a/")[0] == 400


def test_transport_errors() -> None:
    body = json.dumps(batch(room(**TEMP))).encode()
    assert validate_v2_update({"Content-Type": "application/json"}, body) == (
        411,
        {"error": "ContentLengthRequired", "description": "Zero/No Content-Length in PUT/POST/PATCH request"},
    )
    assert validate_v2_update({"Content-Length": str(len(body))}, body) == (
        415,
        {
            "error": "UnsupportedMediaType",
            "description": "Content-Type header not used, default application/octet-stream is not supported",
        },
    )
    assert validate_v2_update({"Content-Length": str(len(body)), "Content-Type": "text/plain"}, body) == (
        415,
        {"error": "UnsupportedMediaType", "description": "not supported content type: text/plain"},
    )
    charset = {"Content-Length": str(len(body)), "content-type": "application/json; charset=utf-8"}
    assert validate_v2_update(charset, body) == (204, None)


def test_direct_callers_get_orions_http_layer_order() -> None:
    """connectionTreat() in rest.cpp: 413 on the declared size first, then the service path, the Content-Type
    (contentTypeCheck: cut at its ";", compared as it is), the URI params, 411; text/plain passes that layer
    and its service refuses it (textRequestTreat in src/lib/parse/textParse.cpp)."""
    body = json.dumps(batch(room(**TEMP))).encode()
    sized = {"Content-Length": str(len(body)), "Fiware-Service": "city"}
    bogus = {"options": ["bogus"]}
    no_type = (
        415,
        {
            "error": "UnsupportedMediaType",
            "description": "Content-Type header not used, default application/octet-stream is not supported",
        },
    )
    huge = b"x" * 1_048_577
    assert validate_v2_update({"Content-Length": str(len(huge)), "Fiware-ServicePath": "x"}, huge, query=bogus) == (
        413,
        {"error": "RequestEntityTooLarge", "description": "payload size: 1048577, max size supported: 1048576"},
    )
    assert validate_v2_update({**sized, "Fiware-ServicePath": "river"}, body, query=bogus) == bad(
        "Only /absolute/ Service Paths allowed [a service path must begin with /]"
    )
    assert validate_v2_update(sized, body, query=bogus) == no_type
    assert validate_v2_update({**sized, "Content-Type": "Application/JSON"}, body) == (
        415,
        {"error": "UnsupportedMediaType", "description": "not supported content type: Application/JSON"},
    )
    plain = {**sized, "Content-Type": "text/plain"}
    assert validate_v2_update(plain, body, query=bogus) == bad("Invalid value for URI param /options/")
    assert validate_v2_update({"Content-Type": "application/xml"}, b"", query=bogus) == bad(
        "Invalid value for URI param /options/"
    )
    assert validate_v2_update({"Content-Type": "application/xml"}, b"")[0] == 411
    # the service path of an update is checked again by its service, after the HTTP layer
    assert validate_v2_update({**sized, "Fiware-ServicePath": "/a,/b"}, body, query=bogus) == no_type
    assert validate_v2_update({**sized, "Content-Type": "application/json", "Fiware-ServicePath": "/a,/b"}, body) == (
        bad("more than one service path in context update request")
    )


def test_size_limit_is_one_mebibyte() -> None:
    filler = "x" * (1_048_594 - len(json.dumps(batch(room(a={"type": "Text", "value": ""})))))
    doc = batch(room(a={"type": "Text", "value": filler}))
    assert len(json.dumps(doc)) == 1_048_594
    assert v2(doc) == (
        413,
        {"error": "RequestEntityTooLarge", "description": "payload size: 1048594, max size supported: 1048576"},
    )
    exact = "x" * (1_048_576 - len(json.dumps(batch(room(a={"type": "Text", "value": ""})))))
    assert v2(batch(room(a={"type": "Text", "value": exact})))[0] == 204


@pytest.mark.parametrize(
    "etype",
    [
        "habitación",
        "house<flat>",
        "house=flat",
        'house"flat"',
        "house;flat",
        "house_?",
        "house_&",
        "house_/",
        "house_#",
        "my house",
    ],
)
def test_entity_type_characters(etype: str) -> None:
    assert v2(batch({"id": "room", "type": etype, **TEMP})) == bad("Invalid characters in entity type")


@pytest.mark.parametrize("etype", ["34", "temp.34", "temp-34", "house@flat", "a" * 256])
def test_entity_types_accepted(etype: str) -> None:
    assert v2(batch({"id": "room", "type": etype, **TEMP}))[0] == 204


def test_identifier_lengths() -> None:
    assert v2(batch({"id": "room", "type": "a" * 257, **TEMP})) == bad(
        "entity type length: 257, max length supported: 256"
    )
    assert v2(batch({"id": "", "type": "T", **TEMP})) == bad("entity id length: 0, min length supported: 1")
    assert v2(batch(room(**{"a" * 257: {"type": "Text", "value": "x"}}))) == bad(
        "attribute name length: 257, max length supported: 256"
    )


@pytest.mark.parametrize(
    "value", ["house<flat>", "house=flat", 'house"flat"', "house'flat'", "house;flat", "house(flat)", "人吉(水の手橋)"]
)
def test_value_characters(value: str) -> None:
    assert v2(batch(room(name={"type": "Text", "value": value}))) == bad("Invalid characters in attribute value")
    nested = {"type": "StructuredValue", "value": {"a": [1, {"b": value}]}}
    assert v2(batch(room(name=nested))) == bad("Invalid characters in attribute value")


@pytest.mark.parametrize(
    "value",
    ["fsdfsd", "house@flat", "habitación", "españa", "house_?", "house_&", "house_/", "house_#", "人吉%28水の手橋%29"],
)
def test_values_accepted(value: str) -> None:
    assert v2(batch(room(name={"type": "Text", "value": value}))) == (204, None)


def test_text_unrestricted_skips_the_value_check() -> None:
    attr = {"type": "TextUnrestricted", "value": "I'm a unrestricted (and I'm using forbidden chars, the apostrophe)"}
    assert v2(batch(room(forbiddenAttr=attr))) == (204, None)


def test_metadata_rules() -> None:
    md = {"type": "Number", "value": 1, "metadata": {"unitCode": {"type": "Text", "value": "a(b)"}}}
    assert v2(batch(room(a=md))) == bad("Invalid characters in metadata value")
    md = {"type": "Number", "value": 1, "metadata": {"previousValue": {"type": "Number", "value": 0}}}
    assert v2(batch(room(a=md))) == bad("forbidden metadata name: previousValue")
    md = {"type": "Number", "value": 1, "metadata": {"*": {"type": "Number", "value": 0}}}
    assert v2(batch(room(a=md)), strict=False) == bad("forbidden metadata name: *")


@pytest.mark.parametrize("name", ["geo:distance", "*", "dateExpires", "servicePath"])
def test_reserved_attribute_names(name: str) -> None:
    assert v2(batch(room(**{name: {"type": "Text", "value": "x"}}))) == bad(f"forbidden attribute name: {name}")


def test_only_one_location_without_ignore_type() -> None:
    point = {"type": "geo:json", "value": {"type": "Point", "coordinates": [-3.68666, 40.48108]}}
    area = {
        "type": "geo:json",
        "value": {
            "type": "Polygon",
            "coordinates": [
                [
                    [-3.69807, 40.49029],
                    [-3.68640, 40.49100],
                    [-3.68602, 40.50456],
                    [-3.71192, 40.50420],
                    [-3.69807, 40.49029],
                ]
            ],
        },
    }
    assert v2(batch(room(location=point, serviceArea=area))) == (
        413,
        {
            "error": "NoResourcesAvailable",
            # errorMessages.h ERROR_DESC_NO_RESOURCES_AVAILABLE_GEOLOC since Orion 3.6 (functional test
            # 1038_ngsiv2_geo_location_entities/errors_general.test, step 01)
            "description": "You cannot use more than one geo location attribute when creating an entity. Use "
            "ignoreType metadata if you want to add additional informative locations.",
        },
    )
    informative = {**area, "metadata": {"ignoreType": {"type": "Boolean", "value": True}}}
    assert v2(batch(room(location=point, serviceArea=informative))) == (204, None)
    # a null location does not count (orion-api.md, Special Attribute Types)
    assert v2(batch(room(location=point, other={"type": "geo:json", "value": None}))) == (204, None)


def test_payload_shape() -> None:
    assert v2(batch()) == bad("empty entities vector")
    assert v2({"actionType": "upsert", "entities": [room(**TEMP)]}) == bad("invalid update action type: 'upsert'")
    assert v2(None, raw=b'{"actionType": "append", "entities": [{"id": "E", "type": "T", "a": {"value": NaN}}]}') == (
        400,
        {"error": "ParseError", "description": "Errors found in incoming JSON buffer"},
    )
    assert v2(batch(room(a=34))) == bad("attribute must be a JSON object, unless keyValues option is used")


def test_nesting_limit() -> None:
    deep: Any = 1
    for _ in range(50):
        deep = [deep]
    assert v2(batch(room(a={"type": "StructuredValue", "value": deep}))) == (204, None)
    assert v2(batch(room(a={"type": "StructuredValue", "value": [deep]}))) == bad(
        "max nesting level exceeded in attribute a"
    )


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2017-06-17T07:21:24.238Z", True),
        ("2017-06-17", True),
        ("2017-06-17T07:21", True),
        ("2017-06-17T072124.238+0900", True),
        ("2017-06-17T07:21:24+09:00", True),
        ("2017-06-17Z", False),
        ("2017-13-01T00:00:00Z", False),
        ("17-06-2017", False),
    ],
)
def test_datetime_forms(text: str, ok: bool) -> None:
    assert (parse_orion_datetime(text) is not None) is ok
    status, _ = v2(batch(room(TimeInstant={"type": "DateTime", "value": text})))
    assert status == (204 if ok else 400)


# --------------------------------------------------------------------------------------- NGSI-LD

CTX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"


def ld(entities: Any, *, ld_json: bool = True, **headers: str) -> tuple[int, Any]:
    body = json.dumps(entities, ensure_ascii=False).encode()
    ctype = "application/ld+json" if ld_json else "application/json"
    h = {"Content-Type": ctype, "Content-Length": str(len(body))}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return validate_ld_upsert(h, body)


def ld_entity(**attrs: Any) -> dict[str, Any]:
    return {"id": "urn:ngsi-ld:WaterObserved:gauge1", "type": "WaterObserved", "@context": CTX, **attrs}


def test_ld_accepts_properties_relationships_and_japanese_names() -> None:
    e = ld_entity(
        waterLevel={"type": "Property", "value": 1.5, "unitCode": "MTR", "observedAt": "2024-05-01T00:00:00.000Z"},
        観測所名={"type": "Property", "value": "人吉(水の手橋)"},
        refDevice={"type": "Relationship", "object": "urn:ngsi-ld:Device:d1"},
        location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [130.76, 32.21]}},
    )
    assert ld([e]) == (204, None)


def test_ld_request_level_problems() -> None:
    status, body = ld([])
    assert status == 400 and body["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    status, body = ld([ld_entity()] * 1001)
    assert (status, body["title"]) == (400, "Too many entities")
    status, body = ld(ld_entity())
    assert (status, body["detail"]) == (400, "entityOperations take a JSON array of entities")
    no_ctx = {k: v for k, v in ld_entity().items() if k != "@context"}
    link = f'<{CTX}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    assert ld([no_ctx], ld_json=False, Link=link) == (204, None)
    status, body = ld([ld_entity()], Link=link)
    assert (status, body["title"]) == (400, "Link header with application/ld+json")
    status, body = ld([ld_entity()], NGSILD_Tenant="bad-tenant")
    assert (status, body["title"]) == (400, "Invalid Tenant")


def test_ld_bad_entity_among_good_ones_is_a_207() -> None:
    good = ld_entity()
    worse = {**ld_entity(), "id": "gauge 2"}
    status, body = ld([good, worse])
    assert status == 207
    assert body["success"] == ["urn:ngsi-ld:WaterObserved:gauge1"]
    assert body["errors"][0]["entityId"] == "gauge 2"
    assert body["errors"][0]["error"]["title"] == "Invalid Entity ID"
    status, body = ld([ld_entity(level={"type": "Property", "value": 1, "observedAt": "yesterday"})])
    assert status == 207 and body["errors"][0]["error"]["title"] == "Invalid DateTime"
