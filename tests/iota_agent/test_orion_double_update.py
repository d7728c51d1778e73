"""The Orion double's `POST /v2/op/update` for every actionType, its URI params on every route, its
tolerances and its scripted refusals, held to Orion's answers.

Expected statuses and bodies from Orion 4's functional tests (test/functionalTest/cases/):
0000_update_error_responses/error_responses_09a_batch_update_replace.test, _09b_batch_update_update,
_09c_batch_update_delete, _09d_batch_update_append_strict; 1715_batch_update/batch_update_DELETE.test,
batch_update_DELETE_non_existing_attr.test, batch_update_REPLACE.test, batch_update_errors.test,
batch_update_error_entity_not_found.test; and from its source: src/lib/rest/rest.cpp (uriArgumentGet),
src/lib/rest/ConnectionInfo.cpp (validOptions), rest.cpp connectionTreat (413, the service paths and 415
before the URI params, 411 after them), src/lib/mongoBackend/location.cpp, src/lib/common/errorMessages.h; Orion-LD's
src/lib/orionld/mhd/mhdConnectionInit.cpp (optionsParse) and serviceRoutines/orionldPostBatchUpsert.cpp.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.orion_double import (
    GEOLOC_413,
    LD_UPSERT,
    TOKEN_PATH,
    V2_UPDATE,
    Arrival,
    OrionDouble,
    Refusal,
)
from tests.support.orion_rules import Tolerance

HEADERS = {"Content-Type": "application/json", "Fiware-Service": "edgegw", "Fiware-ServicePath": "/river"}
LD_HEADERS = {"Content-Type": "application/ld+json"}
CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"


async def post(
    orion: OrionDouble, path: str, doc: Any, *, query: str = "", headers: dict[str, str] = HEADERS
) -> tuple[int, Any]:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{orion.url}{path}{query}", data=body, headers=headers) as resp,
    ):
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if raw else None


def number(value: float, **metadata: Any) -> dict[str, Any]:
    attr: dict[str, Any] = {"type": "Number", "value": value}
    if metadata:
        attr["metadata"] = {k: {"type": "Text", "value": v} for k, v in metadata.items()}
    return attr


def entity(eid: str, etype: str = "T", **attrs: Any) -> dict[str, Any]:
    return {"id": eid, "type": etype, **attrs}


async def batch(orion: OrionDouble, action: str, *entities: dict[str, Any], query: str = "") -> tuple[int, Any]:
    return await post(orion, V2_UPDATE, {"actionType": action, "entities": list(entities)}, query=query)


def stored(orion: OrionDouble, eid: str) -> dict[str, Any] | None:
    return orion.entities.get(("edgegw", "/river", eid))


def not_found(description: str) -> tuple[int, Any]:
    return 404, {"error": "NotFound", "description": description}


def unprocessable(description: str, error: str = "Unprocessable") -> tuple[int, Any]:
    return 422, {"error": error, "description": description}


@pytest.mark.parametrize("action", ["update", "replace", "delete"])
async def test_update_replace_and_delete_of_missing_entities_are_404(orion_double: OrionDouble, action: str) -> None:
    got = await batch(orion_double, action, entity("F", A=number(1)), entity("G", A=number(1)))
    # fillOrAppend: the first entity's words, then ", <id>/<type> [entity itself]" for each other
    assert got == not_found("do not exist: F/T - [entity itself], G/T [entity itself]")
    assert await batch(orion_double, action, entity("E")) == not_found("do not exist: E/T - [entity itself]")
    assert orion_double.entities == {}
    assert orion_double.update_count == 0


async def test_an_entity_of_another_type_is_not_found(orion_double: OrionDouble) -> None:
    assert await batch(orion_double, "append", entity("E", "T", A=number(1))) == (204, None)
    assert await batch(orion_double, "update", entity("E", "T2", A=number(2))) == not_found(
        "do not exist: E/T2 - [entity itself]"
    )
    assert stored(orion_double, "E") == entity("E", A=number(1))


async def test_update_refuses_missing_attributes_and_a_partial_success_is_partial_update(
    orion_double: OrionDouble,
) -> None:
    assert await batch(orion_double, "append", entity("E", A=number(1), B=number(1))) == (204, None)
    got = await batch(orion_double, "update", entity("E", C=number(1), D=number(1)), entity("G", A=number(1)))
    assert got == unprocessable("do not exist: E/T - [ C, D ], G/T [entity itself]")
    got = await batch(orion_double, "update", entity("E", A=number(7), D=number(1)), entity("G", A=number(1)))
    assert got == unprocessable("do not exist: E/T - [ D ], G/T [entity itself]", "PartialUpdate")
    # what existed was updated, what did not was not created
    assert stored(orion_double, "E") == entity("E", A=number(7), B=number(1))


async def test_update_keeps_the_metadata_it_leaves_out(orion_double: OrionDouble) -> None:
    assert await batch(orion_double, "append", entity("E", A=number(1, unitCode="MTR", quality="ok"))) == (204, None)
    assert await batch(orion_double, "update", entity("E", A=number(2, quality="suspect"))) == (204, None)
    assert stored(orion_double, "E") == entity("E", A=number(2, unitCode="MTR", quality="suspect"))


async def test_append_strict_refuses_existing_attributes_and_appends_the_rest(orion_double: OrionDouble) -> None:
    assert await batch(orion_double, "appendStrict", entity("E1", A=number(1), B=number(1))) == (204, None)
    assert await batch(orion_double, "append", entity("E2", A=number(1), B=number(1))) == (204, None)
    got = await batch(
        orion_double,
        "appendStrict",
        entity("E1", A=number(2), B=number(2)),
        entity("E2", A=number(2), B=number(2)),
    )
    intro = "one or more of the attributes in the request already exist: "
    assert got == unprocessable(f"{intro}E1/T - [ A, B ], E2/T - [ A, B ]")
    got = await batch(
        orion_double,
        "appendStrict",
        entity("E1", C=number(3), D=number(3)),
        entity("E2", A=number(3), C=number(3)),
    )
    assert got == unprocessable(f"{intro}E2/T - [ A ]", "PartialUpdate")
    assert stored(orion_double, "E1") == entity("E1", A=number(1), B=number(1), C=number(3), D=number(3))
    assert stored(orion_double, "E2") == entity("E2", A=number(1), B=number(1), C=number(3))


async def test_delete_removes_attributes_and_entities(orion_double: OrionDouble) -> None:
    three = [entity(f"E{i}", A1=number(i * 10 + 1), A2=number(i * 10 + 2)) for i in (1, 3)]
    three.insert(1, entity("E2", A1=number(21), A3=number(23)))
    assert await batch(orion_double, "append", *three) == (204, None)
    gone = {"type": "Number", "value": None}
    got = await batch(orion_double, "delete", entity("E1", A2=gone), entity("E2", A2=gone), entity("E3", A2=gone))
    assert got == unprocessable("do not exist: E2/T - [ A2 ]", "PartialUpdate")
    assert [stored(orion_double, e) for e in ("E1", "E2", "E3")] == [
        entity("E1", A1=number(11)),
        entity("E2", A1=number(21), A3=number(23)),
        entity("E3", A1=number(31)),
    ]
    assert await batch(orion_double, "delete", entity("E1")) == (204, None)
    assert stored(orion_double, "E1") is None
    assert await batch(orion_double, "delete", entity("E1")) == not_found("do not exist: E1/T - [entity itself]")


async def test_replace_swaps_every_attribute_and_their_metadata(orion_double: OrionDouble) -> None:
    assert await batch(orion_double, "append", entity("E", A1=number(1, unitCode="MTR"))) == (204, None)
    assert await batch(orion_double, "replace", entity("E", A2=number(3))) == (204, None)
    assert stored(orion_double, "E") == entity("E", A2=number(3))


async def test_a_batch_is_applied_in_order_so_an_entity_may_repeat(orion_double: OrionDouble) -> None:
    got = await batch(
        orion_double,
        "appendStrict",
        entity("E", A=number(1)),
        entity("E", B=number(2)),
        entity("E", A=number(3)),
    )
    assert got == unprocessable(
        "one or more of the attributes in the request already exist: E/T - [ A ]", "PartialUpdate"
    )
    assert stored(orion_double, "E") == entity("E", A=number(1), B=number(2))


LOCATION = {"type": "geo:json", "value": {"type": "Point", "coordinates": [130.7, 32.2]}}


async def test_a_second_location_appended_later_is_413_and_an_update_moves_it(orion_double: OrionDouble) -> None:
    assert await batch(orion_double, "append", entity("E", location=LOCATION)) == (204, None)
    got = await batch(orion_double, "append", entity("E", where=LOCATION, A=number(1)))
    assert got == (413, {"error": "NoResourcesAvailable", "description": GEOLOC_413})
    # Orion 3.6 and later (errors_general.test); "[see Orion user manual]" ended the older one
    assert GEOLOC_413 == (
        "You cannot use more than one geo location attribute when creating an entity. Use ignoreType metadata if "
        "you want to add additional informative locations."
    )
    assert stored(orion_double, "E") == entity("E", location=LOCATION)  # nothing of that entity written
    informative = {**LOCATION, "metadata": {"ignoreType": {"type": "Boolean", "value": True}}}
    assert await batch(orion_double, "append", entity("E", where=informative)) == (204, None)
    # the stored ignoreType holds while a request names none; an update (unlike an append) then moves the
    # location to the attribute it makes one, and `location` may no longer be one
    assert await batch(orion_double, "update", entity("E", where=LOCATION)) == (204, None)
    located = {**LOCATION, "metadata": {"ignoreType": {"type": "Boolean", "value": False}}}
    assert await batch(orion_double, "update", entity("E", where=located)) == (204, None)
    assert await batch(orion_double, "append", entity("E", location=LOCATION)) == (413, got[1])


@pytest.mark.parametrize(
    ("doc", "status", "error"),
    [
        ({}, 400, {"error": "BadRequest", "description": "empty payload"}),
        (
            {"actionType": "update", "entities": [entity("E")], "foo": 6},
            400,
            {"error": "BadRequest", "description": "Unrecognized field in JSON payload: /foo/"},
        ),
        (
            {"actionType": "update", "entities": [{"type": "T"}]},
            400,
            {"error": "BadRequest", "description": "nor /id/ nor /idPattern/ present"},
        ),
        (
            {"actionType": "update", "entities": [{"idPattern": "E.*", "type": "T", "A": number(1)}]},
            501,
            {
                "error": "NotImplemented",
                "description": "the Orion double does not implement idPattern in POST /v2/op/update",
            },
        ),
    ],
)
async def test_batches_orion_refuses_or_the_double_does_not_implement(
    orion_double: OrionDouble, doc: Any, status: int, error: dict[str, str]
) -> None:
    assert await post(orion_double, V2_UPDATE, doc) == (status, error)


async def test_what_the_double_cannot_hold_is_501_before_anything_is_written(orion_double: OrionDouble) -> None:
    assert await batch(orion_double, "append", entity("E", "T", location=LOCATION)) == (204, None)
    # Orion would create a second entity E (of type T2); the double keeps one per id
    status, error = await batch(orion_double, "append", entity("F", A=number(1)), entity("E", "T2", A=number(1)))
    assert (status, error["error"]) == (501, "NotImplemented")
    assert error["description"] == "the Orion double keeps one entity per id in a service path: E is a T, got type T2"
    status, error = await batch(orion_double, "delete", entity("E", location=LOCATION))
    assert (status, error["error"]) == (501, "NotImplemented")
    assert [key[2] for key in orion_double.entities] == ["E"]
    status, error = await post(orion_double, "/v2/entities", entity("E", "T2"), query="?options=upsert")
    assert (status, error["error"]) == (501, "NotImplemented")


INVALID_OPTIONS = {"error": "BadRequest", "description": "Invalid value for URI param /options/"}


@pytest.mark.parametrize(
    ("path", "doc"),
    [
        (V2_UPDATE, {"actionType": "append", "entities": [entity("E", A=number(1))]}),
        ("/v2/entities", entity("E", A=number(1))),
        ("/v2/op/query", {"entities": [{"id": "E"}]}),
        (
            "/v2/registrations",
            {"dataProvided": {"entities": [{"id": "E"}]}, "provider": {"http": {"url": "http://a:1"}}},
        ),
    ],
)
async def test_every_v2_route_checks_its_uri_params_as_orion_does(
    orion_double: OrionDouble, path: str, doc: dict[str, Any]
) -> None:
    for query in ("?options=bogus", "?options=upsert,", "?options=count,,upsert", "?options=keyValues,unique"):
        assert await post(orion_double, path, doc, query=query) == (400, INVALID_OPTIONS), query
    assert await post(orion_double, path, doc, query="?options=") == (
        400,
        {"error": "BadRequest", "description": "Empty right-hand-side for URI param /options/"},
    )
    assert await post(orion_double, path, doc, query="?foo=a(b") == (
        400,
        {"error": "BadRequest", "description": "invalid character in URI parameter"},
    )
    assert orion_double.entities == {}
    assert orion_double.registrations == {}
    # one of Orion's options this route does not read is ignored, as Orion ignores it
    assert (await post(orion_double, path, doc, query="?options=noAttrDetail"))[0] < 300


def bad_request(description: str) -> tuple[int, Any]:
    return 400, {"error": "BadRequest", "description": description}


@pytest.mark.parametrize(
    ("path", "doc"),
    [
        (V2_UPDATE, {"actionType": "append", "entities": [entity("E", A=number(1))]}),
        ("/v2/entities", entity("E", A=number(1))),
        (
            "/v2/registrations",
            {"dataProvided": {"entities": [{"id": "E"}]}, "provider": {"http": {"url": "http://a:1"}}},
        ),
    ],
)
async def test_every_v2_route_checks_limit_and_offset_as_orion_does(
    orion_double: OrionDouble, path: str, doc: dict[str, Any]
) -> None:
    """uriArgumentGet() in rest.cpp checks the pagination params of every request, not only of queries, with
    Orion 3.7's texts; it returns before its forbidden-character check, and the last param in error wins."""
    limit_abc = bad_request("Bad pagination limit: /abc/ [must be a positive integer number]")
    assert await post(orion_double, path, doc, query="?limit=abc") == limit_abc
    assert await post(orion_double, path, doc, query="?limit=1001") == bad_request(
        "Bad pagination limit: /1001/ [max: 1000]"
    )
    assert await post(orion_double, path, doc, query="?offset=1.5") == bad_request(
        "Bad pagination offset: /1.5/ [must be a decimal number]"
    )
    assert await post(orion_double, path, doc, query="?limit=a(b") == bad_request(
        "Bad pagination limit: /a(b/ [must be a positive integer number]"
    )
    assert await post(orion_double, path, doc, query="?options=bogus&limit=abc") == limit_abc
    assert await post(orion_double, path, doc, query="?limit=abc&options=bogus") == (400, INVALID_OPTIONS)
    assert orion_double.entities == {}
    assert orion_double.registrations == {}
    assert (await post(orion_double, path, doc, query="?limit=0&offset=0"))[0] < 300


