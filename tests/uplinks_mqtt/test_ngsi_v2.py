"""The ngsi-v2 format: a JSON envelope per entity type with the gateway id and the sequence numbers."""

from __future__ import annotations

import orjson

from gateway.adapter_api import AdapterContext
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.v2 import to_v2_entity
from gateway.uplinks.api import Status
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from tests.support.mosquitto import MosquittoBroker
from tests.uplinks_mqtt.conftest import reading, subscribe


def uplink(broker: MosquittoBroker, context: AdapterContext, **extra: object) -> MqttUplink:
    return MqttUplink(
        MqttUplinkConfig.model_validate(
            {"name": "v2", "type": "mqtt", "host": broker.host, "port": broker.port, "format": "ngsi-v2", **extra}
        ),
        context,
    )


async def test_envelope_per_entity_type_in_batch_order(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    batch = [
        reading("urn:ngsi-ld:WaterObserved:g1", at=5, seq=41, waterLevel=1.5),
        reading("urn:ngsi-ld:WeatherObserved:w1", at=0, seq=42, entity_type="WeatherObserved", temperature=21.5),
        reading("urn:ngsi-ld:WaterObserved:g2", at=0, seq=43, waterLevel=0.5, station="人吉(水の手橋)"),
    ]
    up = uplink(mosquitto_private, context)
    async with subscribe(mosquitto_private, "edgegw/gw-kumamoto-01/entities/#") as sub:
        outcomes = await up.deliver(batch)
        got = await sub.wait(2)
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 3
    by_topic = {m.topic: m for m in got}
    water = by_topic["edgegw/gw-kumamoto-01/entities/WaterObserved"]
    assert orjson.loads(water.payload) == {
        "gateway": "gw-kumamoto-01",
        "seq": [41, 43],
        "entities": [
            to_v2_entity(batch[0], encoding=ValueEncoding.PERCENT),
            to_v2_entity(batch[2], encoding=ValueEncoding.PERCENT),
        ],
    }
    assert orjson.loads(water.payload)["entities"][1]["station"]["value"] == "人吉%28水の手橋%29"
    assert water.user == {"gateway": "gw-kumamoto-01", "seq": "41,43"}
    weather = orjson.loads(by_topic["edgegw/gw-kumamoto-01/entities/WeatherObserved"].payload)
    assert (weather["seq"], [e["id"] for e in weather["entities"]]) == ([42], ["urn:ngsi-ld:WeatherObserved:w1"])


async def test_envelopes_split_by_size_and_keep_every_seq_once(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    batch = [reading(f"urn:ngsi-ld:WaterObserved:g{i}", seq=1000 + i, waterLevel=i) for i in range(40)]
    up = uplink(mosquitto_private, context, max_message_bytes=2000, topic="city/{entity_type}")
    async with subscribe(mosquitto_private, "city/#") as sub:
        outcomes = await up.deliver(batch)
        await up.close()
        assert {o.status for o in outcomes} == {Status.DELIVERED}
        got = await sub.wait(up.counters.acked)
    assert len(got) > 1 and all(len(m.payload) <= 2000 for m in got)
    docs = [orjson.loads(m.payload) for m in got]
    assert [s for d in docs for s in d["seq"]] == list(range(1000, 1040))
    assert [e["id"] for d in docs for e in d["entities"]] == [r.entity_id for r in batch]
    assert all(len(d["seq"]) == len(d["entities"]) for d in docs)
