"""Commands as a capability: any uplink implementing CommandSource gets commands routed to the adapter that
owns the entity, through the running Gateway, with no family named by the runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gateway import registry
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.records import (
    Attribute,
    Command,
    CommandResult,
    Emit,
    Reading,
    Source,
    utc_now,
)
from gateway.uplinks.api import (
    DELIVERED,
    CommandRoutes,
    CommandSource,
    Lifecycle,
    Outcome,
    UplinkConfig,
)

RELAY_ID = "urn:ngsi-ld:Relay:cabinet-1"


class RelayConfig(AdapterConfig):
    pass


class RelayAdapter:
    """A device that reports its relay once and switches it on command."""

    config_model: ClassVar[type[AdapterConfig]] = RelayConfig

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        self.name = config.name
        self.handled: list[Command] = []

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
        return CommandResult(command_id=command.command_id, ok=True, info=f"{command.name} set to {command.value}")


class LoopbackConfig(UplinkConfig):
    pass


class LoopbackUplink(Lifecycle):
    """Takes every record, and is a command source whose 'platform' is the test."""

    config_model: ClassVar[type[UplinkConfig]] = LoopbackConfig
    instances: ClassVar[list[LoopbackUplink]] = []

    def __init__(self, config: UplinkConfig, context: AdapterContext) -> None:
        self.name = config.name
        self.routes: CommandRoutes | None = None
        self.events: list[str] = []
        LoopbackUplink.instances.append(self)

    async def start(self) -> None:
        self.events.append("start")

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        return [DELIVERED] * len(batch)

    async def close(self) -> None:
        self.events.append("close")

    async def start_commands(self, routes: CommandRoutes) -> None:
        self.routes = routes
        self.events.append("start_commands")

    async def stop_commands(self) -> None:
        self.events.append("stop_commands")


class PlainUplink(LoopbackUplink):
    """The same without the capability: the runtime must leave it alone."""

    start_commands = None  # type: ignore[assignment]
    stop_commands = None  # type: ignore[assignment]


@pytest.fixture
def families(monkeypatch: pytest.MonkeyPatch) -> None:
    load = registry.load
    extra: dict[str, Any] = {"test-relay": RelayAdapter, "test-loopback": LoopbackUplink, "test-plain": PlainUplink}

    def with_test_families(group: str, name: str) -> Any:
        return extra[name] if name in extra else load(group, name)

    monkeypatch.setattr(registry, "load", with_test_families)
    LoopbackUplink.instances.clear()


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.usefixtures("families")
async def test_a_command_source_gets_commands_to_the_owning_adapter(tmp_path: Path) -> None:
    gw = Gateway(
        parse_config(
            {
                "gateway": {"id": "gw1", "data_dir": str(tmp_path / "data")},
                "adapters": [{"name": "cabinet", "type": "test-relay"}],
                "uplinks": [{"name": "platform", "type": "test-loopback"}, {"name": "archive", "type": "test-plain"}],
            }
        )
    )
    await gw.start()
    try:
        platform, archive = LoopbackUplink.instances
        assert gw.command_sources == [platform]
        assert isinstance(platform, CommandSource) and not isinstance(archive, CommandSource)
        await until(lambda: gw.router.owner(RELAY_ID) == "cabinet")
        assert platform.routes is not None
        result = await platform.routes.dispatch(
            Command(command_id="c1", entity_id=RELAY_ID, name="state", value=True, uplink="platform")
        )
        assert result == CommandResult(command_id="c1", ok=True, info="state set to True")
        unknown = await platform.routes.dispatch(Command(command_id="c2", entity_id="urn:x", name="state"))
        assert not unknown.ok
        assert unknown.info == (
            'command state: no adapter owns entity "urn:x", got no reading of it since the '
            "gateway started; check the entity id, or wait for the device's first reading"
        )
    finally:
        await gw.stop()
    # once each, in that order; the delivery loop's own start may come before or between them (the gateway's start
    # waits for its processing stage in a worker thread meanwhile)
    commands = [e for e in platform.events if e.endswith("_commands")]
    assert commands == ["start_commands", "stop_commands"]
    assert "stop_commands" not in archive.events


async def test_an_uplink_is_an_async_context_manager(tmp_path: Path) -> None:
    uplink = LoopbackUplink(
        LoopbackConfig(name="u", type="test-loopback"), AdapterContext(gateway_id="g", data_dir=str(tmp_path))
    )

    async def fail_inside_the_block() -> None:
        async with uplink as entered:
            assert entered is uplink and uplink.events == ["start"]
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match=r"^inside$"):
        await fail_inside_the_block()
    assert uplink.events == ["start", "close"]
