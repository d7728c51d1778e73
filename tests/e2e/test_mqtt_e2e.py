"""End to end through the real gateway process: simulated devices → buffer → MQTT uplink → mosquitto.

kill -9 at random moments and a 30 s broker outage must lose nothing that was committed, and
every entity's readings must first arrive in order.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from tests.e2e.harness import GatewayProcess, Receiver, first_arrivals, wait_until
from tests.support.mosquitto import MosquittoBroker

pytestmark = pytest.mark.e2e


def config(port: int, *, rate: float, adapters: bool = True, durability: str = "full") -> str:
    sim = (
        f"""
[[adapters]]
name = "river"
type = "simulated"
kind = "river-level"
entities = 5
rate = {rate}

[[adapters]]
name = "scans"
type = "simulated"
kind = "events"
entities = 2
rate = {rate / 4}
lane = "bulk"
"""
        if adapters
        else ""
    )
    return f"""
[gateway]
id = "e2e-gw"
data_dir = "@DATA_DIR@"
log_format = "json"

[buffer]
durability = "{durability}"
{sim}
[[uplinks]]
name = "platform"
type = "mqtt"
host = "127.0.0.1"
port = {port}
format = "ngsi-v2"
retry_initial_s = 0.2
retry_max_s = 1.0
"""


def assert_complete_and_ordered(receiver: Receiver, committed: set[int]) -> None:
    got = receiver.distinct()
    missing = committed - got
    assert not missing, f"{len(missing)} committed readings never arrived, e.g. {sorted(missing)[:10]}"
    for entity, seqs in receiver.by_entity.items():
        firsts = first_arrivals(seqs)
        assert firsts == sorted(firsts), f"{entity}: readings first arrived out of order"


async def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    rng = random.Random(20261125)
    receiver = Receiver(mosquitto.port, topic="edgegw/e2e-gw/#", client_id=f"rx-{tmp_path.name}")
    gw = GatewayProcess(tmp_path, config(mosquitto.port, rate=2000))
    try:
        for _ in range(6):
            gw.start()
            await asyncio.sleep(rng.uniform(0.8, 2.5))
            gw.kill9()
        # a last run without devices drains the backlog the kills left behind
        gw.write_config(config(mosquitto.port, rate=1, adapters=False))
        gw.start()
        # read once it has opened the buffer: on a loaded machine every killed run may have died importing, before
        # making the data directory, and the seqs the last one reserved are logged by this run as it opens
        await gw.started()
        committed = gw.committed_seqs()  # the runs killed skip the seqs they had reserved
        assert len(committed) > 1000, "the gateway produced too little to test anything"
        await wait_until(
            lambda: committed <= receiver.distinct(),
            60,
            f"all {len(committed)} committed readings to arrive",
            gw,
        )
        code, took = await gw.terminate()
        assert code == 0
        assert took < 5.0, f"SIGTERM took {took:.1f}s"
        assert_complete_and_ordered(receiver, committed)
        # every run had work to do: each restart found the buffer and went on numbering after it
        assert len(receiver.by_entity) > 5
    finally:
        gw.stop_now()
        receiver.close()


async def test_broker_down_30s_then_backlog_drains(tmp_path: Path, mosquitto_private: MosquittoBroker) -> None:
    receiver = Receiver(mosquitto_private.port, topic="edgegw/e2e-gw/#", client_id="rx-outage")
    gw = GatewayProcess(tmp_path, config(mosquitto_private.port, rate=200))
    try:
        gw.start()
        await wait_until(lambda: len(receiver.distinct()) > 100, 20, "first deliveries", gw)
        mosquitto_private.stop()
        await asyncio.sleep(30)
        mosquitto_private.start()
        await asyncio.sleep(3)
        code, took = await gw.terminate()  # stops producing; what it committed must still arrive
        assert code == 0 and took < 5.0
        committed = gw.committed_max_seq()
        gw.write_config(config(mosquitto_private.port, rate=1, adapters=False))
        gw.start()
        await wait_until(
            lambda: set(range(1, committed + 1)) <= receiver.distinct(),
            60,
            f"the backlog of {committed} readings to drain",
            gw,
        )
        assert committed > 200 * 30, "the outage should have built a backlog of at least 30 s of readings"
        assert_complete_and_ordered(receiver, set(range(1, committed + 1)))
        logs = gw.logs()
        assert "delivery failing" in logs and "delivery recovered" in logs
    finally:
        gw.stop_now()
        receiver.close()


async def test_sighup_reloads_without_losing_buffered_data(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    receiver = Receiver(mosquitto.port, topic="edgegw/e2e-gw/#", client_id=f"rx-{tmp_path.name}")
    gw = GatewayProcess(tmp_path, config(mosquitto.port, rate=500))
    try:
        gw.start()
        await wait_until(lambda: len(receiver.distinct()) > 200, 20, "first deliveries", gw)
        bad = config(mosquitto.port, rate=500).replace('kind = "river-level"', 'kind = "lake"')
        gw.write_config(bad)
        gw.hup()
        await wait_until(lambda: "reload refused" in gw.log_tail(20000), 10, "the bad config to be refused", gw)
        assert gw.alive()
        gw.write_config(config(mosquitto.port, rate=500).replace('"@DATA_DIR@"', '"/proc/edgegw"'))
        gw.hup()
        await wait_until(
            lambda: (
                "reload refused, keeping the running configuration: gateway.data_dir: cannot be "
                "created" in gw.log_tail(20000)
            ),
            10,
            "the unusable data_dir to be refused",
            gw,
        )
        assert gw.alive()
        gw.write_config(config(mosquitto.port, rate=500).replace('name = "scans"', 'name = "scans2"'))
        gw.hup()
        await wait_until(
            lambda: any(a["name"] == "scans2" for a in gw.status().get("adapters", [])),
            15,
            "the reloaded adapters to show in the status",
            gw,
        )
        code, _ = await gw.terminate()
        assert code == 0
        committed = gw.committed_max_seq()
        gw.write_config(config(mosquitto.port, rate=1, adapters=False))
        gw.start()
        await wait_until(
            lambda: set(range(1, committed + 1)) <= receiver.distinct(),
            30,
            "everything committed across the reload to arrive",
            gw,
        )
        await gw.terminate()
        assert_complete_and_ordered(receiver, set(range(1, committed + 1)))
        assert_structured_logs(gw.logs())
    finally:
        gw.stop_now()
        receiver.close()


def assert_structured_logs(text: str) -> None:
    """Off a terminal every line is one JSON object, and lines about an uplink or adapter name it."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(doc) for doc in lines)
    about_components = [
        d for d in lines if d["logger"].startswith(("gateway.uplinks", "gateway.delivery", "gateway.supervisor"))
    ]
    assert about_components, "expected uplink lines (connected/disconnected) in the log"
    assert all(d.get("component") for d in about_components), [d for d in about_components if not d.get("component")][
        :3
    ]
    assert any(d["msg"].startswith("reloading configuration") for d in lines)
