"""Through the running Gateway: an IoT Agent command reaches the Modbus adapter that owns the entity,
the coil is written, the result comes back on cmdexe, and the readings keep flowing to the uplink."""

from __future__ import annotations

from pathlib import Path

from gateway.app import Gateway
from gateway.audit.log import AuditLog
from gateway.config import parse_config
from gateway.uplinks.mqtt import MqttUplink
from tests.adapters.modbus.peers import image_from_values, start_tcp_peer
from tests.adapters.modbus.running import until
from tests.commands.test_listener import RELAY, RELAY_ID, Agent
from tests.support.mosquitto import MosquittoBroker


def mqtt_sources(gw: Gateway) -> list[MqttUplink]:
    return [source for source in gw.command_sources if isinstance(source, MqttUplink)]


async def test_command_through_the_gateway(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    peer, port = await start_tcp_peer(
        [
            image_from_values(
                4, RELAY, {f"relay_{i}": False for i in range(1, 9)} | {f"input_{i}": False for i in range(1, 9)}
            )
        ]
    )
    config = parse_config(
        {
            "gateway": {"id": "gw1", "data_dir": str(tmp_path / "data")},
            "adapters": [
                {
                    "name": "cabinet",
                    "type": "modbus",
                    "buses": [{"name": "gw", "port": f"tcp://127.0.0.1:{port}"}],
                    "devices": [
                        {
                            "name": "relays",
                            "bus": "gw",
                            "profile": "waveshare/modbus-rtu-relay-d",
                            "unit_id": 4,
                            "poll_interval": 0.2,
                            "timeout": 0.3,
                        }
                    ],
                }
            ],
            "uplinks": [
                {
                    "name": "pref-mqtt",
                    "type": "mqtt",
                    "host": mosquitto.host,
                    "port": mosquitto.port,
                    "apikey": "K3Y",
                    "commands": "on",
                    "retry_initial_s": 0.05,
                    "retry_max_s": 0.3,
                }
            ],
        }
    )
    gw = Gateway(config)
    await gw.start()
    try:
        async with Agent(mosquitto) as agent:
            await until(lambda: gw.router.owner(RELAY_ID) == "cabinet" and gw.loops[0].delivered > 0)
            await until(lambda: all(source.commands_connected for source in mqtt_sources(gw)))
            await agent.send(f"/K3Y/{RELAY_ID}/cmd", b'{"relay_5": "on"}')
            topic, payload = await agent.result()
            assert topic == f"/K3Y/{RELAY_ID}/cmdexe"
            assert payload == b'{"relay_5":"OK: relays: command relay_5 written %28modbus unit 4 FC05 @4 x1%29"}'
            assert list(await peer.read(4, 1, 0, 8)) == [False] * 4 + [True] + [False] * 3
    finally:
        await gw.stop()
        await peer.stop()
    assert mqtt_sources(gw) and not any(source.commands_connected for source in mqtt_sources(gw))
    # the platform's command is in the box's audit log, the one the web UI shows, and the chain holds
    audit = AuditLog(config.web.state_path(Path(config.gateway.data_dir)))
    [entry] = audit.entries(action="command")
    assert (entry.actor, entry.target) == ("platform:pref-mqtt", RELAY_ID)
    assert entry.detail["name"] == "relay_5" and entry.detail["ok"] is True
    assert "on" not in entry.detail.values()  # the command's value stays out: it may be a pickup code
    assert audit.verify().ok
