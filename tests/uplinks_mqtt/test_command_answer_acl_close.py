"""The listener's connection mosquitto closes after refusing a command answer by its ACL is named as such.

The finding: mosquitto answers an answer on cmdexe its ACL denies with PUBACK 0x87 and, with
`max_queued_messages 0` (the test broker's setting), closes the connection at once. The answer's own WARNING
named the refusal, but the listener then warned `broker … unreachable, commands cannot arrive: the broker
closed the connection`: `AnswerPublisher.refused_before` knew of refusals as too large only. Now that drop
names the topic, `not authorized (0x87)` and the ACL to check, at WARNING the first time and at DEBUG after,
as the drop after an answer refused as too large is.

Real mosquitto with an ACL file, the command listener, and aiomqtt playing the IoT Agent.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.adapter_api import AdapterContext
from gateway.records import Command, CommandResult
from tests.uplinks_mqtt.conftest import subscribe
from tests.uplinks_mqtt.test_command_answer_size import (
    CLOSES,
    KEEPS,
    REPORT,
    agent_and_listener,
    settled,
    start_broker,
    warnings,
)
from tests.uplinks_mqtt.test_command_answers import config, listening

pytestmark = pytest.mark.both_loops  # the refusal is noted when its PUBACK arrives: both loops' callback order

LOGGER = "gateway.uplinks.mqtt.commands"
# The gateway may take commands but not answer them: cmdexe granted read, not write (a common ACL slip);
# the agent's own client is anonymous too, and reads cmdexe
ACL = "topic readwrite /K3Y/+/cmd\ntopic read /K3Y/+/cmdexe\n"
FIX = "check the broker's ACL for this uplink's username: it must allow publishing on that topic"


def refused(device: str) -> str:
    return (
        f"result for device {device} not published: the broker refused it on /K3Y/{device}/cmdexe, got PUBACK 0x87 "
        f"Not authorized; {FIX} (the agent will let the command expire)"
    )


def closed(port: int, device: str) -> str:
    return (
        f"broker 127.0.0.1:{port} closed the connection after refusing an answer on /K3Y/{device}/cmdexe as not "
        f"authorized (0x87); reconnecting, commands cannot arrive meanwhile; {FIX}"
    )


async def written(command: Command) -> CommandResult:
    return CommandResult(command_id=command.command_id, ok=True, info="done")


@pytest.mark.parametrize("conf", [KEEPS, CLOSES], ids=["keeps-connection", "closes-connection"])
async def test_a_connection_closed_after_an_answer_the_acl_refuses_is_named_as_the_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, conf: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    broker = start_broker(tmp_path, f"acl_file {acl}\n{conf}")
    try:
        async with agent_and_listener(broker, tmp_path, dispatch=written) as (listener, agent):
            await agent.client.publish("/K3Y/dev1/cmd", b'{"relay_3": true}', qos=1)
            await settled(listener, 1)
            if conf is CLOSES:  # the drop is said once the listener is back
                async with asyncio.timeout(5):
                    while listener.counters.reconnects < 1:
                        await asyncio.sleep(0.01)
            else:
                await asyncio.sleep(0.3)  # time for a drop that must not come
    finally:
        broker.stop()
    c = listener.counters
    assert (c.ok, c.results_published, c.results_lost, c.results_too_large) == (1, 0, 1, 0)
    said = warnings(caplog)
    if conf is CLOSES:
        assert sorted(said) == sorted([refused("dev1"), closed(broker.port, "dev1")])  # each said as it comes
    else:
        assert said == [refused("dev1")]
        assert c.reconnects == 0
    everything = [r.getMessage() for r in caplog.records]
    assert not [line for line in everything if "unreachable" in line], everything


async def test_the_next_close_after_an_acl_refusal_is_no_news(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    broker = start_broker(tmp_path, f"acl_file {acl}\n{CLOSES}")
    try:
        async with agent_and_listener(broker, tmp_path, dispatch=written) as (listener, agent):
            for n, device in enumerate(["dev1", "dev2"], start=1):
                await listener.wait_connected(5)
                await agent.client.publish(f"/K3Y/{device}/cmd", b'{"relay_3": true}', qos=1)
                await settled(listener, n)
                async with asyncio.timeout(5):
                    while listener.counters.reconnects < n:
                        await asyncio.sleep(0.01)
    finally:
        broker.stop()
    assert (listener.counters.results_lost, listener.counters.reconnects) == (2, 2)
    # the second answer's refusal is the same run of answers not taken: DEBUG, like the drop it brings
    assert sorted(warnings(caplog)) == sorted([refused("dev1"), closed(broker.port, "dev1")])
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert closed(broker.port, "dev2") in debug, debug
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]


async def test_an_answer_refused_as_too_large_then_one_the_acl_refuses_are_each_news(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A drop of another cause is news, though a drop after a refusal was said before."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    acl = tmp_path / "acl"
    acl.write_text(ACL + "topic write /K3Y/big/cmdexe\n")  # answers for `big` allowed, too large though

    async def answers(command: Command) -> CommandResult:
        return CommandResult(command_id=command.command_id, ok=True, info=REPORT if command.name == "report" else "")

    # room for no answer to `report` but its command name and OK alone
    broker = start_broker(tmp_path, f"acl_file {acl}\nmessage_size_limit 20\n{CLOSES}")
    try:
        async with agent_and_listener(broker, tmp_path, dispatch=answers) as (listener, agent):
            await agent.client.publish("/K3Y/big/cmd", b'{"report": true}', qos=1)
            await settled(listener, 1)
            async with asyncio.timeout(5):
                while listener.counters.reconnects < 2:  # closed after the whole answer, and after its cut
                    await asyncio.sleep(0.01)
            await listener.wait_connected(5)
            await agent.client.publish("/K3Y/dev1/cmd", b'{"relay_3": true}', qos=1)
            await settled(listener, 2)
            async with asyncio.timeout(5):
                while listener.counters.reconnects < 3:
                    await asyncio.sleep(0.01)
    finally:
        broker.stop()
    c = listener.counters
    assert (c.results_published, c.results_lost, c.results_shortened) == (1, 1, 1)
    said = warnings(caplog)
    assert closed(broker.port, "dev1") in said, said
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]


@pytest.mark.parametrize("conf", [KEEPS, CLOSES], ids=["keeps-connection", "closes-connection"])
async def test_over_mqtt_3_1_1_mosquitto_acknowledges_an_answer_its_acl_denies_and_drops_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, conf: str
) -> None:
    """What MQTT.md says of 3.1.1: a PUBACK has no code, so the denied answer counts as published and the agent
    never gets it; a broker that then closes the connection cannot be told from an outage."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    broker = start_broker(tmp_path, f"acl_file {acl}\n{conf}")
    context = AdapterContext(gateway_id="gw-kumamoto-01", data_dir=str(tmp_path))
    try:
        async with (
            listening(config(broker.port, protocol="3.1.1"), context) as listener,
            subscribe(broker, "/K3Y/+/cmdexe") as agent,
        ):
            await agent.client.publish("/K3Y/dev1/cmd", b'{"relay_3": true}', qos=1)
            await settled(listener, 1)
            if conf is CLOSES:
                async with asyncio.timeout(5):
                    while listener.counters.reconnects < 1:
                        await asyncio.sleep(0.01)
            else:
                await asyncio.sleep(0.3)  # time for an answer, or a drop, that must not come
    finally:
        broker.stop()
    c = listener.counters
    assert (c.ok, c.results_published, c.results_lost) == (1, 1, 0)
    assert agent.messages == []
    if conf is CLOSES:
        assert warnings(caplog) == [
            f"broker 127.0.0.1:{broker.port} unreachable, commands cannot arrive: the broker closed the connection"
        ]
    else:
        assert (warnings(caplog), c.reconnects) == ([], 0)
