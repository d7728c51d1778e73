"""An IoT Agent restart while the gateway publishes: lost without confirmation, whole and in order with it.

The real gateway process (simulated river gauges → buffer → `mqtt` uplink) publishes to mosquitto,
the real IoT Agent JSON takes the measures and writes them to the Orion double. The agent connects
with a clean session and a new client id at every start, so what the gateway publishes while it is
down is gone, though the broker acknowledged it: with `[uplinks.confirm]` the gateway notices and
publishes it again from the buffer; without, the loss is only visible in Orion.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from gateway.adapter_api import AdapterContext
from gateway.records import iso_utc, utc_now
from gateway.uplinks.api import Status
from tests.e2e.harness import GatewayProcess
from tests.iota_agent.conftest import APIKEY, SEQ, make_uplink, seqs_written, wait_for
from tests.support.iot_agent import JSON, IotAgent, StartAgent
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble
from tests.uplinks_mqtt.test_agent_sizing import RELAY_ID, relay_reading

pytestmark = pytest.mark.e2e

READINGS = 60  # 12 s of three gauges at 5 readings/s; the agent is down for 4 s in the middle


def gateway_config(port: int, orion_url: str, *, confirm: bool) -> str:
    confirmation = (
        f"""
[uplinks.confirm]
url = "{orion_url}"
service = "edgegw"
service_path = "/river"
timeout_s = 2
"""
        if confirm
        else 'sequence_attribute = "edgegwSeq"\n'
    )
    return f"""
[gateway]
id = "e2e-gw"
data_dir = "@DATA_DIR@"
log_format = "json"

[[adapters]]
name = "river"
type = "simulated"
kind = "river-level"
entities = 3
rate = 5
limit = {READINGS}

