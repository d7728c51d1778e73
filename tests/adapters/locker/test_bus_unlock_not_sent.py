"""An unlock the line failed before sending is `RequestNotSent`; one whose status poll failed after it went out is a
plain LinkError, even when that poll itself never left: the adapter gives a pickup code back only for the first.

The boards are the stand-in on a socat pty; the adapter pulled out is the socat process stopped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.locker import codec
from adapters.locker.bus import Board, BoardState, LinkError, LockerBus, RequestNotSent, SerialLink
from adapters.locker.config import BoardConfig, BoardModel, BusConfig
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_adapter import until
from tests.adapters.modbus.peers import PtyPair


async def _nothing(*_: object) -> None:
    pass


def bus_on(port: str, *, unlock_settle: float = 0.0) -> LockerBus:
    board = Board(BoardConfig(name="a", bus="rs485", model=BoardModel.CU16, address=0, compartments={"A-01": 1}))
    return LockerBus(
        cfg=BusConfig(name="rs485", port=port, timeout=0.2, gap=0, unlock_settle=unlock_settle),
        boards=[board],
        on_status=_nothing,
        on_state=_nothing,
        poll_interval=1.0,
        offline_after=3,
    )


async def test_an_unlock_on_a_line_not_open_was_not_sent(tmp_path: Path) -> None:
    bus = bus_on(str(tmp_path / "none"))
    with pytest.raises(RequestNotSent) as caught:
        await bus.unlock(bus.boards[0], 1)
    assert str(caught.value) == "locker bus rs485: the port is not open, got no port yet"


async def test_an_unlock_on_an_adapter_pulled_out_was_not_sent(tmp_path: Path) -> None:
    """The input flush that starts every exchange fails on a hung-up tty: before any byte of the request."""
    pair = PtyPair(tmp_path)
    link = SerialLink(BusConfig(name="lockers", port=pair.a), codec.Dialect.KERONG)
    await link.open()
    try:
        pair.close()
        with pytest.raises(RequestNotSent) as caught:
            await link.exchange(bus_on(pair.a).boards[0].unlock_exchange(1), timeout=0.2)
        assert str(caught.value) == f"locker bus {pair.a}: the line failed, got [Errno 5] Input/output error"
    finally:
        await link.close()
        pair.close()


async def test_a_poll_that_failed_after_the_unlock_went_out_is_no_unsent_unlock(tmp_path: Path) -> None:
    """The port closed during the unlock's settle: the poll after it is refused before it is sent, and yet the
    unlock itself reached the board."""
    sim = BoardSim([SimBoard("cu16", 0)])
    with pty_pair(tmp_path) as (gw, boards):
        async with serve_pty(sim, boards):
            bus = bus_on(gw, unlock_settle=0.3)
            board = bus.boards[0]
            await bus.link.open()
            try:
                assert await bus.poll(board) is not None and board.state is BoardState.ONLINE
                unlock = asyncio.create_task(bus.unlock(board, 1))
                await until(lambda: sim.boards[0].unlocks == [1])
                await bus.link.close()  # in the settle, before the poll
                with pytest.raises(LinkError) as caught:
                    await unlock
                assert not isinstance(caught.value, RequestNotSent)
                assert str(caught.value) == f"locker bus {gw}: the port is closed, got an exchange"
            finally:
                await bus.link.close()
