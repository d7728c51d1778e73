"""The Orion double's `POST /v2/entities[?options=upsert]`, the request the IoT Agent library sends for a single measure."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from tests.support.orion_double import OrionDouble

HEADERS = {"Content-Type": "application/json", "Fiware-Service": "edgegw", "Fiware-ServicePath": "/river"}
T1 = "2024-06-01T03:00:00.000Z"
T2 = "2024-06-01T03:01:00.000Z"


def entity(level: Any, at: str, **extra: Any) -> dict[str, Any]:
    """What iotagent-node-lib 4.14 sends with `timestamp: true` and a provisioned Number attribute."""
    stamp = {"TimeInstant": {"type": "DateTime", "value": at}}
    return {
        "id": "urn:ngsi-ld:WaterObserved:g1",
        "type": "WaterObserved",
        "waterLevel": {"type": "Number", "value": level, "metadata": stamp},
        "TimeInstant": {"type": "DateTime", "value": at},
        **extra,
    }


async def post(
    orion: OrionDouble, doc: Any, query: str = "?options=upsert", headers: dict[str, str] = HEADERS
) -> tuple[int, bytes, str | None]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{orion.url}/v2/entities{query}", data=orjson.dumps(doc), headers=headers) as resp,
    ):
        return resp.status, await resp.read(), resp.headers.get("Location")


async def test_upsert_answers_204_when_creating_and_when_updating() -> None:
    async with OrionDouble() as orion:
        assert await post(orion, entity(1.25, T1)) == (204, b"", None)
        assert await post(orion, entity(1.5, T2)) == (204, b"", None)
        stored = orion.entities[("edgegw", "/river", "urn:ngsi-ld:WaterObserved:g1")]
        assert stored["waterLevel"]["value"] == 1.5
        assert stored["waterLevel"]["metadata"]["TimeInstant"]["value"] == T2
        assert stored["TimeInstant"]["value"] == T2
        assert orion.arrivals == ["urn:ngsi-ld:WaterObserved:g1", "urn:ngsi-ld:WaterObserved:g1"]
        assert [r.query for r in orion.requests_to("/v2/entities")] == ["options=upsert", "options=upsert"]


async def test_create_without_upsert_answers_201_then_422_already_exists() -> None:
    async with OrionDouble() as orion:
        assert await post(orion, entity(1.25, T1), query="") == (
            201,
            b"",
            "/v2/entities/urn:ngsi-ld:WaterObserved:g1?type=WaterObserved",
        )
        status, body, _ = await post(orion, entity(1.5, T2), query="")
        assert (status, orjson.loads(body)) == (422, {"error": "Unprocessable", "description": "Already Exists"})
        assert orion.entities[("edgegw", "/river", "urn:ngsi-ld:WaterObserved:g1")]["waterLevel"]["value"] == 1.25


async def test_upsert_validates_like_a_batch_and_writes_nothing_when_refused() -> None:
    async with OrionDouble() as orion:
        bad_value = entity(1.25, T1, stationName={"type": "Text", "value": "人吉(水の手橋)"})
        status, body, _ = await post(orion, bad_value)
        assert (status, orjson.loads(body)) == (
            400,
            {"error": "BadRequest", "description": "Invalid characters in attribute value"},
        )
        status, body, _ = await post(orion, entity(1.25, T1), query="?options=upsert,replaceAll")
        assert (status, orjson.loads(body)) == (
            400,
            {"error": "BadRequest", "description": "Invalid value for URI param /options/"},
        )
        status, body, _ = await post(orion, entity(1.25, T1), headers={**HEADERS, "Fiware-ServicePath": "/river-1"})
        assert status == 400
        status, body, _ = await post(orion, entity(1.25, T1), headers={"Content-Type": "text/plain"})
        assert status == 415
        assert orion.entities == {}
        assert orion.update_count == 0
        assert [r.status for r in orion.requests_to("/v2/entities")] == [400, 400, 400, 415]


async def test_japanese_and_percent_encoded_text_pass() -> None:
    async with OrionDouble() as orion:
        doc = entity(1.25, T1, stationName={"type": "Text", "value": "人吉%28水の手橋%29"})
        assert (await post(orion, doc))[0] == 204
        stored = orion.entities[("edgegw", "/river", "urn:ngsi-ld:WaterObserved:g1")]
        assert stored["stationName"]["value"] == "人吉%28水の手橋%29"