[[uplinks]]
name = "iot-agent"
type = "mqtt"
host = "127.0.0.1"
port = {port}
format = "iota-json"
apikey = "{APIKEY}"
retry_initial_s = 0.5
retry_max_s = 1.0
{confirmation}"""


async def provision_gauges(agent: IotAgent) -> None:
    # a group that names each entity after its device id, as a platform does for known ids
    await agent.provision_group(
        APIKEY,
        entity_type="WaterObserved",
        entityNameExp="id",
        attributes=[
            {
                "object_id": "waterLevel",
                "name": "waterLevel",
                "type": "Number",
                "metadata": {"unitCode": {"type": "Text", "value": "MTR"}},
            },
            {"object_id": "sequence", "name": "sequence", "type": "Number"},
            {"object_id": SEQ, "name": SEQ, "type": "Number"},
        ],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart:
    gateway: GatewayProcess
    down_at: str  # when the agent stopped (UTC, Orion's DateTime form)
    up_at: str  # when it was back
    written_before: int  # entities Orion had received when the agent came back


async def run_with_agent_restart(
    tmp_path: Path, broker: MosquittoBroker, orion: OrionDouble, agent: IotAgent, *, confirm: bool
) -> Restart:
    """The gateway publishes all its readings; the agent is stopped for 4 s after the first ones arrived."""
    gw = GatewayProcess(tmp_path, gateway_config(broker.port, orion.url, confirm=confirm))
    gw.start()
    await wait_for(lambda: len(seqs_written(orion)) >= 10, 30, "the first readings in Orion")
    down_at = iso_utc(utc_now())
    await agent.stop()
    await asyncio.sleep(4)
    written_before = len(orion.written)
    await agent.start()
    up_at = iso_utc(utc_now())
    await wait_for(lambda: gw.committed_max_seq() >= READINGS, 30, "the simulated gauges to finish")
    return Restart(gateway=gw, down_at=down_at, up_at=up_at, written_before=written_before)


def first_arrivals(orion: OrionDouble) -> dict[str, list[int]]:
    """Per entity, the sequence numbers in the order they first reached Orion."""
    out: dict[str, list[int]] = {}
    seen: set[int] = set()
    for entity in orion.written:
        seq = entity[SEQ]["value"]
        if seq not in seen:
            seen.add(seq)
            out.setdefault(entity["id"], []).append(seq)
    return out


async def test_with_confirmation_a_restart_loses_nothing_and_keeps_order(
    tmp_path: Path, mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent
) -> None:
    agent = await start_iot_agent(JSON, broker=mosquitto_private, orion_url=orion_double.url)
    await provision_gauges(agent)
    run = await run_with_agent_restart(tmp_path, mosquitto_private, orion_double, agent, confirm=True)
    gw = run.gateway
    try:
        await wait_for(
            lambda: set(range(1, READINGS + 1)) <= set(seqs_written(orion_double)),
            60,
            f"all {READINGS} readings in Orion",
        )
        code, _ = await gw.terminate()
        assert code == 0
    finally:
        gw.stop_now()
    arrivals = first_arrivals(orion_double)
    assert sorted(s for seqs in arrivals.values() for s in seqs) == list(range(1, READINGS + 1))
    for entity_id, seqs in arrivals.items():
        assert seqs == sorted(seqs), f"{entity_id}: readings first reached Orion out of order"
    # what was observed while the agent was down reached Orion after it came back, with the time it
    # was observed (the agent would stamp the arrival time, after up_at, on a measure without one)
    late = orion_double.written[run.written_before :]
    republished = [e for e in late if run.down_at <= e["TimeInstant"]["value"] < run.up_at]
    assert republished, "nothing observed during the agent's downtime reached Orion after it"
    assert all(e["waterLevel"]["metadata"]["TimeInstant"]["value"] == e["TimeInstant"]["value"] for e in late)
    logs = gw.logs()
    assert "not confirmed by Orion within 2 s" in logs  # said once, at WARNING, with the reason
    assert "confirmation: entities reach Orion again" in logs


async def test_without_confirmation_the_restart_loses_readings_the_broker_acknowledged(
    tmp_path: Path, mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent
) -> None:
    agent = await start_iot_agent(JSON, broker=mosquitto_private, orion_url=orion_double.url)
    await provision_gauges(agent)
    run = await run_with_agent_restart(tmp_path, mosquitto_private, orion_double, agent, confirm=False)
    gw = run.gateway
    try:
        await wait_for(lambda: max(seqs_written(orion_double), default=0) >= READINGS, 30, "the last reading")
        await wait_for(
            lambda: gw.status().get("uplinks", [{}])[0].get("delivered", 0) >= READINGS,
            30,
            "the gateway to count every reading delivered",
        )
        code, _ = await gw.terminate()
        assert code == 0
    finally:
        gw.stop_now()
    missing = set(range(1, READINGS + 1)) - set(seqs_written(orion_double))
    # the readings of the agent's downtime (4 s asleep, plus its stop and start: longer on a loaded
    # machine) at 5 a second went to a broker with nobody subscribed: delivered to the broker, counted
    # delivered by the gateway, and never in Orion; nothing from before or after that spell
    down_s = (datetime.fromisoformat(run.up_at) - datetime.fromisoformat(run.down_at)).total_seconds()
    assert 10 <= len(missing) <= (down_s + 1) * 5, (sorted(missing), down_s)
    assert max(missing) - min(missing) < len(missing) + 5, sorted(missing)  # one spell, not scattered losses


async def test_with_confirmation_a_backlog_of_one_device_reaches_orion_in_order(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent, context: AdapterContext
) -> None:
    # several messages of one device in flight at once reach Orion in any order (the agent sends
    # their requests in parallel); with confirmation the next one goes out once the previous is in
    agent = await start_iot_agent(JSON, broker=mosquitto_private, orion_url=orion_double.url)
    types = {f"relay{n}": "Boolean" for n in range(1, 9)} | {f"input{n}": "Boolean" for n in range(1, 9)}
    attributes = [
        {"object_id": k, "name": k, "type": t} for k, t in (types | {"deviceState": "Text", SEQ: "Number"}).items()
    ]
    await agent.provision_group(APIKEY, entity_type="Device")
    await agent.provision_device(
        RELAY_ID, apikey=APIKEY, entity_name=RELAY_ID, entity_type="Device", attributes=attributes
    )
    up = make_uplink(
        mosquitto_private,
        context,
        confirm={"url": orion_double.url, "service": "edgegw", "service_path": "/river", "timeout_s": 5},
    )
    backlog = [relay_reading(s) for s in range(1, 1401)]
    try:
        for start in range(0, len(backlog), 1000):
            outcomes = await up.deliver(backlog[start : start + 1000])
            assert {o.status for o in outcomes} == {Status.DELIVERED}
    finally:
        await up.close()
    assert seqs_written(orion_double, RELAY_ID) == list(range(1, 1401))
    stored = orion_double.entities[("edgegw", "/river", RELAY_ID)]
    assert stored[SEQ]["value"] == 1400  # the entity ends on its newest reading
    assert up.counters.confirmed == 1400
