"""A command result reaches Orion through the real agent even with `value_encoding = "text-unrestricted"`.

The agent writes the result to `<command>_info`, typed commandResult: Orion checks that type for its
forbidden characters, and the agent cannot be told to send it TextUnrestricted. Before the fix the
relay switched, the gateway counted the answer published, Orion refused the agent's update with 400
and `relay_3_status` stayed PENDING.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands.test_listener import RELAY_ID, listening, relay_board, uplink_config
from tests.iota_agent.conftest import wait_for
from tests.support.iot_agent import JSON, StartAgent
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble

pytestmark = pytest.mark.e2e


async def test_the_result_reaches_orion_with_text_unrestricted(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent, tmp_path: Path
) -> None:
    agent = await start_iot_agent(JSON, broker=mosquitto_private, orion_url=orion_double.url)
    await agent.provision_group("K3Y", entity_type="Device")
    await agent.provision_device(
        RELAY_ID,
        apikey="K3Y",
        entity_name=RELAY_ID,
        entity_type="Device",
        commands=[{"name": "relay_3", "type": "command"}],
    )
    config = uplink_config(mosquitto_private, commands="on", value_encoding="text-unrestricted")
    async with relay_board(tmp_path) as rig, listening(config, rig.router) as listener:
        status, _ = await agent.send_command(RELAY_ID, "Device", "relay_3", True)
        assert status == 204
        await wait_for(lambda: listener.counters.results_published == 1, 10, "the gateway's answer")
        entity_key = ("edgegw", "/river", RELAY_ID)
        # the agent writes the result once: wait for Orion's answer to that request, accepted or not
        await wait_for(lambda: len(orion_double.requests) >= 3, 10, "the agent's update with the result")
    assert [r.status for r in orion_double.requests] == [201, 204, 204]
    entity = orion_double.entities[entity_key]
    assert entity["relay_3_status"]["value"] == "OK"
    assert entity["relay_3_info"]["value"] == "OK: relays: command relay_3 written %28modbus unit 4 FC05 @2 x1%29"