@pytest.mark.parametrize(
    ("path", "doc", "option"),
    [
        (V2_UPDATE, {"actionType": "append", "entities": [entity("E", A=number(1))]}, "keyValues"),
        (V2_UPDATE, {"actionType": "append", "entities": [entity("E", A=number(1))]}, "overrideMetadata"),
        ("/v2/entities", entity("E", A=number(1)), "overrideMetadata"),
        ("/v2/op/query", {"entities": [{"id": "E"}]}, "values"),
    ],
)
async def test_options_that_change_the_answer_and_the_double_does_not_implement_are_501(
    orion_double: OrionDouble, path: str, doc: dict[str, Any], option: str
) -> None:
    status, error = await post(orion_double, path, doc, query=f"?options={option}")
    assert (status, error["error"]) == (501, "NotImplemented")
    assert error["description"].startswith(f"the Orion double does not implement options={option} on POST ")
    assert orion_double.entities == {}


def ld_entity(eid: str, **attrs: Any) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:T:{eid}", "type": "T", **attrs, "@context": CONTEXT}


async def test_an_ld_upsert_replaces_unless_told_to_update_and_checks_its_options(orion_double: OrionDouble) -> None:
    a = {"type": "Property", "value": 1}
    b = {"type": "Property", "value": 2}
    assert await post(orion_double, LD_UPSERT, [ld_entity("e", a=a)], headers=LD_HEADERS) == (201, ["urn:ngsi-ld:T:e"])
    assert await post(orion_double, LD_UPSERT, [ld_entity("e", b=b)], query="?options=update", headers=LD_HEADERS) == (
        204,
        None,
    )
    held = orion_double.ld_entities[("", "urn:ngsi-ld:T:e")]
    assert (held.get("a"), held.get("b")) == (a, b)
    assert await post(orion_double, LD_UPSERT, [ld_entity("e", b=b)], headers=LD_HEADERS) == (204, None)
    held = orion_double.ld_entities[("", "urn:ngsi-ld:T:e")]
    assert (held.get("a"), held.get("b")) == (None, b)  # replace, the default, overwrote the entity
    status, problem = await post(orion_double, LD_UPSERT, [ld_entity("e")], query="?options=bogus", headers=LD_HEADERS)
    assert (status, problem["title"], problem["detail"]) == (400, "Invalid value for URI param /options/", "bogus")
    status, problem = await post(
        orion_double, LD_UPSERT, [ld_entity("e")], query="?options=update,replace", headers=LD_HEADERS
    )
    assert (status, problem["detail"]) == (400, "options: both /update/ and /replace/ present")
    status, problem = await post(
        orion_double, LD_UPSERT, [ld_entity("e")], query="?options=noOverwrite", headers=LD_HEADERS
    )
    assert status == 501


