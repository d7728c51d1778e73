"""Generates readings at a configured rate: the demo's devices and the benchmarks' load."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import datetime
from typing import Any, ClassVar

from adapters.simulated.config import SimKind, SimulatedConfig
from gateway.adapter_api import AdapterContext
from gateway.date_observed import DATE_OBSERVED, date_observed, has_date_observed
from gateway.location import LOCATION
from gateway.records import (
    Attribute,
    Emit,
    Lane,
    Reading,
    Source,
    TimeSource,
    emit_many,
    make_attribute,
    make_reading,
    utc_now,
)

# the largest number of readings generated between two awaits, so one fast source never
# starves the event loop (delivery loops, other adapters, signals)
_CHUNK = 2000
_RIVER_W = 2 * math.pi / 1200
_DAY_W = 2 * math.pi / 86400
# Gauge noise is drawn from a table of normal samples made at start instead of random.gauss per
# reading (~0.4 µs of Python each at 50,000 readings/s). The table's length is prime and each entity
# starts at its own offset, so consecutive readings of one entity do not repeat a short pattern.
_NOISE_LEN = 4099


class SimulatedAdapter:
    config_model: ClassVar[type[SimulatedConfig]] = SimulatedConfig

    def __init__(self, config: SimulatedConfig, context: AdapterContext) -> None:
        self.config = config
        self.context = context
        self._rng = random.Random(config.seed)
        self._lane = Lane[config.lane.upper()]
        self._source = Source(adapter=config.name, device="simulator")
        self._ids = [f"{config.resolved_prefix}{n}" for n in range(config.entities)]
        self._counters = [0] * config.entities
        self._phase = [self._rng.uniform(0, 2 * math.pi) for _ in range(config.entities)]
        self._events = 0
        self._type = config.resolved_type  # a property: computed once, not per reading
        self._dated = has_date_observed(self._type)
        self._location = config.location.attribute() if config.location is not None else None
        # an event is an entity of its own; what made it is a Device (urn:ngsi-ld:Device:<name>-<n>)
        self._devices = (
            [f"urn:ngsi-ld:Device:{config.name}-{n}" for n in range(config.entities)]
            if config.kind is SimKind.EVENTS
            else []
        )
        self._gauss = self._rng.gauss
        noise = [self._rng.gauss(0, 1) for _ in range(_NOISE_LEN)]
        self._noise_mm = [round(10 * x) for x in noise]  # river gauge noise: sigma 10 mm
        self._noise_at = [self._rng.randrange(_NOISE_LEN) for _ in range(config.entities)]
        # the slow wave of each entity at the last t_s it was computed for: a chunk's readings share one
        # t_s, so an entity's sin() is computed once per chunk rather than once per reading
        self._wave_t = [math.nan] * config.entities
        self._wave_mm = [0] * config.entities
        self._levels: dict[int, Attribute] = {}  # water level in mm -> its Attribute
        self.emitted = 0

    def diagnostics(self) -> dict[str, Any]:
        """What it generates and how much so far, for status.json and `edgegw status`."""
        cfg = self.config
        summary = f"{cfg.kind.value}, {cfg.entities} entities at {cfg.rate:g}/s"
        if cfg.limit:
            summary += f", {self.emitted} of {cfg.limit}"
        return {
            "kind": cfg.kind.value,
            "entities": cfg.entities,
            "rate": cfg.rate,
            "limit": cfg.limit,
            "emitted": self.emitted,
            "events": self._events,
            "summary": summary,
        }

    def _next_noise(self, n: int) -> int:
        """Index of entity n's next noise sample in the table."""
        i = self._noise_at[n] + 1
        if i == _NOISE_LEN:
            i = 0
        self._noise_at[n] = i
        return i

    def _reading(self, n: int, t_s: float, now: datetime | None = None) -> Reading:
        """Entity n's next reading at `t_s` seconds after start, observed at `now` (default: the clock).

        Built with make_reading/make_attribute: at full speed this is the benchmarks' source and the
        dataclass __init__ alone cost more than the rest (see gateway.records).
        """
        cfg = self.config
        if now is None:
            now = utc_now()
        count = self._counters[n] + 1
        self._counters[n] = count
        seq = make_attribute(count, "Number")
        kind = cfg.kind
        if kind is SimKind.RIVER_LEVEL:
            # a slow tide-like wave (period ~ 20 min) plus gauge noise, in metres above the datum
            # in whole millimetres (the gauge's resolution): mm / 1000 is the float round(level, 3) gives,
            # without round()'s decimal conversion (~0.3 µs a reading)
            if self._wave_t[n] != t_s:
                self._wave_t[n] = t_s
                self._wave_mm[n] = round(1000 * (1.5 + 0.8 * math.sin(self._phase[n] + t_s * _RIVER_W)))
            level_mm = self._wave_mm[n] + self._noise_mm[self._next_noise(n)]
            # Attributes are immutable, so readings of the same level share one (a gauge reads a few
            # thousand distinct millimetre values); the cache is bounded by that range
            level = self._levels.get(level_mm)
            if level is None:
                level = self._levels[level_mm] = make_attribute(level_mm / 1000, "Number", "MTR")
            attrs = {"waterLevel": level, "sequence": seq}
        elif kind is SimKind.WEATHER:
            temp = 15 + 8 * math.sin(self._phase[n] + t_s * _DAY_W) + self._gauss(0, 0.2)
            rh = min(100.0, max(0.0, 60 - (temp - 15) * 2 + self._gauss(0, 1)))
            attrs = {
                "temperature": make_attribute(round(temp, 2), "Number", "CEL"),
                # the Weather and Environment models' relativeHumidity is a ratio 0..1: unit "one" (C62), not %
                "relativeHumidity": make_attribute(round(rh / 100, 3), "Number", "C62"),
                "sequence": seq,
            }
        else:
            self._events += 1
            attrs = {
                "eventKind": make_attribute("scan", "Text"),
                "sequence": seq,
                "refDevice": make_attribute(self._devices[n], "Relationship"),
            }
            if self._location is not None:  # each event is a new entity: no description reading reaches it
                attrs[LOCATION] = self._location
            if self._dated:
                attrs[DATE_OBSERVED] = date_observed(now)
            return make_reading(
                f"{self._ids[n]}-{self._events}", self._type, attrs, now, TimeSource.GATEWAY, self._source, self._lane
            )
        if self._dated:
            attrs[DATE_OBSERVED] = date_observed(now)
        return make_reading(self._ids[n], self._type, attrs, now, TimeSource.DEVICE, self._source, self._lane)

    def descriptions(self) -> list[Reading]:
        """The `location` of each simulated gauge or station, sent once at start (Orion keeps it)."""
        if self._location is None or self.config.kind is SimKind.EVENTS:
            return []
        now = utc_now()
        return [
            make_reading(
                entity_id, self._type, {LOCATION: self._location}, now, TimeSource.GATEWAY, self._source, self._lane
            )
            for entity_id in self._ids
        ]

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        described = self.descriptions()
        if described:
            await emit_many(emit, described)
        start = loop.time()
        next_burst = start + cfg.burst_every_s
        paced = 0  # readings of the steady rate so far; bursts come on top of it
        burst_left = 0
        entity = 0
        while cfg.limit == 0 or self.emitted < cfg.limit:
            now = loop.time()
            if cfg.burst_size and now >= next_burst:
                burst_left += cfg.burst_size
                next_burst += cfg.burst_every_s
            due_paced = int((now - start) * cfg.rate) - paced
            due = due_paced + burst_left
            if cfg.limit:
                due = min(due, cfg.limit - self.emitted)
            if due <= 0:
                wake = min(start + (paced + 1) / cfg.rate, next_burst if cfg.burst_size else math.inf)
                await asyncio.sleep(max(0.001, wake - now))
                continue
            due = min(due, _CHUNK)
            from_burst = min(burst_left, max(0, due - due_paced))
            burst_left -= from_burst
            paced += due - from_burst
            t_s = now - start
            # one clock reading per chunk: its readings are generated in the same instant anyway
            stamp = utc_now()
            reading = self._reading
            entities = cfg.entities
            chunk = []
            for _ in range(due):
                chunk.append(reading(entity, t_s, stamp))
                entity += 1
                if entity == entities:
                    entity = 0
            self.emitted += due
            # one call for the chunk (see emit_many), and back-pressure: never run ahead of the
            # buffer's commits. (Awaiting only the previous chunk's commit was tried: the source
            # then outran the delivery loop on the shared event loop, measured slower end to end.)
            await emit_many(emit, chunk)
