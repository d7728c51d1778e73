"""The Orion double's `POST /v2/op/query` and `POST /v2/registrations`, held to Orion's answers.

Expected texts from Orion's source (src/lib/jsonParseV2/parseBatchQuery.cpp, parseEntityObject.cpp,
parseStringList.cpp, parseRegistration.cpp, src/lib/rest/rest.cpp) and functional tests
(test/functionalTest/cases/1080_batch_query_context/batch_query_context_error_conditions.test,
2604_op_query_attrs/op_query_attrs.test, 1492_limit_zero/limit_zero_entities.test).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from tests.support.orion_double import OrionDouble

HEADERS = {"Content-Type": "application/json", "Fiware-Service": "edgegw", "Fiware-ServicePath": "/river"}


async def post(
    orion: OrionDouble, path: str, doc: Any, *, query: str = "", headers: dict[str, str] = HEADERS
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{orion.url}{path}{query}", data=body, headers=headers) as resp,
    ):
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if raw else None, resp.headers


async def seed(orion: OrionDouble) -> None:
    """E1 (A, B), E2 (B), E3 (C) of type T in /river, and E1 of type T2 in /lake."""
    entities = [
        {
            "id": "E1",
            "type": "T",
            "A": {"type": "Text", "value": "1A"},
            "B": {"type": "Number", "value": 1, "metadata": {"unitCode": {"type": "Text", "value": "MTR"}}},
        },
        {"id": "E2", "type": "T", "B": {"type": "Number", "value": 2}},
        {"id": "E3", "type": "T", "C": {"type": "Text", "value": "3C"}},
    ]
    assert (await post(orion, "/v2/op/update", {"actionType": "append", "entities": entities}))[0] == 204
    lake = {**HEADERS, "Fiware-ServicePath": "/lake"}
    doc = {"actionType": "append", "entities": [{"id": "E1", "type": "T2", "A": {"type": "Text", "value": "L"}}]}
    assert (await post(orion, "/v2/op/update", doc, headers=lake))[0] == 204


async def test_attrs_projects_without_filtering_and_metadata_is_rendered(orion_double: OrionDouble) -> None:
    await seed(orion_double)
    status, doc, _ = await post(
        orion_double, "/v2/op/query", {"entities": [{"idPattern": ".*", "type": "T"}], "attrs": ["A"]}
    )
    assert status == 200
    assert doc == [
        {"id": "E1", "type": "T", "A": {"type": "Text", "value": "1A", "metadata": {}}},
        {"id": "E2", "type": "T"},
        {"id": "E3", "type": "T"},
    ]


async def test_key_values_ids_paging_count_and_service_paths(orion_double: OrionDouble) -> None:
    await seed(orion_double)
    query = {"entities": [{"id": "E1"}, {"id": "E2"}, {"id": "E9"}], "attrs": ["B"]}
    status, doc, _ = await post(orion_double, "/v2/op/query", query, query="?options=keyValues")
    assert (status, doc) == (200, [{"id": "E1", "type": "T", "B": 1}, {"id": "E2", "type": "T", "B": 2}])
    status, doc, headers = await post(
        orion_double,
        "/v2/op/query",
        {"entities": [{"idPattern": "E"}]},
        query="?options=count,keyValues&limit=1&offset=1",
    )
    assert (status, doc, headers["Fiware-Total-Count"]) == (200, [{"id": "E2", "type": "T", "B": 2}], "3")
    every_path = {k: v for k, v in HEADERS.items() if k != "Fiware-ServicePath"}  # queries default to /#
    status, doc, _ = await post(
        orion_double, "/v2/op/query", {"entities": [{"id": "E1"}]}, query="?options=keyValues", headers=every_path
    )
    assert [(e["id"], e["type"]) for e in doc] == [("E1", "T"), ("E1", "T2")]
    status, doc, _ = await post(
        orion_double,
        "/v2/op/query",
        {"entities": [{"id": "E1", "type": "T2"}]},
        headers={**HEADERS, "Fiware-ServicePath": "/river, /lake"},
    )
    assert [e["A"]["value"] for e in doc] == ["L"]


@pytest.mark.parametrize(
    ("query", "doc", "status", "error"),
    [
        ("", b"{", 400, {"error": "ParseError", "description": "Errors found in incoming JSON buffer"}),
        ("", {}, 400, {"error": "BadRequest", "description": "empty payload"}),
        (
            "",
            {"nonSupported_field": [{"id": "E"}]},
            400,
            {"error": "BadRequest", "description": "Invalid JSON payload, no relevant fields found"},
        ),
        ("", {"entities": {"id": "E"}}, 400, {"error": "BadRequest", "description": "not a JSON array"}),
        (
            "",
            {"entities": [{"type": "T"}]},
            400,
            {"error": "BadRequest", "description": "nor /id/ nor /idPattern/ present"},
        ),
        (
            "",
            {"entities": [{"id": "E", "idPattern": "E"}]},
            400,
            {"error": "BadRequest", "description": "both /id/ and /idPattern/ present"},
        ),
        (
            "",
            {"entities": [{"id": "E(1)"}]},
            400,
            {"error": "BadRequest", "description": "Invalid characters in entity id"},
        ),
        (
            "",
            {"entities": [{"id": "E", "A": 1}]},
            400,
            {"error": "BadRequest", "description": "no attributes allowed in Entity in this payload"},
        ),
        (
            "",
            {"entities": [{"id": "E"}], "attrs": "A"},
            400,
            {"error": "BadRequest", "description": "the field /attrs/ must be a JSON array"},
        ),
        (
            "",
            {"entities": [{"id": "E"}], "attrs": [1]},
            400,
            {"error": "BadRequest", "description": "only JSON Strings allowed in attrs list"},
        ),
        (
            "",
            {"entities": [{"id": "E"}], "extra": 1},
            400,
            {"error": "BadRequest", "description": "Unrecognized field in JSON payload: /extra/"},
        ),
        (
            "?limit=1001",
            {"entities": [{"id": "E"}]},
            400,
            {"error": "BadRequest", "description": "Bad pagination limit: /1001/ [max: 1000]"},
        ),
        # rest.cpp uriArgumentGet (Orion 3.7 and later, telefonicaid/fiware-orion#1492): a limit of other than
        # the ASCII digits 0-9 is "[must be a positive integer number]", an offset "[must be a decimal number]"
        (
            "?limit=-3",
            {"entities": [{"id": "E"}]},
            400,
            {"error": "BadRequest", "description": "Bad pagination limit: /-3/ [must be a positive integer number]"},
        ),
        (
            "?limit=%EF%BC%93",  # a fullwidth 3: Python's isdigit() takes it, Orion's '0'..'9' test does not
            {"entities": [{"id": "E"}]},
            400,
            {
                "error": "BadRequest",
                "description": "Bad pagination limit: /\uff13/ [must be a positive integer number]",
            },
        ),
        (
            "?limit=%C2%B2",  # a superscript 2: isdigit() again, and int() cannot read it
            {"entities": [{"id": "E"}]},
            400,
            {
                "error": "BadRequest",
                "description": "Bad pagination limit: /\u00b2/ [must be a positive integer number]",
            },
        ),
        (
            "?offset=-1",
            {"entities": [{"id": "E"}]},
            400,
            {"error": "BadRequest", "description": "Bad pagination offset: /-1/ [must be a decimal number]"},
        ),
        (
            "?options=upsert,replaceAll",  # replaceAll is no option of Orion's (ConnectionInfo.cpp validOptions)
            {"entities": [{"id": "E"}]},
            400,
            {"error": "BadRequest", "description": "Invalid value for URI param /options/"},
        ),
        (
            "?options=keyValues,values",  # uriParamOptionsParse refuses the two together
            {"entities": [{"id": "E"}]},
            400,
            {"error": "BadRequest", "description": "Invalid value for URI param /options/"},
        ),
    ],
)
async def test_queries_orion_refuses(
    orion_double: OrionDouble, query: str, doc: Any, status: int, error: dict[str, str]
) -> None:
    assert (await post(orion_double, "/v2/op/query", doc, query=query))[:2] == (status, error)


async def test_a_limit_of_zero_is_an_empty_page_with_the_total_count(orion_double: OrionDouble) -> None:
    """Orion 3.7 and later take limit=0 (functional tests 1492_limit_zero/limit_zero_entities.test and
    limit_zero_simple_cases.test: 200, `[]`, Fiware-Total-Count with options=count)."""
    await seed(orion_double)
    selector = {"entities": [{"idPattern": "E"}]}
    assert (await post(orion_double, "/v2/op/query", selector, query="?limit=0"))[:2] == (200, [])
    status, doc, headers = await post(orion_double, "/v2/op/query", selector, query="?limit=0&options=count")
    assert (status, doc, headers["Fiware-Total-Count"]) == (200, [], "3")


async def test_a_command_registration_is_created_as_the_agents_send_it(orion_double: OrionDouble) -> None:
    registration = {
        "dataProvided": {"entities": [{"type": "Device", "id": "urn:ngsi-ld:Device:relays"}], "attrs": ["relay_3"]},
        "provider": {"http": {"url": "http://127.0.0.1:4041"}},
    }
    status, _, headers = await post(orion_double, "/v2/registrations", registration)
    assert status == 201
    location = headers["Location"]
    assert location.startswith("/v2/registrations/") and len(location.rsplit("/", 1)[1]) == 24
    [(key, stored)] = orion_double.registrations.items()
    assert (key[:2], stored) == (("edgegw", "/river"), registration)


@pytest.mark.parametrize(
    ("doc", "status", "description"),
    [
        ({}, 400, "empty payload"),
        ({"provider": {"http": {"url": "http://a:1"}}}, 400, "the field /dataProvided/ is missing in payload"),
        ({"dataProvided": {"entities": [{"id": "E"}]}}, 400, "the field /provider/ is missing in payload"),
        (
            {"dataProvided": {"entities": [{"id": "E"}]}, "provider": {"http": {}}},
            400,
            "/http/ must contain a field /url/",
        ),
        (
            {"dataProvided": {"entities": [{"idPattern": "E.*"}]}, "provider": {"http": {"url": "http://a:1"}}},
            501,
            "Unsupported idPattern",
        ),
        (
            {
                "dataProvided": {"entities": [{"id": "E"}]},
                "provider": {"http": {"url": "http://a:1"}},
                "status": "paused",
            },
            400,
            "invalid value for /status/",
        ),
    ],
)
async def test_registrations_orion_refuses(orion_double: OrionDouble, doc: Any, status: int, description: str) -> None:
    got, body, _ = await post(orion_double, "/v2/registrations", doc)
    assert (got, body["description"]) == (status, description)
    assert orion_double.registrations == {}