MISTYPED = entity("E", n={"type": "Text", "value": 5})  # what an IoT Agent sends for an unprovisioned measure


async def test_the_default_double_holds_the_gateway_to_its_promise_of_typed_values(orion_double: OrionDouble) -> None:
    status, error = await batch(orion_double, "append", MISTYPED)
    assert (status, error["error"]) == (400, "BadRequest")
    status, error = await post(orion_double, "/v2/entities", MISTYPED, query="?options=upsert")
    assert (status, error["error"]) == (400, "BadRequest")


@pytest.mark.parametrize(
    ("bad", "status"),
    [
        (entity("E", n={"type": "Text", "value": "人吉(水の手橋)"}), 400),  # forbidden characters
        (entity("E" * 257, n={"type": "Text", "value": 5}), 400),  # id length
        (entity("E", a=LOCATION, b=LOCATION), 413),  # two locations
        ({"id": "E", "n": {"type": "Text", "value": 5}}, 400),  # strict still: an entity type is sent
    ],
)
async def test_tolerating_mistyped_values_keeps_every_other_rule(bad: dict[str, Any], status: int) -> None:
    async with OrionDouble(tolerate={Tolerance.MISTYPED_VALUES}) as orion:
        assert await batch(orion, "append", MISTYPED) == (204, None)
        assert stored(orion, "E") == MISTYPED
        assert (await batch(orion, "append", bad))[0] == status
        assert (await post(orion, "/v2/entities", bad, query="?options=upsert"))[0] == status
        assert await post(orion, "/v2/entities", entity("F", n={"type": "Text", "value": True})) == (201, None)


