"""Rigs over rawpeers' scripted peers: links on raw RTU lines, and adapters on a raw RTU device or TCP gateway."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from adapters.modbus import rtu
from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.config import SerialSettings, parse_port
from adapters.modbus.transport import RtuSerialLink
from gateway.records import Reading
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.modbus.rawpeers import RawRtuDevice, RawTcpServer, RtuScript, TcpScript
from tests.adapters.modbus.running import make_adapter, modbus_config, running, until


def xy_md02(
    unit: int, bus: str, *, poll_interval: float = 0.1, timeout: float = 0.1, retries: int = 0
) -> dict[str, object]:
    """Device `th<unit>` on `bus`, an XY-MD02 thermometer, as a config lists it."""
    return {
        "name": f"th{unit}",
        "bus": bus,
        "profile": "generic/xy-md02",
        "unit_id": unit,
        "poll_interval": poll_interval,
        "timeout": timeout,
        "retries": retries,
    }


class RtuLines:
    """Links opened on pty pairs with a scripted unit on the other end of each; `close()` ends them all."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._made: list[tuple[PtyPair, RawRtuDevice, RtuSerialLink]] = []

    async def open(self, script: RtuScript) -> RtuSerialLink:
        pair = PtyPair(self.tmp_path)
        device = RawRtuDevice(pair.b, script)
        link = RtuSerialLink(parse_port(pair.a), SerialSettings(baud=9600))
        self._made.append((pair, device, link))
        await link.open()
        return link

    async def close(self) -> None:
        for pair, device, link in self._made:
            await link.close()
            device.close()
            pair.close()


@pytest.fixture
async def rtu_lines(tmp_path: Path) -> AsyncIterator[RtuLines]:
    lines = RtuLines(tmp_path)
    yield lines
    await lines.close()


@contextlib.asynccontextmanager
async def _adapter_on(
    tmp_path: Path, bus: dict[str, object], devices: list[dict[str, object]]
) -> AsyncIterator[tuple[ModbusAdapter, list[Reading]]]:
    adapter = make_adapter(modbus_config([bus], devices), tmp_path)
    async with running(adapter) as readings:
        yield adapter, readings


@contextlib.asynccontextmanager
async def adapter_on_rtu_device(
    tmp_path: Path, script: RtuScript, devices: list[dict[str, object]]
) -> AsyncIterator[tuple[ModbusAdapter, list[Reading]]]:
    """An adapter running `devices` on bus rs485, one end of a pty pair; `script` plays the units on the other."""
    pair = PtyPair(tmp_path)
    device = RawRtuDevice(pair.b, script)
    try:
        async with _adapter_on(tmp_path, {"name": "rs485", "port": f"rtu://{pair.a}"}, devices) as rig:
            yield rig
    finally:
        device.close()
        pair.close()


async def until_frame_errors(
    tmp_path: Path, answer: Callable[[rtu.Request], bytes]
) -> tuple[ModbusAdapter, list[Reading]]:
    """An adapter polling th1 on an RTU line whose unit 1 answers every request with `answer(request)`, stopped
    once th1 has counted three frame errors."""
    rig = adapter_on_rtu_device(tmp_path, lambda request: [(0.005, answer(request))], [xy_md02(1, "rs485")])
    async with rig as (adapter, readings):
        th1 = adapter.buses["rs485"].devices[0]
        await until(lambda: th1.counters.frame_errors >= 3, timeout=5)
    return adapter, readings


@contextlib.asynccontextmanager
async def adapter_behind_gateway(
    tmp_path: Path, script: TcpScript, devices: list[dict[str, object]]
) -> AsyncIterator[tuple[ModbusAdapter, list[Reading]]]:
    """An adapter running `devices` on bus gw, a Modbus TCP gateway on port 0 that answers as `script` says."""
    server = await RawTcpServer(script).start()
    try:
        async with _adapter_on(tmp_path, {"name": "gw", "port": f"tcp://127.0.0.1:{server.port}"}, devices) as rig:
            yield rig
    finally:
        await server.stop()
