"""The contract between the delivery loop and an uplink: a batch in, one outcome per record out."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Protocol, Self, runtime_checkable

from gateway.adapter_api import AdapterContext
from gateway.configbase import Field, NamedSection
from gateway.records import Command, CommandResult, Reading


class UplinkConfig(NamedSection):
    """Keys every `[[uplinks]]` entry has; an uplink type's config subclasses this."""

    batch_max_rows: int = Field(default=1000, ge=1, le=100_000, description="records read from the buffer per batch")
    batch_linger_ms: float = Field(
        default=20,
        ge=0,
        le=1000,
        description="under load (a batch of at least 1/16 of batch_max_rows), wait this long for it to fill; "
        "0 also sends the few rows that came in during a batch at once, without waiting (<= 10 ms) for more",
    )
    retry_initial_s: float = Field(default=1.0, gt=0, le=600)
    retry_max_s: float = Field(default=60.0, gt=0, le=3600)
    probe_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="while the far side cannot be reached at all, try again this often (with jitter)",
    )
    # A fleet that comes back together (a regional outage, power restored) must not drain its
    # backlogs into the platform at once; see gateway/delivery.py for when these apply.
    drain_rate: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="readings/s while catching up on a backlog; unset: as fast as the far side takes them",
    )
    # 5 s by default: enough to spread a fleet's first requests after a regional outage, short
    # enough that an alert queued behind a backlog is not held back noticeably.
    start_delay_max_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="random delay up to this before draining a backlog after start or after an outage",
    )

    @property
    def start_delay_s(self) -> float:
        """The upper bound of the random start delay."""
        return self.start_delay_max_s


class Status(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"  # permanent: dead-letter it with the far side's reason
    RETRY = "retry"  # transient: try again later


class Fault(enum.Enum):
    """Why records are to be retried; the delivery loop's state and log level follow it."""

    TRANSIENT = "transient"  # the far side is down or overloaded: it passes
    # No connection to the far side at all (refused, reset or timed out before the request went out):
    # nothing was asked of it, so trying again costs it nothing, and the delivery loop probes at a short
    # interval instead of backing off to minutes (issue 18: delivery resumes within seconds of it coming
    # back). A request sent and left unanswered is TRANSIENT: a loaded broker may have applied it.
    UNREACHABLE = "unreachable"
    # The far side refuses our requests as such (url, credentials, headers, a proxy's body limit):
    # nothing passes until someone fixes the configuration, and nothing is dead-lettered meanwhile.
    CONFIGURATION = "configuration"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    reason: str = ""
    fault: Fault = Fault.TRANSIENT  # meaningful for RETRY only
    # RETRY only: the far side asked us to wait this long (an HTTP Retry-After with a 429 or 503, capped
    # at gateway.uplinks.http.client.RETRY_AFTER_MAX_S); the delivery loop waits at least that
    retry_after_s: float = 0.0


DELIVERED = Outcome(Status.DELIVERED)


class Uplink(Protocol):
    config_model: ClassVar[type[UplinkConfig]]
    name: str

    def __init__(self, config: UplinkConfig, context: AdapterContext) -> None: ...

    async def start(self) -> None: ...

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        """One Outcome per record, in order. Never raises for delivery failures: says RETRY instead."""
        ...

    async def close(self) -> None: ...


class Lifecycle:
    """`async with uplink:` starts it and closes it on the way out, whatever happened inside."""

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# --- commands: an optional capability ----------------------------------------------------------------


class DeviceLookup(Protocol):
    """Maps a device id the platform uses (an IoT Agent `device_id`) back to the entity id."""

    def entity_of(self, device_id: str) -> str | None: ...


class CommandRoutes(Protocol):
    """What the runtime lends a command source: where commands go (gateway.commands.CommandRouter)."""

    async def dispatch(self, command: Command) -> CommandResult:
        """Run a command on its entity's adapter; never raises, always a result."""
        ...

    def device_index(self, template: str) -> DeviceLookup:
        """The reverse map for a `device_id` template, kept up to date by the router."""
        ...


@runtime_checkable
class CommandSource(Protocol):
    """An uplink that also receives commands from the platform. The runtime finds it with isinstance,
    starts it after the adapters and stops it before them (no new commands while they stop); an uplink
    whose configuration turns commands off implements both as no-ops."""

    async def start_commands(self, routes: CommandRoutes) -> None: ...

    async def stop_commands(self) -> None: ...