async def test_scripted_refusals_echo_the_request_and_the_rest_still_meets_the_rules(orion_double: OrionDouble) -> None:
    seen: list[Arrival] = []

    def refuse_first(arrival: Arrival) -> Refusal | None:
        seen.append(arrival)
        if len(seen) > 1:
            return None
        return Refusal(status=500, body=f"<pre>{arrival.headers['Fiware-Service']}</pre>", content_type="text/html")

    orion_double.refuse_with(refuse_first)
    doc = {"actionType": "append", "entities": [entity("E", A=number(1))]}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{orion_double.url}{V2_UPDATE}", data=orjson.dumps(doc), headers=HEADERS) as resp:
            assert (resp.status, resp.content_type, await resp.text()) == (500, "text/html", "<pre>edgegw</pre>")
        plain = {**HEADERS, "Content-Type": "text/plain"}
        async with http.post(f"{orion_double.url}{V2_UPDATE}", data=orjson.dumps(doc), headers=plain) as resp:
            assert resp.status == 415  # what the hook let through met the rules
    assert [r.status for r in orion_double.requests] == [500, 415]
    assert seen[0].body == orjson.dumps(doc) and seen[0].path == V2_UPDATE
    assert orion_double.entities == {}
    with pytest.raises(ValueError, match=r"^Refusal: a status of 400 or more, got 204; successes come from the rules$"):
        Refusal(status=204, body=b"")


