"""A broker host that does not resolve, as the uplink and its command listener tell it: the resolver's words.

The review's finding: "[Errno -2] Unknown error -2" (os.strerror of a getaddrinfo code).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.adapter_api import AdapterContext
from gateway.records import Command, CommandResult
from gateway.uplinks.api import Status
from gateway.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from gateway.uplinks.mqtt.commands import MqttCommandListener
from tests.mqtt.test_resolve_reason import UNRESOLVABLE, resolver_says
from tests.uplinks_mqtt.conftest import reading

CONFIG = {"name": "pref-mqtt", "type": "mqtt", "host": UNRESOLVABLE, "apikey": "K3Y", "connect_timeout_s": 5}


async def test_the_uplink_says_the_host_does_not_resolve(
    context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.uplinks.mqtt")
    up = MqttUplink(MqttUplinkConfig.model_validate(CONFIG), context)
    [outcome] = await up.deliver([reading()])
    why = f"cannot resolve host {UNRESOLVABLE}: {resolver_says(UNRESOLVABLE)}"
    assert outcome.status is Status.RETRY
    assert outcome.reason == f"broker {UNRESOLVABLE}:1883 unreachable: {why}"
    assert [r.getMessage() for r in caplog.records] == [
        f"broker {UNRESOLVABLE}:1883 unreachable, readings stay buffered: {why}"
    ]


async def test_the_command_listener_says_the_host_does_not_resolve(
    context: AdapterContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.uplinks.mqtt.commands")

    async def dispatch(command: Command) -> CommandResult:
        raise AssertionError("no command can come")

    config = MqttUplinkConfig.model_validate(CONFIG | {"commands": "on"})
    listener = MqttCommandListener(config, context, dispatch)
    listener.start()
    try:
        async with asyncio.timeout(10):
            while not caplog.records:
                await asyncio.sleep(0.01)
    finally:
        await listener.stop()
    assert caplog.records[0].getMessage() == (
        f"broker {UNRESOLVABLE}:1883 unreachable, commands cannot arrive: cannot resolve host {UNRESOLVABLE}: "
        f"{resolver_says(UNRESOLVABLE)}"
    )
