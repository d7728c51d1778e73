"""The `simulated` adapter's section: what kind of device, how many entities, how fast."""

from __future__ import annotations

import enum
import json
from typing import Literal

from pydantic import model_validator

from gateway.adapter_api import AdapterConfig
from gateway.configbase import ConfigProblems, Field
from gateway.location import Location


class SimKind(enum.Enum):
    RIVER_LEVEL = "river-level"  # water level: a slow wave plus noise (WaterObserved)
    WEATHER = "weather"  # temperature and relative humidity (WeatherObserved)
    EVENTS = "events"  # bursts of one-off event entities (e.g. scans), each its own entity


DEFAULT_TYPES = {
    SimKind.RIVER_LEVEL: "WaterObserved",
    SimKind.WEATHER: "WeatherObserved",
    SimKind.EVENTS: "SimulatedEvent",
}


class SimulatedConfig(AdapterConfig):
    type: Literal["simulated"]
    kind: SimKind = SimKind.RIVER_LEVEL
    entities: int = Field(default=1, ge=1, le=100_000)
    rate: float = Field(default=1.0, gt=0, le=1_000_000, description="readings per second, all entities together")
    entity_type: str = ""
    id_prefix: str = Field(default="", description="entity ids are <id_prefix><n>; default urn:ngsi-ld:<type>:<name>-")
    lane: Literal["alert", "normal", "bulk"] = "normal"
    burst_size: int = Field(
        default=0, ge=0, le=100_000, description="events: extra readings emitted at once every burst_every_s"
    )
    burst_every_s: float = Field(default=10.0, gt=0)
    limit: int = Field(default=0, ge=0, description="stop after this many readings (0: run forever)")
    seed: int | None = None
    location: Location | None = Field(default=None, description="where the simulated devices are: { lat, lon }")

    @model_validator(mode="after")
    def _identifiers(self) -> SimulatedConfig:
        from gateway.ngsi.identifiers import check_entity_type, check_id_template

        try:
            check_entity_type(self.resolved_type)
        except ValueError as exc:
            # a default type is always valid: this one was written in entity_type
            raise ConfigProblems([("entity_type", f"{exc}, got {json.dumps(self.entity_type)}")]) from None
        try:
            check_id_template(self.resolved_prefix + "0")
        except ValueError as exc:
            if self.id_prefix:
                raise ConfigProblems([("id_prefix", f"{exc}, got {json.dumps(self.id_prefix)}")]) from None
            # the default prefix is made from a valid type and name, so only its length can break it
            message = (
                f"makes the default id_prefix invalid: {exc}, got {json.dumps(self.resolved_prefix)}; "
                "set a shorter entity_type or an id_prefix"
            )
            raise ConfigProblems([("entity_type", message)]) from None
        return self

    @property
    def resolved_type(self) -> str:
        return self.entity_type or DEFAULT_TYPES[self.kind]

    @property
    def resolved_prefix(self) -> str:
        return self.id_prefix or f"urn:ngsi-ld:{self.resolved_type}:{self.name}-"
