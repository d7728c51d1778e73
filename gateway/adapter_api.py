"""The contract between the supervisor and a southbound adapter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from gateway.configbase import NamedSection
from gateway.ngsi.config import ValueEncoding
from gateway.processing.api import ProcessorContext
from gateway.records import Command, CommandResult, Emit

if TYPE_CHECKING:
    from gateway.mail.queue import MailQueue
    from gateway.processing.api import ProcessorConfig


class AdapterConfig(NamedSection):
    """Keys every `[[adapters]]` entry has; a family's config subclasses this.

    Optional hooks a family's config may define; `gateway.config.parse_config` finds them (it never
    names a family) and lists their errors with every other one:

    - `check_with_processing(index, processing)` (`ProcessingChecked`): problems between this
      adapter and the `[[processing]]` entries.
    """


@runtime_checkable
class ProcessingChecked(Protocol):
    """Optional, on an adapter's config: what this adapter needs from the `[[processing]]` entries.

    E.g. an option that leaves personal data to a pseudonymize entry needs one that covers it. Called
    with the adapter's position in `[[adapters]]` and every entry in file order, only when every entry
    is valid (an entry with errors might have been the one it needs). Returns whole error lines,
    `adapters[<index>].<key>: <what>, got <value>; <fix>`; [] when satisfied.
    """

    def check_with_processing(self, index: int, processing: Sequence[ProcessorConfig]) -> list[str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterContext:
    """What the runtime gives an adapter besides its config."""

    gateway_id: str
    data_dir: str
    # the one outgoing-mail component (gateway/mail): `await mail.enqueue(Mail(...))`; None without [mail]
    mail: MailQueue | None = None
    # retired pseudonym keys are kept this long (gateway.processing.api.ProcessorContext.keep_old_days)
    keep_old_days: int | None = None
    # `[ngsi] value_encoding`, which the gateway checks every reading with before the buffer (App._emit): an
    # adapter that acts on a device for a reading (a book's security released for its loan) checks it first
    value_encoding: ValueEncoding = ValueEncoding.PERCENT

    def processor_context(self) -> ProcessorContext:
        """What a processor an adapter builds for itself (a pseudonymizer) needs from the gateway."""
        return ProcessorContext(gateway_id=self.gateway_id, data_dir=self.data_dir, keep_old_days=self.keep_old_days)


class Adapter(Protocol):
    config_model: ClassVar[type[AdapterConfig]]

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None: ...

    async def run(self, emit: Emit) -> None:
        """Read the devices until cancelled; call `await emit(reading)` where an ack depends on it."""
        ...


class CommandHandler(Protocol):
    async def handle(self, command: Command) -> CommandResult: ...


@runtime_checkable
class Diagnosable(Protocol):
    """Optional: an adapter's own counters and per-device/topic state, for status.json and the UI.

    A plain JSON-like dict, cheap to build (called every few seconds). Keys with a meaning for
    `edgegw status` (which never names a family, so these conventions are how a family is shown):

    - `malformed`: reason -> number of inputs dropped as malformed; its total is shown;
    - `summary`: one short line of the family's own state ("devices online 3/4"), shown as is;
    - `connected`: False is shown as "disconnected";
    - `last_error`: shown when the supervisor has none of its own (the adapter did not fail, its
      device or far side did).

    Secrets the family resolved itself are masked by it; whatever it returns also passes through
    `gateway.redact` before it is stored.
    """

    def diagnostics(self) -> dict[str, Any]: ...
