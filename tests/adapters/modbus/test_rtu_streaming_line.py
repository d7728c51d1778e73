"""An RTU line that streams bytes holds at most a bounded inbox, is a line fault said once, and reads again after.

Regression (review 2, repro_flood.py): the RTU link kept every byte that came between two exchanges and
cleared them only when the next request started; a serial server, pty or USB CDC device that streams
filled 3.7 GB in 8 s and the OOM killer took the whole gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from adapters.modbus import rtu
from adapters.modbus.adapter import ModbusAdapter
from gateway.records import Reading
from tests.adapters.modbus.peers import PtyPair
from tests.adapters.modbus.raw_rigs import xy_md02
from tests.adapters.modbus.rawpeers import RawRtuDevice, rtu_answer
from tests.adapters.modbus.running import make_adapter, modbus_config, of, running, states, until

TH1 = "urn:ngsi-ld:IndoorEnvironmentObserved:gw1-th1"
NEVER_QUIET = "the line never goes quiet"
CHUNK = b"\x55" * 65536
MB = 1 << 20


def _rss() -> int:
    """The process's resident memory now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


class FloodingServer:
    """A TCP serial server (rtu-over-tcp) whose line streams bytes while `flooding`, then carries unit 1's answers."""

    def __init__(self) -> None:
        self.flooding = True
        self.sent = 0  # bytes of the flood
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> FloodingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        flood = asyncio.create_task(self._flood(writer))
        try:
            while True:
                request = rtu.decode_request(await reader.readexactly(8))
                if not self.flooding:
                    writer.write(rtu_answer(request, 0x00D7))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            flood.cancel()
            writer.close()

    async def _flood(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while self.flooding:
                writer.write(CHUNK)
                await writer.drain()
                self.sent += len(CHUNK)

    async def stop(self) -> None:
        self.flooding = False
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def _adapter(port: str, tmp_path: Path) -> AsyncIterator[tuple[ModbusAdapter, list[Reading]]]:
    # reopen_max bounds the pause between askings of a line that never goes quiet
    config = modbus_config(
        [{"name": "ser", "port": port, "reopen_max": 0.5}], [xy_md02(1, "ser", poll_interval=0.5, timeout=0.1)]
    )
    adapter = make_adapter(config, tmp_path)
    async with running(adapter) as readings:
        yield adapter, readings


async def _peak_growth(seconds: float) -> int:
    """How far above its start the process's memory went within `seconds` (sampled every few ms)."""
    start = peak = _rss()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await asyncio.sleep(0.005)
        peak = max(peak, _rss())
    return peak - start


async def _flood_then_quiet(
    adapter: ModbusAdapter, readings: list[Reading], stop_flood: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    """Checks while the line streams, then after `stop_flood()`: bounded, said once, reads again."""
    bus = adapter.buses["ser"]
    th1 = bus.devices[0]
    grown = await _peak_growth(1.5)
    assert grown < 16 * MB, f"memory grew {grown / MB:.0f} MB on a streaming line"
    await until(lambda: bus.never_quiet >= 3, timeout=15)  # found again and again, while the flood goes on
    diag = adapter.diagnostics()["buses"]["ser"]
    assert diag["dropped_bytes"] > 0 and diag["never_quiet"] >= 3
    line = f"modbus {bus.link.description}"
    assert diag["error"].startswith(f"{line}: {NEVER_QUIET}, got bytes without a pause of ")
    # offline for the line's fault (a probe meeting the stream's bytes in a pause may leave a CRC error since)
    offline = of(readings, "urn:ngsi-ld:Device:gw1-th1")[-1].attributes["deviceState"]
    assert th1.state.value == offline.value == "offline"
    assert offline.metadata["reason"]["value"].startswith(f"{line}: {NEVER_QUIET}")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and NEVER_QUIET in r.getMessage()]
    # said once for the line, and once as the reason the device went offline
    assert [m.split(": ")[1] for m in warned] == [line, "th1 (unit 1) offline"]

    stop_flood()
    await until(lambda: any("temperature" in r.attributes for r in of(readings, TH1)), timeout=10)
    assert states(readings, "urn:ngsi-ld:Device:gw1-th1")[-1] == "online"
    assert adapter.diagnostics()["buses"]["ser"]["error"] == ""
    back = [
        r for r in caplog.records if r.levelno == logging.INFO and "goes quiet between frames again" in r.getMessage()
    ]
    assert len(back) == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING and NEVER_QUIET in r.getMessage()]) == 2


async def test_a_serial_server_that_streams_is_bounded_said_once_and_read_again_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.modbus")
    server = await FloodingServer().start()
    try:
        async with _adapter(f"rtu-over-tcp://127.0.0.1:{server.port}", tmp_path) as (adapter, readings):
            await _flood_then_quiet(adapter, readings, lambda: setattr(server, "flooding", False), caplog)
            assert server.sent > 64 * MB  # the flood the inbox did not keep
    finally:
        await server.stop()


async def test_a_serial_port_that_streams_is_bounded_said_once_and_read_again_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.modbus")
    pair = PtyPair(tmp_path)
    flooding = {"on": True}
    unit = RawRtuDevice(pair.b, lambda request: [] if flooding["on"] else [(0.005, rtu_answer(request, 0x00D7))])
    # a process of its own, as a babbling device is: a writer in this event loop would pause whenever the loop
    # (or this process) stalls, and the line would then be quiet for real
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FLOOD, pair.b, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )

    def stop_flood() -> None:
        writer.kill()
        flooding["on"] = False

    try:
        async with _adapter(f"rtu://{pair.a}", tmp_path) as (adapter, readings):
            await _flood_then_quiet(adapter, readings, stop_flood, caplog)
    finally:
        with contextlib.suppress(ProcessLookupError):
            writer.kill()
        await writer.wait()
        unit.close()
        pair.close()


# writes 0x55 to the pty named by its argument as fast as the line takes it
_FLOOD = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_NOCTTY)
chunk = b"\\x55" * 4096
while True:
    os.write(fd, chunk)
"""
