"""Generates readings at a configured rate: the demo's devices and the benchmarks' load."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable
from typing import ClassVar

from adapters.simulated.config import SimKind, SimulatedConfig
from gateway.adapter_api import AdapterContext
from gateway.records import Attribute, Emit, Lane, Reading, Source, TimeSource, utc_now

# the largest number of readings generated between two awaits, so one fast source never
# starves the event loop (delivery loops, other adapters, signals)
_CHUNK = 2000


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
        self.emitted = 0

    def _reading(self, n: int, t_s: float) -> Reading:
        cfg = self.config
        self._counters[n] += 1
        seq = Attribute(value=self._counters[n], type="Number")
        if cfg.kind is SimKind.RIVER_LEVEL:
            # a slow tide-like wave (period ~ 20 min) plus gauge noise, in metres above the datum
            level = 1.5 + 0.8 * math.sin(self._phase[n] + t_s * 2 * math.pi / 1200) + self._rng.gauss(0, 0.01)
            attrs = {"waterLevel": Attribute(value=round(level, 3), type="Number", unit="MTR"), "sequence": seq}
        elif cfg.kind is SimKind.WEATHER:
            temp = 15 + 8 * math.sin(self._phase[n] + t_s * 2 * math.pi / 86400) + self._rng.gauss(0, 0.2)
            rh = min(100.0, max(0.0, 60 - (temp - 15) * 2 + self._rng.gauss(0, 1)))
            attrs = {
                "temperature": Attribute(value=round(temp, 2), type="Number", unit="CEL"),
                "relativeHumidity": Attribute(value=round(rh / 100, 3), type="Number", unit="P1"),
                "sequence": seq,
            }
        else:
            self._events += 1
            return Reading(
                entity_id=f"{self._ids[n]}-{self._events}",
                entity_type=cfg.resolved_type,
                attributes={"eventKind": Attribute(value="scan", type="Text"), "sequence": seq,
                            "refDevice": Attribute(value=self._ids[n], type="Text")},
                observed_at=utc_now(),
                time_source=TimeSource.GATEWAY,
                source=self._source,
                lane=self._lane,
            )
        return Reading(entity_id=self._ids[n], entity_type=cfg.resolved_type, attributes=attrs,
                       observed_at=utc_now(), time_source=TimeSource.DEVICE, source=self._source,
                       lane=self._lane)

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
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
            last: Awaitable[None] | None = None
            t_s = now - start
            for _ in range(due):
                last = emit(self._reading(entity, t_s))
                entity = (entity + 1) % cfg.entities
            self.emitted += due
            # back-pressure: never run ahead of the buffer's commits
            if last is not None:
                await last
