"""A command for an adapter that is not running (backing off after a failure, or stopped) is answered at
once with the adapter's state and last error, and never handed to the adapter.

Before, the router called handle() anyway: a locker whose bus had failed kept the kiosk's pickup
waiting out the router's 10 s deadline, the kiosk gave up after 5 s ("is the gateway busy or
stopped?") and the unlock could still happen once the adapter reconnected. Through the real runtime
and its control socket, with test families registered as tests/uplinks do.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gateway import registry
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.records import Attribute, Command, CommandResult, Emit, Reading, Source, utc_now
from tests.control.running import running_gateway, until
from tests.support.orion_double import OrionDouble

LOCK_ID = "urn:ngsi-ld:Lock:boom-1"


class LockConfig(AdapterConfig):
    pass


class _Lock:
    """Reports its lock once; `handle` waits for a connection that never comes, as a reconnecting adapter's does."""

    config_model: ClassVar[type[AdapterConfig]] = LockConfig
    instances: ClassVar[list[_Lock]] = []

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        self.name = config.name
        self.handled: list[Command] = []
        self.runs = 0
        _Lock.instances.append(self)

    async def _report(self, emit: Emit) -> None:
        await emit(
            Reading(
                entity_id=LOCK_ID,
                entity_type="Lock",
                observed_at=utc_now(),
                attributes={"state": Attribute(value="locked")},
                source=Source(adapter=self.name, device="d1"),
            )
        )

    async def handle(self, command: Command) -> CommandResult:
        self.handled.append(command)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class FailingLock(_Lock):
    """The device refuses every connection after the first report: the supervisor restarts it forever."""

    async def run(self, emit: Emit) -> None:
        self.runs += 1
        if self.runs == 1:
            await self._report(emit)
        # later runs fail without awaiting: the adapter is never seen running between two failures
        raise ConnectionRefusedError(111, "device refused")


class FinishedLock(_Lock):
    """Reports once and returns: the supervisor marks it stopped."""

    async def run(self, emit: Emit) -> None:
        await self._report(emit)


@pytest.fixture
def locks(monkeypatch: pytest.MonkeyPatch) -> None:
    load = registry.load
    extra: dict[str, Any] = {"test-failing-lock": FailingLock, "test-finished-lock": FinishedLock}

    def with_test_families(group: str, name: str) -> Any:
        return extra[name] if name in extra else load(group, name)

    monkeypatch.setattr(registry, "load", with_test_families)
    _Lock.instances.clear()


def config_text(data_dir: Path, orion_url: str, lock_type: str) -> str:
    return f"""[gateway]
id = "gw-locks"
data_dir = "{data_dir}"

[[adapters]]
name = "boom"
type = "{lock_type}"

[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_url}"
"""


@pytest.mark.usefixtures("locks")
async def test_a_command_for_a_backing_off_adapter_is_answered_at_once_and_never_handed_over(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    text = config_text(tmp_path / "data", orion_double.url, "test-failing-lock")
    async with running_gateway(tmp_path, orion_double.url, text=text) as gw:
        gateway = gw.runtime.gateway
        assert gateway.supervisor is not None
        supervisor = gateway.supervisor
        await until(
            lambda: (
                gateway.router.owner(LOCK_ID) == "boom"
                and [(s.state.value, s.restarts >= 2) for s in supervisor.status()] == [("backing-off", True)]
            ),
            "the lock adapter backing off after failing twice",
        )
        started = time.monotonic()
        result = await gw.client.call("command", entity_id=LOCK_ID, name="unlock", value=None, actor="cli")
        took = time.monotonic() - started
        [lock] = _Lock.instances
        assert result["ok"] is False
        assert result["info"] == (
            f'command unlock: adapter boom owns "{LOCK_ID}" but is not running, got state backing-off '
            "(last error: ConnectionRefusedError: [Errno 111] device refused); not sent to the device, "
            "try again once `edgegw status` shows the adapter running"
        )
        assert took < 1.0, f"answered after {took:.1f} s"
        assert lock.handled == []  # the device can never act on a command its user was told failed
        assert gateway.router.counters.not_running == 1
        assert gateway.router.counters.failed == 1


@pytest.mark.usefixtures("locks")
async def test_a_command_for_a_stopped_adapter_is_answered_at_once_with_its_state(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    text = config_text(tmp_path / "data", orion_double.url, "test-finished-lock")
    async with running_gateway(tmp_path, orion_double.url, text=text) as gw:
        gateway = gw.runtime.gateway
        assert gateway.supervisor is not None
        supervisor = gateway.supervisor
        await until(
            lambda: (
                gateway.router.owner(LOCK_ID) == "boom" and [s.state.value for s in supervisor.status()] == ["stopped"]
            ),
            "the lock adapter finished",
        )
        started = time.monotonic()
        result = await gw.client.call("command", entity_id=LOCK_ID, name="unlock", value=None, actor="cli")
        took = time.monotonic() - started
        [lock] = _Lock.instances
        assert result["info"] == (
            f'command unlock: adapter boom owns "{LOCK_ID}" but is not running, got state stopped; '
            "not sent to the device, try again once `edgegw status` shows the adapter running"
        )
        assert result["ok"] is False
        assert took < 1.0, f"answered after {took:.1f} s"
        assert lock.handled == []
