"""An unlock cancelled by its command's deadline after it went to the line, or while its thread waited for
the line, never reaches a board later: the command was reported failed, so a door opening then would be a
door nobody was told about.

On a TCP serial server an unlock awaits no reply, so its exchange returns as soon as the bytes are in this
host's socket; a server whose window is closed (its serial side hung) keeps them there, unsent, until it
reads again. A cancellation raises nothing in the exchange's thread, so that thread cannot take them back.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import Future

import pytest

from adapters.locker import codec
from adapters.locker.bus import Board, LinkError, LockerBus
from adapters.locker.config import BoardConfig, BoardModel, BusConfig
from tests.adapters.locker.test_bus_failed_unlock import UNLOCK_1, deaf_server, own_socket_to
from tests.adapters.locker.test_bus_tcp_unsent import backed_up, delivered, read_again, unsent
from tests.adapters.rfid.port_threads import cancelled_in_read, watched_executor

TAKEN_BACK = re.compile(
    r"locker bus socket://127\.0\.0\.1:\d+: a request was given up \(cancelled, an unlock's command past its"
    r" deadline\) with (\d+) bytes unsent to the TCP serial server; the link is reset so none of them reaches a"
    r" board later; check the power and the network of the TCP serial server, and whether its serial side hung"
)


async def _nothing(*_: object) -> None:
    pass


def tcp_bus(address: tuple[str, int], *, settle: float) -> LockerBus:
    """A CU16 board at address 0 behind a TCP serial server, replies awaited 0.5 s."""
    board = Board(BoardConfig(name="a", bus="rs485", model=BoardModel.CU16, address=0, compartments={"A-01": 1}))
    return LockerBus(
        cfg=BusConfig(name="rs485", port=f"tcp://{address[0]}:{address[1]}", timeout=0.5, gap=0, unlock_settle=settle),
        boards=[board],
        on_status=_nothing,
        on_state=_nothing,
        poll_interval=1.0,
        offline_after=3,
    )


async def until_done(work: list[Future[object]], count: int) -> None:
    """Wait (up to 2 s) until the executor's `count`-th work item has ended."""
    for _ in range(2000):
        if len(work) >= count and work[count - 1].done():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the unlock's exchange did not end within 2 s")


async def test_an_unlock_cancelled_in_its_settle_on_a_backed_up_tcp_server_is_never_delivered() -> None:
    """Regression: the unlock's bytes waited unsent in this host's socket when its command's deadline
    cancelled it during `unlock_settle`; the link stayed open and the server got `02 00 31 03 36` (the door
    opening after the command was reported failed) once it read again."""
    with deaf_server() as (listener, address), watched_executor() as executor:
        bus = tcp_bus(address, settle=5.0)
        await bus.link.open()
        conn, _ = await asyncio.to_thread(listener.accept)
        try:
            await asyncio.to_thread(backed_up, address)
            before = len(executor.work)
            task = asyncio.create_task(bus.unlock(bus.boards[0], 1))
            await until_done(executor.work, before + 1)  # the unlock is in the socket: the task is in its settle
            assert executor.work[before].exception() is None
            with own_socket_to(address) as ours:
                assert unsent(ours) > 0  # the window is closed: the unlock waits in this host's socket
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            else:
                raise AssertionError("the cancelled unlock returned")
            got, ended = await asyncio.to_thread(read_again, conn)
            assert UNLOCK_1 not in got, f"the cancelled unlock reached the server: {delivered(got)}"
            assert ended == "reset"
            # the next exchange says why the link is gone
            with pytest.raises(LinkError) as caught:
                await bus.link.exchange(bus.boards[0].query, 0.5)
            said = TAKEN_BACK.fullmatch(str(caught.value))
            assert said is not None, str(caught.value)
            assert int(said[1]) >= len(UNLOCK_1)
            assert not bus.link.is_open
        finally:
            conn.close()
            await bus.link.close()


async def test_an_unlock_cancelled_while_its_thread_waits_for_the_line_is_never_sent() -> None:
    """Regression: a poll cancelled in its read keeps the line (its thread reads on until its timeout); an
    unlock cancelled while its thread waited behind it was still sent once that poll ended, to a server
    taking data, so the door opened after the command was reported failed."""
    with deaf_server() as (listener, address), watched_executor() as executor:
        bus = tcp_bus(address, settle=0.0)
        await bus.link.open()
        conn, _ = await asyncio.to_thread(listener.accept)
        try:
            await cancelled_in_read(asyncio.create_task(bus.poll(bus.boards[0])))  # its thread reads on 0.5 s
            before = len(executor.work)
            task = asyncio.create_task(bus.unlock(bus.boards[0], 1))
            for _ in range(2000):
                if len(executor.work) > before:
                    break
                await asyncio.sleep(0.001)
            assert not executor.work[before].done()  # waiting behind the poll's thread
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            else:
                raise AssertionError("the cancelled unlock returned")
            for work in executor.work:
                work.exception(timeout=2)  # every thread ended, the cancelled unlock's too
            got, _ended = await asyncio.to_thread(read_again, conn)
            assert UNLOCK_1 not in got, f"the cancelled unlock reached the server: {delivered(got)}"
            assert got == codec.encode_cu16_query(0)  # the poll it waited behind, and nothing after it
        finally:
            conn.close()
            await bus.link.close()
