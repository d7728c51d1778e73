"""A locker bus stopped mid-poll closes its port only after the poll's worker thread left it; an exchange after
close gets a clear error. The bus is on a real pty whose board never answers."""

from __future__ import annotations

import asyncio

import pytest

from adapters.locker import codec
from adapters.locker.bus import Board, BoardState, BoardTimeout, LinkError, LockerBus
from adapters.locker.config import BoardConfig, BoardModel, BusConfig
from tests.adapters.rfid.port_threads import (
    cancelled_in_read,
    inside_pyserial,
    until_sent,
    watched_executor,
)
from tests.adapters.rfid.port_threads import line as line


async def _nothing(*_: object) -> None:
    pass


def silent_bus(path: str) -> LockerBus:
    board = Board(BoardConfig(name="a", bus="rs485", model=BoardModel.CU16, address=0, compartments={"A-01": 1}))
    return LockerBus(
        cfg=BusConfig(name="rs485", port=path, timeout=0.5, gap=0),
        boards=[board],
        on_status=_nothing,
        on_state=_nothing,
        poll_interval=1.0,
        offline_after=3,
    )


async def test_a_bus_stopped_mid_poll_closes_the_port_after_the_polls_worker_left_it(line: tuple[str, int]) -> None:
    """Regression: `close` closed the port in a thread without the link's thread lock, so it returned while
    the cancelled poll's thread was still reading (the fd freed under it, a number the next `open()` is given)."""
    path, board_end = line
    with watched_executor() as executor:
        bus = silent_bus(path)
        run = asyncio.create_task(bus.run())
        await until_sent(board_end, codec.encode_cu16_query(0))
        await cancelled_in_read(run)  # its `finally` closed the link
        assert inside_pyserial() == {}
        opened, poll, closed = executor.work
        ended = poll.exception(timeout=2)
    assert opened.exception() is None and closed.exception() is None
    assert isinstance(ended, BoardTimeout)  # its own end: the board's silence, not the close
    assert str(ended) == f"locker bus {path}: no valid reply within 0.5 s, got 0 bytes"
    assert not bus.link.is_open
    assert bus.boards[0].state is BoardState.UNKNOWN  # the cancelled poll counts neither as an answer nor a timeout
    with pytest.raises(LinkError) as caught:
        await bus.link.exchange(bus.boards[0].query, 0.5)
    assert str(caught.value) == f"locker bus {path}: the port is closed, got an exchange"
