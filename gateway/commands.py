"""Routes a platform Command to the adapter that owns its entity, with a timeout, and always answers.

Ownership is learned from the readings the gateway stores (`note`, called on every emit) and from
explicit `claim`s; memory is bounded by an LRU of entity ids. An uplink whose device ids are not the
entity ids (an IoT Agent `device_id` template) gets a reverse map from `device_index(template)`,
filled when an entity is first seen, so the per-reading cost stays one dict lookup.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway import redact
from gateway.errors import ReadingError
from gateway.logs import component_logger
from gateway.ngsi import iota
from gateway.records import Command, CommandResult, Reading, Source

__all__ = [
    "CALLER_WAIT_S",
    "DEFAULT_MAX_ENTITIES",
    "DEFAULT_TIMEOUT_S",
    "AdapterStates",
    "CommandRouter",
    "DeviceIndex",
    "RouterCounters",
]

DEFAULT_TIMEOUT_S = 10.0
# How long a caller on the box (the control socket's `command`) waits: past the router's deadline, so
# it always reads the router's own answer (a timeout says the device may still act) and never gives up
# on a command that is still running; the margin covers the socket and a loaded loop.
CALLER_WAIT_S = DEFAULT_TIMEOUT_S + 5.0
DEFAULT_MAX_ENTITIES = 100_000

Handle = Callable[[Command], Awaitable[CommandResult]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class RouterCounters:
    """Running totals for metrics."""

    dispatched: int = 0
    ok: int = 0
    failed: int = 0
    timeouts: int = 0
    unknown_entity: int = 0
    not_running: int = 0  # refused at once: the owning adapter was backing off or stopped
    evicted: int = 0


# What the router keeps per entity: (adapter name, entity type, device). A tuple, not a dataclass:
# `note` runs on every reading and reads element 0 only.
_Entry = tuple[str, str, str]


# States in which an adapter gets its commands: "starting" lasts until its task's first step, "running"
# until it fails or stops; "backing-off" (after a failure) and "stopped" do not
_TAKES_COMMANDS = frozenset({"starting", "running"})


class AdapterStates(Protocol):
    """A read-only view of how the adapters run (the supervisor is one): asked before each command."""

    def run_state(self, name: str) -> tuple[str, str] | None:
        """(state, last error) of adapter `name`, e.g. ("backing-off", "OSError: …"); None if not supervised."""
        ...


class DeviceIndex:
    """IoT Agent device id → entity id for one `device_id` template; filled by the router."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._entities: dict[str, str] = {}

    def entity_of(self, device_id: str) -> str | None:
        return self._entities.get(device_id)

    def __len__(self) -> int:
        return len(self._entities)

    def _render(self, entity_id: str, entry: _Entry) -> str | None:
        # the uplink names a device with iota.device_id(reading, template): render it the same way
        adapter, entity_type, device = entry
        probe = Reading(
            entity_id=entity_id,
            entity_type=entity_type,
            attributes={},
            observed_at=_EPOCH,
            source=Source(adapter=adapter, device=device),
        )
        try:
            return iota.device_id(probe, self.template)
        except (ReadingError, KeyError, IndexError, ValueError):
            return None  # the uplink cannot publish this entity either, so no command can name it

    def _add(self, entity_id: str, entry: _Entry) -> None:
        device_id = self._render(entity_id, entry)
        if device_id is not None:
            # several entities of one device may share a device id: the first one seen keeps it
            self._entities.setdefault(device_id, entity_id)

    def _remove(self, entity_id: str, entry: _Entry) -> None:
        device_id = self._render(entity_id, entry)
        if device_id is not None and self._entities.get(device_id) == entity_id:
            del self._entities[device_id]


