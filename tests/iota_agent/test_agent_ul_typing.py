"""UltraLight values keep their type through the real IoT Agent UltraLight, or are refused at the gateway.

The agent JSON.parses every UL value (lib/ulParser.js addAttributePair): numbers and booleans must
arrive as such, a text that is valid JSON (`8600000`, `0.10`) would arrive as a number, so the gateway
refuses it with the reason and the fix, and any other text arrives unchanged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Reading, Source
from gateway.uplinks.api import Status
from tests.iota_agent.conftest import APIKEY, make_uplink, wait_for
from tests.support.iot_agent import UL, StartAgent
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble
from tests.uplinks_mqtt.conftest import T0

pytestmark = pytest.mark.e2e

METER = "urn:ngsi-ld:Meter:m1"


def meter(seq: int, **values: Any) -> Reading:
    return Reading(
        entity_id=METER,
        entity_type="Meter",
        attributes={k: Attribute(value=v) for k, v in values.items()},
        observed_at=T0 + timedelta(seconds=seq),
        source=Source(adapter="meters"),
        seq=seq,
    )


async def test_numbers_stay_numbers_json_looking_text_is_refused_other_text_arrives_unchanged(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent, context: AdapterContext
) -> None:
    agent = await start_iot_agent(UL, broker=mosquitto_private, orion_url=orion_double.url)
    await agent.provision_group(
        APIKEY,
        entity_type="Meter",
        entityNameExp="id",
        attributes=[
            {"object_id": "count", "name": "count", "type": "Number"},
            {"object_id": "ratio", "name": "ratio", "type": "Number"},
            {"object_id": "serial", "name": "serial", "type": "Text"},
            {"object_id": "place", "name": "place", "type": "Text"},
        ],
    )
    up = make_uplink(mosquitto_private, context, format="iota-ul")
    batch = [
        meter(1, count=8600000, ratio=0.1),
        meter(2, serial="8600000"),  # a serial number that looks like a number
        meter(3, ratio=0.25, serial="0.10"),
        meter(4, place="人吉 水の手橋", serial="SN-8600000"),
    ]
    try:
        outcomes = await up.deliver(batch)
        await wait_for(lambda: len(orion_double.written) >= 2, 15, "the agent to write the readings")
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED, Status.REJECTED, Status.REJECTED, Status.DELIVERED]
    assert outcomes[1].reason == (
        "urn:ngsi-ld:Meter:m1.serial: the UltraLight agent reads a text that is valid JSON as JSON and would store "
        "the number 8600000 instead, got '8600000'; use format = \"iota-json\" for this attribute"
    )
    assert outcomes[2].reason.endswith(
        "would store the number 0.1 instead, got '0.10'; use format = \"iota-json\" for this attribute"
    )
    first, last = orion_double.written
    assert (first["count"]["value"], first["ratio"]["value"]) == (8600000, 0.1)
    assert (last["place"]["value"], last["serial"]["value"]) == ("人吉 水の手橋", "SN-8600000")
    assert [e["TimeInstant"]["value"] for e in orion_double.written] == [
        "2024-06-01T03:00:01.000Z",
        "2024-06-01T03:00:04.000Z",
    ]