async def test_tokens_for_two_clients(orion_double: OrionDouble) -> None:
    orion_double.require_oauth("gw-a", "secret-a")
    orion_double.require_oauth("gw-b", "secret-b")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as http:
        for client, secret, status in (("gw-a", "secret-a", 200), ("gw-b", "secret-b", 200), ("gw-b", "secret-a", 401)):
            data = f"grant_type=client_credentials&client_id={client}&client_secret={secret}"
            async with http.post(f"{orion_double.url}{TOKEN_PATH}", data=data, headers=form) as resp:
                assert resp.status == status, client
    assert orion_double.token_fetches == 2


V2_ROUTES = [
    (V2_UPDATE, {"actionType": "append", "entities": [entity("E", A=number(1))]}),
    ("/v2/entities", entity("E", A=number(1))),
    ("/v2/op/query", {"entities": [{"id": "E"}]}),
    ("/v2/registrations", {"dataProvided": {"entities": [{"id": "E"}]}, "provider": {"http": {"url": "http://a:1"}}}),
]
NO_CONTENT_TYPE = "Content-Type header not used, default application/octet-stream is not supported"


async def raw_post(orion: OrionDouble, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, Any]:
    """Status, reason phrase and body of a POST sent with exactly `headers` (no Content-Type added by aiohttp)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{orion.url}{path}", data=body, headers=headers, skip_auto_headers=["Content-Type"]) as resp,
    ):
        raw = await resp.read()
        return resp.status, resp.reason or "", orjson.loads(raw) if raw else None


@pytest.mark.parametrize(("path", "doc"), V2_ROUTES)
async def test_the_content_type_is_checked_before_the_uri_params_as_orion_does(
    orion_double: OrionDouble, path: str, doc: dict[str, Any]
) -> None:
    """rest.cpp answers contentTypeCheck() before the error uriArgumentGet() kept for a URI param."""
    body = orjson.dumps(doc)
    tenant = {k: v for k, v in HEADERS.items() if k != "Content-Type"}
    for query in ("?options=bogus", "?limit=abc", "?foo=a(b"):
        for headers, description in (
            (tenant, NO_CONTENT_TYPE),
            ({**tenant, "Content-Type": "application/xml"}, "not supported content type: application/xml"),
            # cut at its ";" and compared as it is, as Orion does
            (
                {**tenant, "Content-Type": "Application/JSON; charset=utf-8"},
                "not supported content type: Application/JSON",
            ),
        ):
            assert await raw_post(orion_double, path + query, body, headers) == (
                415,
                "Unsupported Media Type",
                {"error": "UnsupportedMediaType", "description": description},
            ), (query, headers.get("Content-Type"))
    assert orion_double.entities == {}
    assert orion_double.registrations == {}


@pytest.mark.parametrize(("path", "doc"), V2_ROUTES)
async def test_text_plain_and_an_empty_post_get_to_the_uri_params_first(
    orion_double: OrionDouble, path: str, doc: dict[str, Any]
) -> None:
    """text/plain passes Orion's HTTP layer (its service refuses it later) and a POST without a payload is 411
    only after the URI params (the last check of connectionTreat)."""
    plain = {**HEADERS, "Content-Type": "text/plain"}
    assert (await raw_post(orion_double, f"{path}?options=bogus", orjson.dumps(doc), plain))[::2] == (
        400,
        INVALID_OPTIONS,
    )
    assert (await raw_post(orion_double, path, orjson.dumps(doc), plain))[::2] == (
        415,
        {"error": "UnsupportedMediaType", "description": "not supported content type: text/plain"},
    )
    assert (await raw_post(orion_double, f"{path}?options=bogus", b"", HEADERS))[::2] == (400, INVALID_OPTIONS)
    assert (await raw_post(orion_double, path, b"", HEADERS))[::2] == (
        411,
        {"error": "ContentLengthRequired", "description": "Zero/No Content-Length in PUT/POST/PATCH request"},
    )


async def test_a_body_over_the_limit_is_413_before_anything_else_with_orions_reason_phrase() -> None:
    async with OrionDouble(max_body=1024) as orion:
        body = b"x" * 1025
        for headers in (HEADERS, {"Content-Type": "application/xml"}):
            assert await raw_post(orion, f"{V2_UPDATE}?options=bogus", body, headers) == (
                413,
                "Content Too Large",  # Orion 3.9 and later (3492_request_larger_than_1MB.test)
                {"error": "RequestEntityTooLarge", "description": "payload size: 1025, max size supported: 1024"},
            )


async def test_a_partial_update_has_orions_reason_phrase(orion_double: OrionDouble) -> None:
    assert await batch(orion_double, "append", entity("E", A=number(1))) == (204, None)
    doc = orjson.dumps({"actionType": "update", "entities": [entity("E", A=number(2), B=number(3))]})
    status, reason, error = await raw_post(orion_double, V2_UPDATE, doc, HEADERS)
    assert (status, reason, error["error"]) == (422, "Unprocessable Content", "PartialUpdate")


@pytest.mark.parametrize(("path", "doc"), V2_ROUTES)
async def test_the_service_path_is_checked_before_the_content_type_as_orion_does(
    orion_double: OrionDouble, path: str, doc: dict[str, Any]
) -> None:
    """connectionTreat() runs servicePathSplit() before contentTypeCheck() (rest.cpp)."""
    headers = {**HEADERS, "Fiware-ServicePath": "river", "Content-Type": "application/xml"}
    assert await raw_post(orion_double, path, orjson.dumps(doc), headers) == (
        400,
        "Bad Request",
        {
            "error": "BadRequest",
            "description": "Only /absolute/ Service Paths allowed [a service path must begin with /]",
        },
    )
    headers = {**HEADERS, "Fiware-ServicePath": "/river/a.b"}
    assert (await raw_post(orion_double, f"{path}?options=bogus", b"", headers))[::2] == (
        400,
        {"error": "BadRequest", "description": "a component of ServicePath contains an illegal character"},
    )


async def test_two_locations_in_a_new_entity_get_orion_4s_text_as_a_second_one_appended_does(
    orion_double: OrionDouble,
) -> None:
    # the rules refuse this one before the store sees it, with the text of the store's own 413 above
    got = await batch(orion_double, "append", entity("E", location=LOCATION, where=LOCATION))
    assert got == (413, {"error": "NoResourcesAvailable", "description": GEOLOC_413})
    assert stored(orion_double, "E") is None
