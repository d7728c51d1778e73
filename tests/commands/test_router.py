"""CommandRouter: ownership learned from readings and claims, the LRU bound, and every way a command fails."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from gateway.commands import CommandRouter
from gateway.errors import DeviceTimeout
from gateway.ngsi import iota
from gateway.records import Attribute, Command, CommandResult, Reading, Source

NOW = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)


def reading(entity_id: str, adapter: str = "cabinet", device: str = "relays", entity_type: str = "Device") -> Reading:
    return Reading(
        entity_id=entity_id,
        entity_type=entity_type,
        attributes={"relay1": Attribute(value=True)},
        observed_at=NOW,
        source=Source(adapter=adapter, device=device),
    )


def cmd(entity_id: str, name: str = "relay_1", value: object = True, command_id: str = "c1") -> Command:
    return Command(command_id=command_id, entity_id=entity_id, name=name, value=value, uplink="pref-mqtt")


class Recorder:
    """An adapter that takes commands and remembers them."""

    def __init__(self, ok: bool = True, delay: float = 0.0) -> None:
        self.seen: list[Command] = []
        self.ok = ok
        self.delay = delay

    async def handle(self, command: Command) -> CommandResult:
        self.seen.append(command)
        if self.delay:
            await asyncio.sleep(self.delay)
        return CommandResult(command_id=command.command_id, ok=self.ok, info=f"did {command.name}")


class Deaf:
    """An adapter without commands."""


class Broken:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def handle(self, command: Command) -> CommandResult:
        raise self.exc


async def test_the_owner_is_learned_from_readings_and_gets_the_command() -> None:
    router = CommandRouter()
    rec = Recorder()
    router.add_adapter("cabinet", rec)
    router.note(reading("urn:a"))
    assert router.owner("urn:a") == "cabinet" and router.owner("urn:b") is None
    result = await router.dispatch(cmd("urn:a"))
    assert result == CommandResult(command_id="c1", ok=True, info="did relay_1")
    assert rec.seen == [cmd("urn:a")]
    assert (router.counters.dispatched, router.counters.ok, router.counters.failed) == (1, 1, 0)


async def test_an_entity_that_moves_to_another_adapter_follows_it() -> None:
    router = CommandRouter()
    first, second = Recorder(), Recorder()
    router.add_adapter("one", first)
    router.add_adapter("two", second)
    router.note(reading("urn:a", adapter="one"))
    router.note(reading("urn:a", adapter="two"))
    assert router.owner("urn:a") == "two" and len(router) == 1
    await router.dispatch(cmd("urn:a"))
    assert (first.seen, len(second.seen)) == ([], 1)


async def test_an_explicit_claim_routes_before_any_reading() -> None:
    router = CommandRouter()
    rec = Recorder()
    router.add_adapter("lockers", rec)
    router.claim("urn:ngsi-ld:Locker:7", "lockers", entity_type="Locker", device="bank1")
    assert (await router.dispatch(cmd("urn:ngsi-ld:Locker:7", name="unlock"))).ok


def test_the_lru_forgets_the_least_recently_seen_entity() -> None:
    router = CommandRouter(max_entities=3)
    for e in ("urn:1", "urn:2", "urn:3"):
        router.note(reading(e))
    router.note(reading("urn:1"))  # seen again: now the most recent
    router.note(reading("urn:4"))
    assert [router.owner(e) for e in ("urn:1", "urn:2", "urn:3", "urn:4")] == ["cabinet", None, "cabinet", "cabinet"]
    assert len(router) == 3 and router.counters.evicted == 1


def test_the_device_index_renders_the_uplink_template_and_follows_evictions() -> None:
    router = CommandRouter(max_entities=2)
    router.note(reading("urn:ngsi-ld:Device:gw1-relays", device="relays"))
    index = router.device_index("{adapter}-{device}")  # backfilled from what is already known
    assert index.entity_of("cabinet-relays") == "urn:ngsi-ld:Device:gw1-relays"
    # the same device id as the uplink gives it
    assert iota.device_id(reading("urn:ngsi-ld:Device:gw1-relays"), "{adapter}-{device}") == "cabinet-relays"
    # a second entity of the same device does not take the device id over
    router.note(reading("urn:ngsi-ld:Alert:gw1-relays", device="relays", entity_type="Alert"))
    assert index.entity_of("cabinet-relays") == "urn:ngsi-ld:Device:gw1-relays"
    router.note(reading("urn:th", device="th"))  # evicts the relay Device entity
    assert index.entity_of("cabinet-relays") is None and index.entity_of("cabinet-th") == "urn:th"
    assert router.device_index("{adapter}-{device}") is index


def test_an_entity_whose_device_id_cannot_be_rendered_is_not_indexed() -> None:
    router = CommandRouter()
    index = router.device_index("{device}")
    router.note(reading("urn:a", device=""))  # empty device id: the uplink cannot publish it either
    router.note(reading("urn:b", device="a/b"))
    assert len(index) == 0 and router.owner("urn:a") == "cabinet"


async def test_unknown_entity_and_adapters_that_cannot_take_it(caplog: pytest.LogCaptureFixture) -> None:
    router = CommandRouter()
    router.note(reading("urn:deaf", adapter="wifi"))
    router.add_adapter("wifi", Deaf())
    router.note(reading("urn:gone", adapter="removed"))
    caplog.set_level(logging.INFO, logger="gateway.commands")
    unknown = await router.dispatch(cmd("urn:nobody", value="4242-secret-pin"))
    assert unknown == CommandResult(
        command_id="c1",
        ok=False,
        info=(
            'command relay_1: no adapter owns entity "urn:nobody", got no reading of it since the gateway started; '
            "check the entity id, or wait for the device's first reading"
        ),
    )
    deaf = await router.dispatch(cmd("urn:deaf"))
    assert deaf.info == "command relay_1: adapter wifi takes no commands" and not deaf.ok
    gone = await router.dispatch(cmd("urn:gone"))
    assert gone.info == 'command relay_1: adapter removed owns "urn:gone" but is not running, got no instance of it'
    assert router.counters.unknown_entity == 1 and router.counters.failed == 3
    # logged with entity and name, never the value (it may be personal)
    assert "command relay_1 for urn:nobody received (id c1, via pref-mqtt)" in caplog.messages
    assert not any("4242" in m for m in caplog.messages)


async def test_an_adapter_that_raises_gives_an_error_result_not_a_crash() -> None:
    router = CommandRouter()
    router.note(reading("urn:a", adapter="bad"))
    router.add_adapter("bad", Broken(RuntimeError("register map not loaded")))
    result = await router.dispatch(cmd("urn:a"))
    assert result == CommandResult(
        command_id="c1",
        ok=False,
        info=("command relay_1: adapter bad failed, got RuntimeError: register map not loaded"),
    )
    # the adapter's own TimeoutError is its error, not the router's timeout
    router.add_adapter("bad", Broken(DeviceTimeout("relays: no answer within 0.2 s")))
    own = await router.dispatch(cmd("urn:a"))
    assert own.info == "command relay_1: adapter bad failed, got DeviceTimeout: relays: no answer within 0.2 s"
    assert router.counters.timeouts == 0


async def test_a_slow_adapter_times_out() -> None:
    router = CommandRouter(timeout_s=0.05)
    slow = Recorder(delay=5.0)
    router.add_adapter("cabinet", slow)
    router.note(reading("urn:a"))
    result = await router.dispatch(cmd("urn:a"))
    assert result == CommandResult(
        command_id="c1",
        ok=False,
        info=("command relay_1: adapter cabinet gave no result within 0.05 s; the device may still act on it"),
    )
    assert router.counters.timeouts == 1 and len(slow.seen) == 1


async def test_a_failed_result_is_passed_on_and_its_id_is_the_commands() -> None:
    router = CommandRouter()

    class WrongId:
        async def handle(self, command: Command) -> CommandResult:
            return CommandResult(command_id="other", ok=False, info="relays: refused")

    router.add_adapter("cabinet", WrongId())
    router.note(reading("urn:a"))
    assert await router.dispatch(cmd("urn:a", command_id="c9")) == CommandResult(
        command_id="c9", ok=False, info="relays: refused"
    )


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^commands: timeout_s must be > 0, got 0$"):
        CommandRouter(timeout_s=0)
    with pytest.raises(ValueError, match=r"^commands: max_entities must be >= 1, got 0$"):
        CommandRouter(max_entities=0)
