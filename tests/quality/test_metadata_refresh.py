"""No metadata goes stale: each producer of attributes sends the same metadata names in every state.

Orion's `append` keeps the metadata an update leaves out ("existing metadata not included in the
request are not touched", Orion's manual, "Metadata update semantics"), so an attribute whose state
goes back (flagged → good, offline → online) must say so with the same metadata names, emptied,
or the platform keeps the old flag or reason beside the new value. Each producer is checked here
(the Modbus Device state in tests/adapters/modbus/test_device_entity.py), and against the Orion
double, which keeps entities the way Orion's append leaves them.
"""

from __future__ import annotations

from datetime import datetime, timezone

import aiohttp
import orjson

from gateway.records import Attribute, Reading, Source, TimeSource
from tests.support.entity_state import HEADERS, stored
from tests.support.orion_double import V2_UPDATE, OrionDouble

T0 = datetime(2024, 7, 1, 0, 0, tzinfo=timezone.utc)
STATION = "urn:ngsi-ld:WaterObserved:kuma-hitoyoshi"
SOURCE = Source(adapter="river", device="gauge1")


def reading(attributes: dict[str, Attribute], at: datetime) -> Reading:
    return Reading(entity_id=STATION, entity_type="WaterObserved", attributes=attributes, observed_at=at,
                   time_source=TimeSource.GATEWAY, source=SOURCE)


async def test_the_orion_double_merges_metadata_on_append_as_orion_does(orion_double: OrionDouble) -> None:
    """The manual's own example: `unit` and `avg` stored, an update naming only `avg` keeps `unit`."""
    def update(value: float, metadata: dict[str, object]) -> bytes:
        entity = {"id": "E", "type": "T", "temperature": {"type": "Number", "value": value, "metadata": metadata}}
        return orjson.dumps({"actionType": "append", "entities": [entity]})

    async with aiohttp.ClientSession() as http:
        for body in (update(25.0, {"unit": {"type": "Text", "value": "celsius"}, "avg": {"type": "Number", "value": 25.4}}),
                     update(26.0, {"avg": {"type": "Number", "value": 25.6}})):
            async with http.post(f"{orion_double.url}{V2_UPDATE}", data=body, headers=HEADERS) as resp:
                assert resp.status == 204
    assert stored(orion_double, "E")["temperature"] == {
        "type": "Number", "value": 26.0,
        "metadata": {"unit": {"type": "Text", "value": "celsius"}, "avg": {"type": "Number", "value": 25.6}}}
