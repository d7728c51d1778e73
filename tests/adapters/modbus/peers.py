"""Real Modbus test peers: pymodbus servers (TCP on port 0, RTU on a socat pty pair) with scripted faults.

Faults act on the server's own frames (pymodbus' `trace_packet` hook), so they cross the real
wire: a muted unit sends nothing, a slow unit answers after the master gave up (its late answer is
lost, as on a real line where it would collide), and a corrupted answer has one bit flipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simdevice import SimAction

from adapters.modbus.codec import encode_point
from gateway.profiles.schema import DataType, Profile


@dataclass(kw_only=True)
class UnitImage:
    """One unit's memory: address → value for each table."""

    unit_id: int
    coils: dict[int, bool] = field(default_factory=dict)
    discrete: dict[int, bool] = field(default_factory=dict)
    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    gaps_readable: bool = False  # registers between mapped ones read as 0 (meters) instead of exception 02


def image_from_values(unit_id: int, profile: Profile, values: Mapping[str, object]) -> UnitImage:
    """A unit whose registers hold the engineering `values` of a profile's points (decimals points first)."""
    image = UnitImage(unit_id=unit_id, gaps_readable=profile.interface.max_gap > 0)
    for p in profile.points:
        if p.name not in values:
            continue
        decimals = None
        if p.decimals_from is not None:
            d = values[p.decimals_from]
            assert isinstance(d, int)
            decimals = d
        data = encode_point(p, values[p.name], decimals=decimals)  # type: ignore[arg-type]
        for i, word in enumerate(data):
            address = p.address + i
            if p.function_code in (1, 2):  # bit tables hold only bool points (the profile schema sees to it)
                (image.coils if p.function_code == 1 else image.discrete)[address] = bool(word)
                continue
            registers = image.holding if p.function_code == 3 else image.input
            if p.data_type is DataType.BITFIELD:  # bitfield points share their register: merge the bits
                word = registers.get(address, 0) | int(word)
            registers[address] = int(word)
    return image


def _runs(table: Mapping[int, int | bool]) -> list[tuple[int, list[int | bool]]]:
    runs: list[tuple[int, list[int | bool]]] = []
    for address in sorted(table):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].append(table[address])
        else:
            runs.append((address, [table[address]]))
    return runs


def _sim_device(image: UnitImage, action: SimAction) -> SimDevice:
    def bits(table: dict[int, bool]) -> list[SimData]:
        return [SimData(address=a, values=[bool(v) for v in vs], datatype=SimType.BITS) for a, vs in _runs(table)] or [
            SimData(address=0, values=[False], datatype=SimType.BITS)
        ]

    def regs(table: dict[int, int]) -> list[SimData]:
        if image.gaps_readable and table:
            table = {a: table.get(a, 0) for a in range(min(table), max(table) + 1)}
        # addresses between runs stay invalid, so reads over them answer exception 02 like real devices
        return [
            SimData(address=a, values=[int(v) for v in vs], datatype=SimType.REGISTERS) for a, vs in _runs(table)
        ] or [SimData(address=0xFFF0, values=[0], datatype=SimType.REGISTERS)]

    return SimDevice(
        id=image.unit_id,
        simdata=(bits(image.coils), bits(image.discrete), regs(image.holding), regs(image.input)),
        action=action,
    )


class ModbusPeer:
    """A pymodbus server playing several units, with faults a test can switch on and off."""

    def __init__(self, units: list[UnitImage], *, framer: FramerType) -> None:
        self.units = {u.unit_id: u for u in units}
        self.framer = framer
        self.muted: set[int] = set()
        self.slow: dict[int, float] = {}
        self.corrupt_next = 0  # answers still to corrupt
        self.busy: set[int] = set()  # units answering exception 06 (server device busy)
        self.requests: list[tuple[int, float]] = []  # (unit, monotonic time) of every request seen
        self.answered = 0
        self._drop_next = 0
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.devices = [_sim_device(u, functools.partial(self._action, u.unit_id)) for u in units]

    async def _action(
        self, unit: int, function_code: int, start: int, address: int, count: int, registers: list[int], values: object
    ) -> ExcCodes | None:
        if unit in self.busy:
            return ExcCodes.DEVICE_BUSY
        delay = self.slow.get(unit)
        if delay:
            await asyncio.sleep(delay)
            self._drop_next += 1  # the master gave up long ago: this answer is lost
        return None

    def trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not data:
            return data
        unit = data[6] if self.framer is FramerType.SOCKET and len(data) > 6 else data[0]
        if not sending:
            self.requests.append((unit, time.monotonic()))
            return data
        if self._drop_next:
            self._drop_next -= 1
            return b""
        if unit in self.muted or unit not in self.units:
            return b""  # pymodbus answers unknown ids with exception 04; a real bus stays silent
        if self.corrupt_next:
            self.corrupt_next -= 1
            flipped = bytearray(data)
            flipped[len(data) // 2] ^= 0x10
            return bytes(flipped)
        self.answered += 1
        return data

    async def read(self, unit: int, function_code: int, address: int, count: int = 1) -> list[int] | list[bool]:
        assert self.server is not None
        return await self.server.async_getValues(unit, function_code, address, count)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves shutdown() unannotated
            self.server = None

    def requests_to(self, unit: int, since: float = 0.0) -> list[float]:
        return [t for u, t in self.requests if u == unit and t >= since]


async def start_tcp_peer(units: list[UnitImage], port: int = 0) -> tuple[ModbusPeer, int]:
    peer = ModbusPeer(units, framer=FramerType.SOCKET)
    server = ModbusTcpServer(
        peer.devices, address=("127.0.0.1", port), ignore_missing_devices=True, trace_packet=peer.trace_packet
    )
    await server.serve_forever(background=True)
    peer.server = server
    # pymodbus types its transport as asyncio.BaseTransport; a listening TCP server's is the asyncio.Server
    assert isinstance(server.transport, asyncio.Server)
    sock = server.transport.sockets[0]
    return peer, int(sock.getsockname()[1])


async def start_serial_peer(path: str, units: list[UnitImage], *, baud: int = 9600) -> ModbusPeer:
    peer = ModbusPeer(units, framer=FramerType.RTU)
    server = ModbusSerialServer(
        peer.devices,
        port=path,
        baudrate=baud,
        ignore_missing_devices=True,
        trace_packet=peer.trace_packet,
        reconnect_delay=0,
    )
    await server.serve_forever(background=True)
    peer.server = server
    return peer


class PtyPair:
    """`socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B`: two connected serial ports."""

    def __init__(self, directory: Path) -> None:
        self.a = str(directory / "ttyA")
        self.b = str(directory / "ttyB")
        socat = shutil.which("socat") or "/usr/bin/socat"
        self.process = subprocess.Popen(
            [socat, "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.01)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.asynccontextmanager
async def serial_bus(
    directory: Path, units: list[UnitImage], *, baud: int = 9600
) -> AsyncIterator[tuple[str, ModbusPeer]]:
    """A pty pair with a pymodbus RTU server playing `units` on one end; yields the other end's path."""
    pair = PtyPair(directory)
    peer = await start_serial_peer(pair.b, units, baud=baud)
    try:
        yield pair.a, peer
    finally:
        await peer.stop()
        pair.close()
