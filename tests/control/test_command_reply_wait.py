"""A caller on the box waits for a command longer than the router does, so it always gets the router's answer.

Before, every on-box caller (the web UI, the kiosk's pickup, `edgegw locker open`) built its
ControlClient with the default 5 s and gave up on a command the router still ran for 5 s more: the
user read "is the gateway busy or stopped?" while an unlock could still happen. Through a real
gateway and its control socket, with a client built as those callers build it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import ClassVar

import pytest

from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.commands import DEFAULT_TIMEOUT_S
from gateway.control.client import ControlClient
from gateway.records import Attribute, Command, CommandResult, Emit, Reading, Source, utc_now
from tests.control.running import running_gateway, until
from tests.support.entry_points import add_test_family
from tests.support.orion_double import OrionDouble

RELAY_ID = "urn:ngsi-ld:Relay:slow-1"


class SlowRelayConfig(AdapterConfig):
    pass


class SlowRelay:
    """Runs, reports its relay, and never answers a command (a device that took it and went quiet)."""

    config_model: ClassVar[type[AdapterConfig]] = SlowRelayConfig
    instances: ClassVar[list[SlowRelay]] = []

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        self.name = config.name
        self.handled: list[Command] = []
        SlowRelay.instances.append(self)

    async def run(self, emit: Emit) -> None:
        await emit(
            Reading(
                entity_id=RELAY_ID,
                entity_type="Relay",
                observed_at=utc_now(),
                attributes={"state": Attribute(value=False)},
                source=Source(adapter=self.name, device="r1"),
            )
        )
        await asyncio.Event().wait()

    async def handle(self, command: Command) -> CommandResult:
        self.handled.append(command)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
def slow_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    add_test_family(monkeypatch, "test-slow-relay", SlowRelay)
    SlowRelay.instances.clear()


@pytest.mark.usefixtures("slow_relay")
async def test_a_caller_with_the_default_timeout_gets_the_routers_own_answer(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    text = f"""[gateway]
id = "gw-slow"
data_dir = "{tmp_path / "data"}"

[[adapters]]
name = "relays"
type = "test-slow-relay"

[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_double.url}"
"""
    async with running_gateway(tmp_path, orion_double.url, text=text) as gw:
        await until(lambda: gw.runtime.gateway.router.owner(RELAY_ID) == "relays", "the relay's first reading")
        # as gateway/web/cli.py, gateway/web/kiosk.py's caller and adapters/locker/cli.py build theirs
        async with ControlClient(gw.socket) as client:
            started = time.monotonic()
            result = await client.call("command", entity_id=RELAY_ID, name="on", value=None, actor="cli")
            took = time.monotonic() - started
            # the same connection serves the next call: no late reply is left on it
            assert (await client.call("status"))["gateway"] == "gw-slow"
        [relay] = SlowRelay.instances
        assert [c.name for c in relay.handled] == ["on"]
        assert result == {
            "command_id": result["command_id"],
            "ok": False,
            "info": "command on: adapter relays gave no result within 10 s; the device may still act on it",
        }
        assert DEFAULT_TIMEOUT_S <= took < DEFAULT_TIMEOUT_S + 2, f"answered after {took:.1f} s"
