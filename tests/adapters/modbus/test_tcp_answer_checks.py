"""Modbus TCP answers are checked against their request as RTU answers are: a wrong one is a frame error, never data."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from adapters.modbus import rtu
from adapters.modbus.config import parse_port
from adapters.modbus.transport import TcpLink
from tests.adapters.modbus.rawpeers import RawTcpServer, mbap, read_request, registers_pdu
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, until

TEMP = "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th"
DEVICE = [
    {
        "name": "th",
        "bus": "gw",
        "profile": "generic/xy-md02",
        "unit_id": 1,
        "poll_interval": 0.1,
        "timeout": 0.2,
        "retries": 0,
    }
]


async def test_an_answer_with_another_function_code_is_a_frame_error_not_a_reading(tmp_path: Path) -> None:
    # a clone answering its input registers (FC04) from the holding table (FC03): 0x0123 = 29.1 °C is not a reading
    def script(tid: int, unit: int, pdu: bytes) -> bytes:
        _, _, count = read_request(pdu)
        return mbap(tid, unit, registers_pdu(3, [0x0123] * count))

    server = await RawTcpServer(script).start()
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{server.port}"}], DEVICE), tmp_path)
    try:
        async with running(adapter) as readings:
            unit = adapter.buses["gw"].devices[0]
            await until(lambda: unit.counters.frame_errors >= 3)
            await asyncio.sleep(0.2)
    finally:
        await server.stop()
    assert of(readings, TEMP) == []
    diag = adapter.diagnostics()["buses"]["gw"]["devices"]["th"]
    # only the FC03 reads (the correction setting) got their own answer; the last one may have been in flight
    # when the adapter stopped (the server saw it, the adapter never took its answer)
    fc03_reads = sum(1 for _, pdu in server.requests if pdu[0] == 3)
    assert fc03_reads - 1 <= diag["answers"] <= fc03_reads
    assert diag["exceptions"] == {}
    assert diag["last_error"] == (
        f"modbus unit 1 FC04 @1 x2 on tcp://127.0.0.1:{server.port}: answer for another function code, got 3"
    )
    assert adapter.diagnostics()["malformed"]["frame_errors"] == diag["frame_errors"]


async def test_an_exception_answer_for_another_function_code_is_a_frame_error(tmp_path: Path) -> None:
    # 0x83 (exception to FC03) in answer to an FC04 read: not this request's refusal
    def script(tid: int, unit: int, pdu: bytes) -> bytes:
        fc, _, count = read_request(pdu)
        if fc == 4:
            return mbap(tid, unit, bytes([0x83, 0x02]))
        return mbap(tid, unit, registers_pdu(fc, [5] * count))

    server = await RawTcpServer(script).start()
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{server.port}"}], DEVICE), tmp_path)
    try:
        async with running(adapter):
            unit = adapter.buses["gw"].devices[0]
            await until(lambda: unit.counters.frame_errors >= 3)
    finally:
        await server.stop()
    assert unit.counters.exceptions == {}
    assert unit.last_error.endswith(": answer for another function code, got 131")


# --- broken answers from one unit behind a gateway; unit 1 shares the connection and answers well ------------

Fault = Callable[[int, int, int, int], bytes]
FAULTS: dict[str, tuple[Fault, str]] = {
    "short": (
        lambda tid, unit, fc, count: mbap(tid, unit, registers_pdu(fc, [0xD7] * count)[:-1]),
        "expected 4 data bytes, got byte count 4 in 8 bytes",
    ),
    "byte count lies": (
        lambda tid, unit, fc, count: mbap(tid, unit, bytes([fc, 2 * count + 2]) + b"\x00\xd7" * count),
        "expected 4 data bytes, got byte count 6 in 9 bytes",
    ),
    "oversized": (
        lambda tid, unit, fc, count: mbap(tid, unit, registers_pdu(fc, [0xD7] * (count + 3))),
        "unit 2 answered 5 registers to a read of 2: expected 4 data bytes, got byte count 10 in a 19-byte frame; "
        "the device or the gateway in front of it answers a fixed block, or the gateway routes unit 2 to another "
        "device: check the unit ids the gateway maps, and that the profile is for this model, its function code "
        "and addresses",
    ),
    "unknown function code": (
        lambda tid, unit, fc, count: mbap(tid, unit, bytes([0x55, 0, 0])),
        "answer for another function code, got 85",
    ),
    "another unit": (
        lambda tid, unit, fc, count: mbap(tid, 9, registers_pdu(fc, [0xD7] * count)),
        "answer from another unit, got unit 9; check the unit ids the Modbus TCP gateway maps",
    ),
    "protocol id": (
        lambda tid, unit, fc, count: struct.pack(">HHHB", tid, 7, 2 * count + 3, unit) + registers_pdu(fc, [1] * count),
        "not a Modbus TCP answer, got protocol id 7, expected 0; check that the port is the device's Modbus TCP "
        "port and not a serial server's raw one (for that, rtu-over-tcp://)",
    ),
    "garbage": (
        lambda tid, unit, fc, count: b"\xde\xad\xbe\xef" * 5,
        "not a Modbus TCP answer, got protocol id 48879, expected 0; check that the port is the device's Modbus TCP "
        "port and not a serial server's raw one (for that, rtu-over-tcp://)",
    ),
    "length field": (
        lambda tid, unit, fc, count: mbap(tid, unit, registers_pdu(fc, [0xD7] * count), length=200),
        "incomplete answer, got 13 of 206 bytes within 0.2 s",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_broken_answer_is_a_frame_error_and_the_connection_serves_the_others(
    fault: str, tmp_path: Path
) -> None:
    broken, message = FAULTS[fault]

    def script(tid: int, unit: int, pdu: bytes) -> bytes:
        fc, _, count = read_request(pdu)
        if unit == 2 and fc == 4:
            return broken(tid, unit, fc, count)
        return mbap(tid, unit, registers_pdu(fc, [0xD7] * count))

    server = await RawTcpServer(script).start()
    devices = [{**DEVICE[0], "name": f"th{u}", "unit_id": u} for u in (1, 2)]
    adapter = make_adapter(modbus_config([{"name": "gw", "port": f"tcp://127.0.0.1:{server.port}"}], devices), tmp_path)
    try:
        async with running(adapter) as readings:
            th1, th2 = adapter.buses["gw"].devices
            await until(lambda: th2.counters.frame_errors >= 3)
            n = len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1"))
            await until(lambda: len(of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1")) >= n + 3)
    finally:
        await server.stop()
    assert th2.counters.timeouts == 0
    assert th2.last_error == f"modbus unit 2 FC04 @1 x2 on tcp://127.0.0.1:{server.port}: {message}"
    assert of(readings, "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th2") == []
    # one unit's broken answers never cost its neighbours the connection
    bus = adapter.buses["gw"]
    assert server.connections == 1 and bus.link_error == ""
    assert th1.counters.timeouts == 0 and th1.counters.frame_errors == 0


class _SlowToLetGo(TcpLink):
    """A link whose request takes until `let_go` to end once cancelled, as a pymodbus call can take a turn or two."""

    cancelled = asyncio.Event()
    let_go = asyncio.Event()

    @staticmethod
    async def _call(client: AsyncModbusTcpClient, r: rtu.Request) -> Any:
        try:
            return await TcpLink._call(client, r)
        except asyncio.CancelledError:
            _SlowToLetGo.cancelled.set()
            await _SlowToLetGo.let_go.wait()
            raise


async def test_a_stop_while_a_broken_answers_request_is_let_go_stops_the_link() -> None:
    # CI, 2026-12-06: the adapter was stopped just as a frame error's request was being let go; the stop
    # was taken for the request's own cancellation and the bus polled on for 300 s
    def script(tid: int, unit: int, pdu: bytes) -> bytes:
        _, _, count = read_request(pdu)
        return mbap(tid, unit, registers_pdu(3, [0x0123] * count))

    server = await RawTcpServer(script).start()
    _SlowToLetGo.cancelled, _SlowToLetGo.let_go = asyncio.Event(), asyncio.Event()
    link = _SlowToLetGo(parse_port(f"tcp://127.0.0.1:{server.port}"))
    try:
        await link.open()
        exchange = asyncio.create_task(link.transact(rtu.Request(unit_id=1, function_code=4, address=1, count=2), 2.0))
        async with asyncio.timeout(5):
            await _SlowToLetGo.cancelled.wait()  # the answer was judged broken; its request is being let go
        exchange.cancel()  # the stop
        _SlowToLetGo.let_go.set()
        done, _ = await asyncio.wait({exchange}, timeout=2.0)
    finally:
        await link.close()
        await server.stop()
    assert done == {exchange}
    assert exchange.cancelled(), f"the stop was lost: the exchange ended with {exchange.exception()!r}"
