"""The command listener's answers as the agents and Orion take them, and what it says when the broker refuses it.

Real mosquitto (an ACL, a password file), a raw MQTT client playing the IoT Agent; the codec property
checks every answer against Orion's forbidden characters whatever `value_encoding` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.adapter_api import AdapterContext
from gateway.ngsi.identifiers import BANNED_CHARS
from gateway.ngsi.values import decode_percent
from gateway.records import Command, CommandResult
from gateway.secrets import SecretStore
from gateway.uplinks.mqtt import MqttUplinkConfig
from gateway.uplinks.mqtt.commands import MqttCommandListener, result_messages
from gateway.uplinks.mqtt.config import MqttFormat, TopicStyle
from tests.mqtt.test_v311_only_broker import v311_only_broker  # noqa: F401 - a fixture of this module's tests
from tests.support.mosquitto import MosquittoBroker
from tests.uplinks_mqtt.test_delivery import KEEP_USER
from tests.uplinks_mqtt.test_security import password_broker as password_broker  # the fixture

DEVICE = "urn:ngsi-ld:Device:gw1-relays"
INFO = "relays: command relay_3 written (modbus unit 4 FC05 @2 x1)"


async def written(command: Command) -> CommandResult:
    """What the Modbus adapter answers for a relay written: brackets, as most of the gateway's answers have."""
    return CommandResult(command_id=command.command_id, ok=True, info=INFO)


def config(port: int, **extra: Any) -> MqttUplinkConfig:
    doc = {
        "name": "pref-mqtt",
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": port,
        "apikey": "K3Y",
        "commands": "on",
        "retry_initial_s": 0.05,
        "retry_max_s": 0.3,
        "ack_timeout_s": 3,
        "connect_timeout_s": 2,
    }
    return MqttUplinkConfig.model_validate(doc | extra)


@contextlib.asynccontextmanager
async def listening(cfg: MqttUplinkConfig, context: AdapterContext) -> AsyncIterator[MqttCommandListener]:
    listener = MqttCommandListener(cfg, context, written)
    listener.start()
    try:
        await listener.wait_connected(5.0)
        yield listener
    finally:
        await listener.stop()


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


# --- the answer's text --------------------------------------------------------------------------------


def _as_the_agent_stores(fmt: MqttFormat, payload: bytes) -> str:
    """The `<command>_info` value the agent writes to Orion from one cmdexe payload."""
    if fmt is MqttFormat.IOTA_JSON:
        [value] = orjson.loads(payload).values()
        return str(value)
    return payload.decode().partition("|")[2].split("|")[0]  # the UL agent keeps the text up to the next '|'


@settings(max_examples=200)
@given(
    info=st.text(max_size=60),
    ok=st.booleans(),
    fmt=st.sampled_from([MqttFormat.IOTA_JSON, MqttFormat.IOTA_UL]),
    style=st.sampled_from(list(TopicStyle)),
)
def test_every_answer_is_orion_safe_and_reversible(info: str, ok: bool, fmt: MqttFormat, style: TopicStyle) -> None:
    [(_, payload)] = result_messages("d1", [("relay_3", ok, info)], apikey="K3Y", fmt=fmt, style=style)
    stored = _as_the_agent_stores(fmt, payload)
    # Orion types the agent's `<command>_info` commandResult and refuses these characters in it
    assert not set(stored) & set(BANNED_CHARS)
    assert decode_percent(stored.replace("%7C", "|").replace("%23", "#")) == ("OK: " if ok else "ERROR: ") + info


async def test_with_text_unrestricted_the_agent_still_gets_a_percent_encoded_answer(
    mosquitto_private: MosquittoBroker, context: AdapterContext
) -> None:
    cfg = config(mosquitto_private.port, value_encoding="text-unrestricted")
    async with (
        listening(cfg, context) as listener,
        aiomqtt.Client(mosquitto_private.host, mosquitto_private.port, identifier="iotagent-test") as agent,
    ):
        await agent.subscribe("/K3Y/+/cmdexe", qos=1)
        await agent.publish(f"/K3Y/{DEVICE}/cmd", b'{"relay_3": true}', qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(agent.messages))
    assert (message.topic.value, message.payload) == (
        f"/K3Y/{DEVICE}/cmdexe",
        b'{"relay_3":"OK: relays: command relay_3 written %28modbus unit 4 FC05 @2 x1%29"}',
    )
    assert listener.counters.results_published == 1


# --- the broker refuses ----------------------------------------------------------------------------------


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """The gateway may take commands but not answer: a common ACL slip (cmdexe granted read, not write)."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite /K3Y/+/cmd\ntopic readwrite /json/K3Y/+/cmd\ntopic read /K3Y/+/cmdexe\n")
    broker = MosquittoBroker(tmp_path / "acl-broker", extra_conf=f"acl_file {acl}\n{KEEP_USER}")
    broker.start()
    yield broker
    broker.stop()


async def test_an_answer_the_acl_refuses_is_lost_and_says_so(
    acl_broker: MosquittoBroker, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.uplinks.mqtt.commands")
    async with (
        listening(config(acl_broker.port), context) as listener,
        aiomqtt.Client(acl_broker.host, acl_broker.port, identifier="iotagent-test") as agent,
    ):
        await agent.publish(f"/K3Y/{DEVICE}/cmd", b'{"relay_3": true}', qos=1)
        await until(lambda: listener.counters.results_lost + listener.counters.results_published >= 1)
    counters = listener.counters
    assert (counters.ok, counters.results_published, counters.results_lost) == (1, 0, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        f"result for device {DEVICE} not published: the broker refused it on /K3Y/{DEVICE}/cmdexe, got PUBACK 0x87 "
        "Not authorized; check the broker's ACL for this uplink's username: it must allow publishing on that topic "
        "(the agent will let the command expire)"
    ) in warnings


async def _first_warning(cfg: MqttUplinkConfig, context: AdapterContext, caplog: pytest.LogCaptureFixture) -> str:
    caplog.set_level(logging.WARNING, logger="gateway.uplinks.mqtt.commands")
    listener = MqttCommandListener(cfg, context, written)
    listener.start()
    try:
        await until(lambda: caplog.records)
    finally:
        await listener.stop()
    return caplog.records[0].getMessage()


async def test_wrong_credentials_are_a_refused_connection_not_an_unreachable_broker(
    password_broker: MosquittoBroker, context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    SecretStore(Path(context.data_dir)).set("mqtt_password", "wrong-pw")
    cfg = config(password_broker.port, username="gateway01", password="secret:mqtt_password")
    assert await _first_warning(cfg, context, caplog) == (
        f"broker 127.0.0.1:{password_broker.port} refused the connection, commands cannot arrive: [code:135] Not "
        "authorized; check username, password and client_id against the broker's settings"
    )


async def test_a_broker_without_mqtt_5_is_a_refused_connection_that_says_what_to_set(
    v311_only_broker: tuple[int, list[int]],  # noqa: F811 - the fixture imported above
    context: AdapterContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, _ = v311_only_broker
    assert await _first_warning(config(port), context, caplog) == (
        f"broker 127.0.0.1:{port} refused the connection, commands cannot arrive: [code:132] Unsupported protocol "
        'version; set protocol = "3.1.1" (the broker does not speak MQTT 5)'
    )
