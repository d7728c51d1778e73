"""A Relationship names an entity: every uplink sends the target's id exactly as the entity itself is sent.

`%` is legal in entity ids (`urn:ngsi-ld:WaterObserved:%E4%BA%BA%E5%90%89`, 人吉 kept ASCII), and the
entity goes out under that id unchanged. Value encoding (`%` → `%25`) must not touch the target, or the
reference names an entity that does not exist. No encoding is needed either: an id holds none of the
characters Orion refuses in values (`< > " ' = ; ( )`, NGSI.md), so every id check_reading accepts is
a value Orion accepts. The IoT Agents forward a measure provisioned as `Relationship` as it arrives
(iotagent-node-lib's entities-NGSI-v2.js only rewrites `geo:json`), so their payload must carry the
id as it is too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.errors import ReadingError
from gateway.ngsi import iota
from gateway.ngsi.check import ReadingChecker
from gateway.ngsi.config import ValueEncoding
from gateway.ngsi.identifiers import BANNED_CHARS, ID_EXTRA_BANNED, URI_UNSAFE, check_entity_id
from gateway.ngsi.ld import ld_upsert_body, to_ld_entity
from gateway.ngsi.v2 import to_v2_entity, v2_update_body
from gateway.processing.river import RiverConfig, RiverLevelTracker, alert_readings
from gateway.records import Attribute, Reading, Source, TimeSource
from gateway.uplinks.api import Status
from tests.iota_agent.conftest import APIKEY, make_uplink, wait_for
from tests.support.iot_agent import JSON, UL, AgentKind, StartAgent
from tests.support.javascript import AgentOracle
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble
from tests.support.orion_rules import validate_ld_upsert, validate_v2_update

STATION = "urn:ngsi-ld:WaterObserved:%E4%BA%BA%E5%90%89"  # 人吉, percent-encoded by its owner to stay ASCII
T0 = datetime(2024, 7, 1, tzinfo=UTC)
CTX = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
V2_HEADERS = {"Content-Type": "application/json", "Fiware-Service": "kumamoto", "Fiware-ServicePath": "/river"}

_ID_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in BANNED_CHARS + ID_EXTRA_BANNED + URI_UNSAFE)
# every character an id may hold, `%` and `%XX` sequences (the ones percent encoding would rewrite) often
entity_ids = st.one_of(
    st.text(alphabet=_ID_CHARS, min_size=1, max_size=40),
    st.lists(st.sampled_from(["%", "%25", "%28", "%E4", "urn:ngsi-ld:Thing:", "a", "~", "@"]), min_size=1).map("".join),
).filter(lambda s: s != "urn:" and len(s) <= 200)


def gauge(target: str, *, name: str = "refStation") -> Reading:
    return Reading(
        entity_id="urn:ngsi-ld:Device:gauge-01",
        entity_type="Device",
        attributes={name: Attribute(value=target, type="Relationship")},
        observed_at=T0,
        time_source=TimeSource.DEVICE,
        source=Source(adapter="sim"),
        seq=1,
    )


def _v2_sent(r: Reading, encoding: ValueEncoding) -> dict[str, Any]:
    """The v2 entity sent, once the strict oracle accepted its body."""
    entity = to_v2_entity(r, encoding=encoding)
    body = v2_update_body([orjson.dumps(entity)])
    assert validate_v2_update({**V2_HEADERS, "Content-Length": str(len(body))}, body) == (204, None), body
    return entity


def _ld_sent(r: Reading, encoding: ValueEncoding) -> dict[str, Any]:
    entity = to_ld_entity(r, encoding=encoding, context=CTX)
    body = ld_upsert_body([orjson.dumps(entity)])
    headers = {"Content-Type": "application/ld+json", "Content-Length": str(len(body))}
    assert validate_ld_upsert(headers, body) == (204, None), body
    return entity


@pytest.mark.parametrize("encoding", list(ValueEncoding))
def test_a_target_with_percent_is_sent_as_the_entitys_own_id_on_every_uplink(encoding: ValueEncoding) -> None:
    station = Reading(
        entity_id=STATION,
        entity_type="WaterObserved",
        attributes={"waterLevel": Attribute(value=1.0, type="Number")},
        observed_at=T0,
        source=Source(adapter="sim"),
    )
    r = gauge(STATION)
    ReadingChecker().check(r, encoding=encoding)
    assert _v2_sent(station, encoding)["id"] == STATION
    assert _v2_sent(r, encoding)["refStation"]["value"] == STATION
    assert _ld_sent(r, encoding)["refStation"]["object"] == STATION
    assert iota.json_measure(r, encoding=encoding)["refStation"] == STATION
    assert iota.parse_ul(iota.ul_group(r, encoding=encoding))[0]["refStation"] == STATION
    # only the target is exempt: a Text beside it and the Relationship's own metadata keep the value encoding
    noted = Reading(
        entity_id=r.entity_id,
        entity_type=r.entity_type,
        attributes={
            "refStation": Attribute(value=STATION, type="Relationship", metadata={"note": "50%"}),
            "label": Attribute(value="50%", type="Text"),
        },
        observed_at=T0,
        source=Source(adapter="sim"),
    )
    v2 = _v2_sent(noted, encoding)
    assert v2["refStation"]["value"] == STATION
    assert v2["refStation"]["metadata"]["note"]["value"] == ("50%" if encoding is ValueEncoding.REJECT else "50%25")
    encoded = "50%25" if encoding is ValueEncoding.PERCENT else "50%"
    assert (v2["label"]["value"], iota.json_measure(noted, encoding=encoding)["label"]) == (encoded, encoded)


def test_the_river_alert_points_at_the_station_it_came_from() -> None:
    tracker = RiverLevelTracker(RiverConfig.model_validate({"thresholds": [{"level": 1.0}]}))
    tracker.update(0.5, T0)
    update = tracker.update(1.2, T0.replace(minute=10))
    [alert, *_] = alert_readings(
        update, station_entity_id=STATION, station_entity_type="WaterObserved", source=Source(adapter="sim")
    )
    ReadingChecker().check(alert, encoding=ValueEncoding.PERCENT)
    assert _v2_sent(alert, ValueEncoding.PERCENT)["alertSource"]["value"] == STATION
    assert iota.json_measure(alert)["alertSource"] == STATION


@given(target=entity_ids, encoding=st.sampled_from(list(ValueEncoding)))
def test_any_target_check_reading_accepts_is_sent_unchanged_and_orion_accepts_it(
    target: str, encoding: ValueEncoding
) -> None:
    check_entity_id(target)  # the strategy draws ids only
    r = gauge(target)
    ReadingChecker().check(r, encoding=encoding)
    assert _v2_sent(r, encoding)["refStation"]["value"] == target
    obj = _ld_sent(r, encoding)["refStation"]["object"]
    assert obj == (target if target.startswith("urn:") else "urn:ngsi-ld:" + target)
    assert iota.json_measure(r, encoding=encoding)["refStation"] == target


# ----------------------------------------------------------------------------------- the real agents


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=entity_ids, fmt=st.sampled_from(["json", "ul"]))
def test_the_agent_library_writes_any_target_to_orion_unchanged(
    agent_oracle: AgentOracle, target: str, fmt: str
) -> None:
    """The agents' own parsers and iotagent-node-lib (in Node) make the Orion request of our payload."""
    r = gauge(target)
    if fmt == "json":
        payload = iota.json_measure_bytes(r).decode()
    elif "@" in target or iota.is_json_text(target):
        with pytest.raises(ReadingError, match="UltraLight"):  # UL cannot carry it: refused, never changed
            iota.ul_group(r)
        return
    else:
        payload = iota.ul_group(r)
    _, body = agent_oracle.agent_request(
        fmt, payload, entity_name=r.entity_id, entity_type="Device", types={"refStation": "Relationship"}
    )
    sent = orjson.loads(body)["refStation"]
    assert (sent["type"], sent["value"]) == ("Relationship", target)


@pytest.mark.e2e
@pytest.mark.parametrize(("kind", "fmt"), [(JSON, "iota-json"), (UL, "iota-ul")])
async def test_the_real_agent_writes_the_target_to_orion_as_the_entitys_id(
    kind: AgentKind,
    fmt: str,
    mosquitto_private: MosquittoBroker,
    orion_double: OrionDouble,
    start_iot_agent: StartAgent,
    tmp_path: Path,
) -> None:
    agent = await start_iot_agent(kind, broker=mosquitto_private, orion_url=orion_double.url)
    await agent.provision_group(
        APIKEY,
        entity_type="Device",
        entityNameExp="id",
        attributes=[{"object_id": "refStation", "name": "refStation", "type": "Relationship"}],
    )
    up = make_uplink(mosquitto_private, AdapterContext(gateway_id="gw-1", data_dir=str(tmp_path)), format=fmt)
    try:
        outcomes = await up.deliver([gauge(STATION)])
        await wait_for(lambda: bool(orion_double.written), 15, "the agent to write the measure")
    finally:
        await up.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED]
    [entity] = orion_double.written
    assert (entity["refStation"]["type"], entity["refStation"]["value"]) == ("Relationship", STATION)
