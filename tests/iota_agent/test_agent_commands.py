"""Commands through the real IoT Agents: Orion's forwarded update → agent → MQTT → gateway → relay board → result in Orion.

The test does what Orion does for a command attribute registered to the agent (`POST /v2/op/update` to
the agent's north API); the agent publishes on `/<apikey>/<device>/cmd`, the gateway's listener runs
the command on the Modbus adapter of a pymodbus relay board and answers on `cmdexe`, and the agent
writes `<command>_status` / `<command>_info` into the Orion double.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.commands.test_listener import RELAY_ID, listening, relay_board, uplink_config
from tests.iota_agent.conftest import wait_for
from tests.support.iot_agent import JSON, UL, AgentKind, StartAgent
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import V2_REGISTRATIONS, OrionDouble

pytestmark = pytest.mark.e2e

KINDS: dict[str, AgentKind] = {"iota-json": JSON, "iota-ul": UL}
INFO = "OK: relays: command relay_3 written %28modbus unit 4 FC05 @2 x1%29"


@pytest.mark.parametrize("fmt", ["iota-json", "iota-ul"])
async def test_a_command_from_orion_runs_on_the_relay_board_and_its_result_reaches_orion(
    fmt: str, mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent, tmp_path: Path
) -> None:
    agent = await start_iot_agent(KINDS[fmt], broker=mosquitto_private, orion_url=orion_double.url)
    await agent.provision_group("K3Y", entity_type="Device")
    await agent.provision_device(
        RELAY_ID,
        apikey="K3Y",
        entity_name=RELAY_ID,
        entity_type="Device",
        commands=[{"name": "relay_3", "type": "command"}],
    )
    # provisioning a command device registers the agent as the command's provider in Orion
    [registration] = orion_double.registrations.values()
    assert registration["dataProvided"] == {"entities": [{"type": "Device", "id": RELAY_ID}], "attrs": ["relay_3"]}
    assert registration["provider"]["http"]["url"] == agent.north_url
    assert [r.status for r in orion_double.requests_to(V2_REGISTRATIONS)] == [201]

    commands: list[Any] = []
    async with (
        relay_board(tmp_path) as rig,
        listening(uplink_config(mosquitto_private, format=fmt, commands="on"), rig.router),
        aiomqtt.Client(mosquitto_private.host, mosquitto_private.port) as spy,
    ):
        await spy.subscribe("/K3Y/+/cmd", qos=1)

        async def watch() -> None:
            async for message in spy.messages:
                commands.append((message.topic.value, message.payload, message.qos))  # noqa: PERF401 - filled in the background while the test reads it; an extend would only land at the end

        watcher = asyncio.ensure_future(watch())
        try:
            status, _ = await agent.send_command(RELAY_ID, "Device", "relay_3", True)
            assert status == 204
            entity_key = ("edgegw", "/river", RELAY_ID)
            await wait_for(
                lambda: orion_double.entities.get(entity_key, {}).get("relay_3_status", {}).get("value") == "OK",
                15,
                "the agent to write the command's result",
            )
            assert await rig.coils() == [False, False, True, False, False, False, False, False]
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    entity = orion_double.entities[entity_key]
    assert entity["relay_3_info"]["value"] == INFO
    # the agent publishes its commands at QoS 0 (the broker hands our QoS 1 subscription QoS 0)
    payload = b'{"relay_3":true}' if fmt == "iota-json" else f"{RELAY_ID}@relay_3|true".encode()
    assert commands == [(f"/K3Y/{RELAY_ID}/cmd", payload, 0)]
    # on the way the agent marked the command PENDING, then took the device's answer
    statuses = [e["relay_3_status"]["value"] for e in orion_double.written if "relay_3_status" in e]
    assert statuses[0] == "PENDING" and statuses[-1] == "OK"
