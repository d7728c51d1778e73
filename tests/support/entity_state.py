"""Readings into the Orion double as the orion uplink sends them, and back out as the state Orion keeps.

`append` checks each reading as the gateway does before storing it, renders it with the NGSI v2
converter and posts one `POST /v2/op/update` (`append`) to the double; `stored` is the entity as
Orion holds it afterwards (its append semantics: attributes replaced, metadata merged), and
`key_values` its `?options=keyValues` form, which the Smart Data Models' JSON schemas describe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from gateway.ngsi.check import check_reading
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.records import Reading
from tests.support.orion_double import V2_UPDATE, OrionDouble

SERVICE, SERVICE_PATH = "edgegw", "/sdm"
HEADERS = {"Content-Type": "application/json", "Fiware-Service": SERVICE, "Fiware-ServicePath": SERVICE_PATH}


async def append(
    orion: OrionDouble, readings: Sequence[Reading], encoding: ValueEncoding = ValueEncoding.PERCENT
) -> None:
    """One batch update with `readings`, in order; fails the test unless Orion (the double) answers 204."""
    for reading in readings:
        check_reading(reading, encoding=encoding)
    body = v2_update_body([orjson.dumps(to_v2_entity(r, encoding=encoding)) for r in readings])
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{orion.url}{V2_UPDATE}", data=body, headers=HEADERS) as resp,
    ):
        assert resp.status == 204, f"{resp.status} {await resp.text()}"


def stored(orion: OrionDouble, entity_id: str) -> dict[str, Any]:
    """The entity as Orion holds it now (normalized)."""
    return orion.entities[(SERVICE, SERVICE_PATH, entity_id)]


def all_stored(orion: OrionDouble) -> list[dict[str, Any]]:
    return [e for (service, path, _), e in orion.entities.items() if (service, path) == (SERVICE, SERVICE_PATH)]


def key_values(entity: dict[str, Any]) -> dict[str, Any]:
    """`?options=keyValues`: id, type and each attribute's value, without types and metadata."""
    return {
        "id": entity["id"],
        "type": entity["type"],
        **{name: attr["value"] for name, attr in entity.items() if name not in ("id", "type")},
    }
