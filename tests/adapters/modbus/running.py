"""Running a ModbusAdapter in a test: its config from plain dicts, its readings collected, conditions awaited."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.config import ModbusConfig
from gateway.adapter_api import AdapterContext
from gateway.processing.api import ProcessorContext
from gateway.processing.registry import build_stage
from gateway.records import Reading, utc_now


def modbus_config(buses: list[dict[str, Any]], devices: list[dict[str, Any]], **extra: Any) -> ModbusConfig:
    doc: dict[str, Any] = {
        "name": "cabinet",
        "type": "modbus",
        "buses": buses,
        "devices": devices,
        "offline_after": 2,
        "probe_initial": 0.2,
        "probe_max": 0.8,
    }
    doc.update(extra)
    return ModbusConfig.model_validate(doc)


def make_adapter(config: ModbusConfig, tmp_path: Any) -> ModbusAdapter:
    return ModbusAdapter(config, AdapterContext(gateway_id="gw1", data_dir=str(tmp_path)))


@contextlib.asynccontextmanager
async def running(adapter: ModbusAdapter) -> AsyncIterator[list[Reading]]:
    """The adapter's readings as the buffer gets them: through the processing stage with its checks and gauges."""
    readings: list[Reading] = []
    stage = build_stage([], ProcessorContext(gateway_id="gw1", data_dir=""), [(adapter.config.name, adapter)])

    async def emit(reading: Reading) -> None:
        readings.extend(stage.process(reading, utc_now()) if stage is not None else [reading])

    task = asyncio.create_task(adapter.run(emit))
    try:
        yield readings
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def of(readings: list[Reading], entity_id: str) -> list[Reading]:
    return [r for r in readings if r.entity_id == entity_id]


def states(readings: list[Reading], entity_id: str) -> list[str]:
    return [
        r.attributes["deviceState"].value
        for r in readings
        if r.entity_id == entity_id and "deviceState" in r.attributes
    ]
