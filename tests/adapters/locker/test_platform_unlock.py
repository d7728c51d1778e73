"""Unlocks from the platform end to end: the MQTT uplink's command path on a real mosquitto, and the real IoT Agent JSON.

A running gateway (Runtime with its control socket, as test_gateway_flow.py builds it) with the
locker adapter on the socat board stand-in and an `iota-json` MQTT uplink with `commands = "on"`.
The platform's side is played (a) by the test on the broker, publishing what an IoT Agent publishes
on `/<apikey>/<device>/cmd` and reading `/<apikey>/<device>/cmdexe`, and (b) by the FIWARE
iotagent-json itself (tests/support/iot_agent.py), driven as Orion drives it, writing the result into
the Orion double. Refusals (a door already open, a compartment the gateway does not have, a pickup
command the platform may not give) come back as `ERROR: <reason>` and leave the board untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.audit.log import AuditEntry, AuditLog
from tests.adapters.locker.board_sim import BoardSim, SimBoard, one_board_toml, pty_pair, serve_pty
from tests.adapters.locker.test_gateway_flow import _locker_registered as _locker_registered
from tests.iota_agent.conftest import wait_for
from tests.support.iot_agent import JSON, SERVICE, SERVICE_PATH, StartAgent
from tests.support.mosquitto import MosquittoBroker
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web, until

APIKEY = "L0CK3R"
UPLINK = "pref-iot"
A03 = "urn:ngsi-ld:LockerCompartment:gw-lib-lockers-A-03"
GHOST = "urn:ngsi-ld:LockerCompartment:gw-lib-lockers-Z-99"
# LockerCompartment's attributes (adapters/locker/README.md) as a platform team provisions them in the agent
ATTRIBUTE_TYPES = {
    "compartmentLabel": "Text",
    "doorState": "Text",
    "occupied": "Boolean",
    "pickupState": "Text",
    "lastChange": "DateTime",
    "pickupDeadline": "DateTime",
}


def gateway_text(data_dir: Path, port: str, broker: MosquittoBroker) -> str:
    return f"""
[gateway]
id = "gw-lib"
data_dir = "{data_dir}"

[[adapters]]
name = "lockers"
type = "locker"
poll_interval = 0.02

{one_board_toml(port)}

