"""The contract between the delivery loop and an uplink: a batch in, one outcome per record out."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from gateway.adapter_api import AdapterContext
from gateway.configbase import Field, NamedSection
from gateway.records import Reading


class UplinkConfig(NamedSection):
    """Keys every `[[uplinks]]` entry has; an uplink type's config subclasses this."""

    batch_max_rows: int = Field(default=1000, ge=1, le=100_000, description="records read from the buffer per batch")
    batch_linger_ms: float = Field(
        default=20, ge=0, le=1000,
        description="under load (a batch of at least 1/16 of batch_max_rows), wait this long for it to fill",
    )
    retry_initial_s: float = Field(default=1.0, gt=0, le=600)
    retry_max_s: float = Field(default=60.0, gt=0, le=3600)


class Status(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"  # permanent: dead-letter it with the far side's reason
    RETRY = "retry"  # transient: try again later


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    reason: str = ""


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
