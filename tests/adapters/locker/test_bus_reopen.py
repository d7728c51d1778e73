"""A locker line that failed once after good cycles is reopened at once, so unlocks work again straight away.

The boards are behind a real TCP serial server on loopback, which drops the gateway's connection
once (as one restarting, or a network blip, does); the bus's next exchange finds the line failed.
Only a line that fails again with no good cycle in between (one that opens fine and fails every
time) waits before the next reopen: see test_bus_write_stall.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from adapters.locker.bus import Board, BoardState, LockerBus
from adapters.locker.config import BoardConfig, BoardModel, BusConfig
from tests.adapters.locker.board_sim import BoardSim, SimBoard


class DroppingServer:
    """A TCP serial server playing `sim`'s boards; `drop()` ends the connection of the moment."""

    def __init__(self, sim: BoardSim) -> None:
        self.sim = sim
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                reply = self.sim.feed(data)
                if writer in self._writers:  # a dropped connection answers nothing more
                    writer.write(reply)
        writer.close()

    def drop(self) -> None:
        # Its half of the connection only: a close with a request not read yet would be a reset, which
        # pyserial's own close of the gateway's socket then trips over (its fd left to the collector).
        for writer in self._writers:
            writer.write_eof()
        self._writers.clear()


@contextlib.asynccontextmanager
async def dropping_server(sim: BoardSim) -> AsyncIterator[tuple[DroppingServer, int]]:
    served = DroppingServer(sim)
    server = await asyncio.start_server(served.client, "127.0.0.1", 0)
    try:
        yield served, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _nothing(*_: object) -> None:
    pass


async def until(condition: Callable[[], bool], within: float, what: str) -> float:
    """Wait (polling every millisecond, up to `within` s) until `condition()` holds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"{what} not within {within:g} s"
        await asyncio.sleep(0.001)
    return time.monotonic() - started


async def test_a_line_that_failed_once_after_good_cycles_is_reopened_at_once() -> None:
    """Regression: every failure of the line paused the bus 1 s (doubling) before the reopen, and an unlock
    meanwhile failed straight away ("the port is not open"), also after a one-off blip on a good line."""
    sim = BoardSim([SimBoard("cu16", 0)])
    async with dropping_server(sim) as (server, port):
        board = Board(BoardConfig(name="a", bus="rs485", model=BoardModel.CU16, address=0, compartments={"A-01": 1}))
        bus = LockerBus(
            cfg=BusConfig(name="rs485", port=f"tcp://127.0.0.1:{port}", timeout=0.5, gap=0, unlock_settle=0),
            boards=[board],
            on_status=_nothing,
            on_state=_nothing,
            poll_interval=0.05,
            offline_after=3,
        )
        run = asyncio.create_task(bus.run())
        try:
            await until(lambda: bus.cycles >= 3 and board.state is BoardState.ONLINE, 5, "three good cycles")
            server.drop()
            await until(lambda: bus.link_error != "", 5, "the dropped line seen")
            assert bus.link_error.startswith(f"locker bus socket://127.0.0.1:{port}: the line failed, got ")
            await until(lambda: bus.link.is_open, 0.5, "the reopen")  # the old pause alone was 1 s
            status = await bus.unlock(board, 1)
            assert status is not None and not status.lock(1).locked
            assert sim.boards[0].unlocks == [1]
            assert server.connections == 2
        finally:
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