[[uplinks]]
name = "{UPLINK}"
type = "mqtt"
host = "{broker.host}"
port = {broker.port}
format = "iota-json"
apikey = "{APIKEY}"
commands = "on"
retry_initial_s = 0.05
retry_max_s = 0.3
"""


class Platform:
    """The IoT Agent's side of the broker: publishes commands, reads results and the measures the gateway sends."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.results: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()
        self.measures: list[tuple[str, dict[str, Any]]] = []
        self.client = aiomqtt.Client(broker.host, broker.port, identifier="iotagent-test")

    async def run(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for m in self.client.messages:
                payload = json.loads(bytes(m.payload))
                if m.topic.value.endswith("/cmdexe"):
                    await self.results.put((m.topic.value, payload))
                else:
                    self.measures.append((m.topic.value, payload))

    async def command(self, device_id: str, payload: dict[str, Any]) -> tuple[str, dict[str, str]]:
        await self.client.publish(f"/{APIKEY}/{device_id}/cmd", json.dumps(payload).encode(), qos=1)
        return await asyncio.wait_for(self.results.get(), 10)

    def door_states(self, device_id: str) -> list[str]:
        topic = f"/{APIKEY}/{device_id}/attrs"
        return [p["doorState"] for t, p in self.measures if t == topic and "doorState" in p]


@contextlib.asynccontextmanager
async def platform(broker: MosquittoBroker) -> AsyncIterator[Platform]:
    p = Platform(broker)
    async with p.client:
        await p.client.subscribe(f"/{APIKEY}/+/cmdexe", qos=1)
        await p.client.subscribe(f"/{APIKEY}/+/attrs", qos=1)
        reader = asyncio.create_task(p.run())
        try:
            yield p
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def platform_entries(data_dir: Path) -> list[AuditEntry]:
    """The gateway's audit entries for the platform's commands, oldest first (the web UI's log, <data_dir>/web)."""
    log = AuditLog(data_dir / "web")
    return [e for e in reversed(log.entries(action="command")) if e.actor == f"platform:{UPLINK}"]


async def test_the_platform_unlocks_over_the_mqtt_command_path_and_is_told_why_not(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, tmp_path: Path
) -> None:
    sim = BoardSim([SimBoard("cu16", 0)])
    data_dir = tmp_path / "data"
    with pty_pair(tmp_path) as (gw_port, board_port):
        async with (
            serve_pty(sim, board_port),
            platform(mosquitto_private) as p,
            gateway_web(tmp_path, orion_double.url, text=gateway_text(data_dir, gw_port, mosquitto_private)) as env,
        ):
            router = env.runtime.gateway.router
            await until(lambda: router.owner(A03) == "lockers", "the compartments known to the command router")
            await until(lambda: "locked" in p.door_states(A03), "A-03's state at the platform")
            board = sim.boards[0]

            topic, result = await p.command(A03, {"unlock": ""})
            assert (topic, result) == (f"/{APIKEY}/{A03}/cmdexe", {"unlock": "OK: opened: compartment A-03"})
            assert board.unlocks == [3] and board.locked[2] is False
            await until(lambda: p.door_states(A03)[-1:] == ["open"], "the open door at the platform")

            # the door is open: refused with the reason, the lock is not pulsed again
            _, result = await p.command(A03, {"unlock": ""})
            assert result == {"unlock": "ERROR: open: the door of compartment A-03 is open already"}
            # a compartment this gateway does not have
            topic, result = await p.command(GHOST, {"open": ""})
            assert topic == f"/{APIKEY}/{GHOST}/cmdexe"
            assert result["open"].startswith("ERROR: command open: no adapter owns entity"), result
            # the pickup flow stays on the box: the platform cannot hand out codes or addresses
            _, result = await p.command(A03, {"assign": {"email": "p@example.jp", "reference": "R-1"}})
            assert result == {"assign": "ERROR: unknown: assign is taken from the box%27s own pages only"}
            assert board.unlocks == [3]

            board.locked[2] = True  # closed by hand: the next unlock works again
            await until(lambda: p.door_states(A03)[-1:] == ["locked"], "the closed door at the platform")
            _, result = await p.command(A03, {"open": ""})
            assert result == {"open": "OK: opened: compartment A-03"}
            assert board.unlocks == [3, 3]

    entries = await asyncio.to_thread(platform_entries, data_dir)
    assert [(e.target, e.detail["name"], e.detail["ok"], e.detail["info"]) for e in entries] == [
        (A03, "unlock", True, "opened: compartment A-03"),
        (A03, "unlock", False, "open: the door of compartment A-03 is open already"),
        (
            GHOST,
            "open",
            False,
            f'command open: no adapter owns entity "{GHOST}", got no reading of it since the gateway started; '
            "check the entity id, or wait for the device's first reading",
        ),
        (A03, "assign", False, "unknown: assign is taken from the box's own pages only"),
        (A03, "open", True, "opened: compartment A-03"),
    ]
    # never the command's value in the audit log (it could be an address, a code)
    assert all("example.jp" not in json.dumps(dict(e.detail)) for e in entries)


@pytest.mark.e2e
async def test_an_unlock_sent_through_the_fiware_iot_agent_json_opens_the_door_and_the_agent_gets_the_result(
    mosquitto_private: MosquittoBroker, orion_double: OrionDouble, start_iot_agent: StartAgent, tmp_path: Path
) -> None:
    agent = await start_iot_agent(JSON, broker=mosquitto_private, orion_url=orion_double.url)
    await agent.provision_group(APIKEY, entity_type="LockerCompartment")
    # the platform team provisions each compartment as a command device named after the gateway's entity id,
    # with the documented attribute types (the agent types an undeclared attribute Text, which a Boolean is not)
    for label in ("A-01", "A-02", "A-03"):
        entity_id = f"urn:ngsi-ld:LockerCompartment:gw-lib-lockers-{label}"
        await agent.provision_device(
            entity_id,
            apikey=APIKEY,
            entity_name=entity_id,
            entity_type="LockerCompartment",
            attributes=[{"object_id": name, "name": name, "type": t} for name, t in ATTRIBUTE_TYPES.items()],
            commands=[{"name": "unlock", "type": "command"}],
        )
    sim = BoardSim([SimBoard("cu16", 0)])
    data_dir = tmp_path / "data"
    entity_key = (SERVICE, SERVICE_PATH, A03)

    def in_orion(attr: str) -> Any:
        return orion_double.entities.get(entity_key, {}).get(attr, {}).get("value")

    def infos() -> list[str]:
        return [e["unlock_info"]["value"] for e in orion_double.written if e.get("id") == A03 and "unlock_info" in e]

    with pty_pair(tmp_path) as (gw_port, board_port):
        async with (
            serve_pty(sim, board_port),
            gateway_web(tmp_path, orion_double.url, text=gateway_text(data_dir, gw_port, mosquitto_private)) as env,
        ):
            router = env.runtime.gateway.router
            await until(lambda: router.owner(A03) == "lockers", "the compartments known to the command router")
            # the compartment's state reaches Orion through the agent: the measures path works both ways
            await wait_for(lambda: in_orion("doorState") == "locked", 15, "A-03's door state in Orion via the agent")

            status, _ = await agent.send_command(A03, "LockerCompartment", "unlock", "")
            assert status == 204
            await wait_for(lambda: len(infos()) == 1, 15, "the agent to write the unlock's result")
            assert sim.boards[0].unlocks == [3] and sim.boards[0].locked[2] is False
            assert (in_orion("unlock_status"), in_orion("unlock_info")) == ("OK", "OK: opened: compartment A-03")
            await wait_for(lambda: in_orion("doorState") == "open", 15, "the open door in Orion via the agent")

            # the door is open: the gateway refuses, the agent records the refusal (its status is OK: the device
            # answered; neither FIWARE agent lets a device report ERROR, so the reason is the info's `ERROR:` text)
            status, _ = await agent.send_command(A03, "LockerCompartment", "unlock", "")
            assert status == 204
            await wait_for(lambda: len(infos()) == 2, 15, "the agent to write the refusal")
            assert (in_orion("unlock_status"), in_orion("unlock_info")) == (
                "OK",
                "ERROR: open: the door of compartment A-03 is open already",
            )
            assert sim.boards[0].unlocks == [3]
    statuses = [e["unlock_status"]["value"] for e in orion_double.written if "unlock_status" in e]
    assert statuses == ["PENDING", "OK", "PENDING", "OK"]
    entries = await asyncio.to_thread(platform_entries, data_dir)
    assert [(e.detail["ok"], e.detail["info"]) for e in entries] == [
        (True, "opened: compartment A-03"),
        (False, "open: the door of compartment A-03 is open already"),
    ]