class CommandRouter:
    """Knows which adapter owns which entity and hands each Command to it; see the module docstring."""

    def __init__(
        self, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_entities: int = DEFAULT_MAX_ENTITIES, name: str = "commands"
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"commands: timeout_s must be > 0, got {timeout_s}")
        if max_entities < 1:
            raise ValueError(f"commands: max_entities must be >= 1, got {max_entities}")
        self.timeout_s = timeout_s
        self.max_entities = max_entities
        self.counters = RouterCounters()
        self._owners: OrderedDict[str, _Entry] = OrderedDict()
        self._adapters: dict[str, object] = {}
        self._indexes: dict[str, DeviceIndex] = {}
        self._log = component_logger(__name__, name)
        # set by the gateway once its supervisor exists; None: every known adapter is taken as running
        self.states: AdapterStates | None = None
        # told of every command and its result (the gateway audits the platform's); never fails a command
        self.on_result: Callable[[Command, CommandResult], Awaitable[None]] | None = None

    # -- who owns what ---------------------------------------------------------------------------------

    def add_adapter(self, name: str, adapter: object) -> None:
        """Make a running adapter instance reachable under the name its readings carry (`source.adapter`)."""
        self._adapters[name] = adapter

    def remove_adapter(self, name: str) -> None:
        self._adapters.pop(name, None)

    def note(self, reading: Reading) -> None:
        """Learn (or refresh) the owner of a reading's entity. On the emit path: keep it cheap."""
        entity_id = reading.entity_id
        entry = self._owners.get(entity_id)
        if entry is not None and entry[0] == reading.source.adapter:
            self._owners.move_to_end(entity_id)
            return
        self._learn(entity_id, (reading.source.adapter, reading.entity_type, reading.source.device))

    def claim(self, entity_id: str, adapter: str, *, entity_type: str = "", device: str = "") -> None:
        """Say explicitly that `adapter` owns `entity_id` (e.g. at start, before its first reading)."""
        entry = self._owners.get(entity_id)
        if entry is not None and entry == (adapter, entity_type, device):
            self._owners.move_to_end(entity_id)
            return
        self._learn(entity_id, (adapter, entity_type, device))

    def _learn(self, entity_id: str, entry: _Entry) -> None:
        old = self._owners.get(entity_id)
        if old is not None:
            for index in self._indexes.values():
                index._remove(entity_id, old)  # noqa: SLF001 - the router maintains its indexes
            if old[0] != entry[0]:
                self._log.info("entity %s moved from adapter %s to %s", entity_id, old[0], entry[0])
        self._owners[entity_id] = entry
        self._owners.move_to_end(entity_id)
        for index in self._indexes.values():
            index._add(entity_id, entry)  # noqa: SLF001
        while len(self._owners) > self.max_entities:
            gone_id, gone = self._owners.popitem(last=False)
            self.counters.evicted += 1
            for index in self._indexes.values():
                index._remove(gone_id, gone)  # noqa: SLF001
            if self.counters.evicted == 1:
                # once: a gateway with more live entities than the bound is worth a look, not a log flood
                self._log.warning(
                    "more than %d entities seen: forgetting the least recently seen (%s); "
                    "commands to forgotten entities fail until they report again",
                    self.max_entities,
                    gone_id,
                )

    def owner(self, entity_id: str) -> str | None:
        """The name of the adapter that owns `entity_id`, if known."""
        entry = self._owners.get(entity_id)
        return None if entry is None else entry[0]

    def device_index(self, template: str) -> DeviceIndex:
        """The reverse map for an IoT Agent `device_id` template (one per template, shared)."""
        index = self._indexes.get(template)
        if index is None:
            index = self._indexes[template] = DeviceIndex(template)
            for entity_id, entry in self._owners.items():
                index._add(entity_id, entry)  # noqa: SLF001
        return index

    def __len__(self) -> int:
        return len(self._owners)

    # -- dispatch --------------------------------------------------------------------------------------

    async def dispatch(self, command: Command) -> CommandResult:
        """Run a command on its entity's adapter; never raises (except cancellation), always a result."""
        result = await self._dispatch(command)
        if self.on_result is not None:
            try:
                await self.on_result(command, result)
            except Exception as exc:  # recording it must not change what the platform is told
                self._log.error("command %s for %s: not recorded: %s", command.name, command.entity_id, exc)
        return result

    async def _dispatch(self, command: Command) -> CommandResult:
        self.counters.dispatched += 1
        where = f"command {command.name}"
        # entity and command name only: command values may be personal (a locker PIN, a card number)
        self._log.info(
            "%s for %s received (id %s, via %s)", where, command.entity_id, command.command_id, command.uplink or "-"
        )
        adapter_name = self.owner(command.entity_id)
        if adapter_name is None:
            self.counters.unknown_entity += 1
            return self._fail(
                command,
                f'{where}: no adapter owns entity "{command.entity_id}", got no reading '
                "of it since the gateway started; check the entity id, or wait for the "
                "device's first reading",
            )
        adapter = self._adapters.get(adapter_name)
        if adapter is None:
            return self._fail(
                command,
                f'{where}: adapter {adapter_name} owns "{command.entity_id}" but is not running, got no instance of it',
            )
        handle: Any = getattr(adapter, "handle", None)
        if not callable(handle):
            return self._fail(command, f"{where}: adapter {adapter_name} takes no commands")
        refused = self._not_running(adapter_name)
        if refused is not None:
            # handed over, the command would wait for a connection the adapter may regain after its user
            # gave up: a locker would open for nobody. Said at once, with what the supervisor knows.
            self.counters.not_running += 1
            return self._fail(
                command,
                f'{where}: adapter {adapter_name} owns "{command.entity_id}" but is not running, got {refused}; '
                "not sent to the device, try again once `edgegw status` shows the adapter running",
            )
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                result = await handle(command)
        except Exception as exc:  # an adapter's bug must not take the command path down
            if isinstance(exc, TimeoutError) and deadline.expired():
                self.counters.timeouts += 1
                return self._fail(
                    command,
                    f"{where}: adapter {adapter_name} gave no result within "
                    f"{self.timeout_s:g} s; the device may still act on it",
                )
            text = str(exc) or "no message"
            return self._fail(command, f"{where}: adapter {adapter_name} failed, got {type(exc).__name__}: {text}")
        if not isinstance(result, CommandResult):
            return self._fail(
                command, f"{where}: adapter {adapter_name} answered no CommandResult, got {type(result).__name__}"
            )
        if result.command_id != command.command_id:
            result = CommandResult(command_id=command.command_id, ok=result.ok, info=result.info)
        if result.ok:
            self.counters.ok += 1
            self._log.info("%s for %s done: %s", where, command.entity_id, result.info)
        else:
            self.counters.failed += 1
            self._log.warning("%s for %s failed: %s", where, command.entity_id, result.info)
        return result

    def _not_running(self, adapter_name: str) -> str | None:
        """None if the adapter runs (or nothing says otherwise), else its state and last error, as said."""
        run = self.states.run_state(adapter_name) if self.states is not None else None
        if run is None or run[0] in _TAKES_COMMANDS:
            return None
        state, last_error = run
        # the answer goes to the platform and the audit log: an adapter's error may quote a URL with a secret
        return f"state {state} (last error: {redact.text(last_error)})" if last_error else f"state {state}"

    def _fail(self, command: Command, info: str) -> CommandResult:
        self.counters.failed += 1
        self._log.warning("%s", info)
        return CommandResult(command_id=command.command_id, ok=False, info=info)
