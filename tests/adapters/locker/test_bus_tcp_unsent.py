"""A TCP serial server that stopped taking data: what the gateway queued for it is never delivered once the
exchange that queued it ended without its reply, nor by a close.

The server's serial side hung, so it stopped reading its connection: its window closes and the
gateway's requests wait unsent in this host's socket, a buffer far from full (filling it would take
hours of polls), so no write ever times out. pyserial cannot discard that queue; only a reset of the
connection does. The kernel's own count of the bytes not yet sent (SIOCOUTQNSD) is the oracle of
"backed up"; what the server reads once it reads again is what a board behind it would get.
"""

from __future__ import annotations

import asyncio
import fcntl
import re
import socket
import struct
import time

import pytest

from adapters.locker import codec
from adapters.locker.bus import BoardTimeout, LinkError
from tests.adapters.locker.test_bus_close import silent_bus
from tests.adapters.locker.test_bus_failed_unlock import UNLOCK_1, deaf_server, own_socket_to
from tests.adapters.rfid.port_threads import cancelled_in_read, watched_executor

_SIOCOUTQNSD = 0x894B  # <linux/sockios.h>: bytes queued in a TCP socket and not sent yet
GAVE_UP = re.compile(
    r"locker bus socket://127\.0\.0\.1:\d+: the TCP serial server stopped taking data, got (\d+) bytes unsent"
    r" after 0\.5 s without a reply; the link is reset so none of them reaches a board later; check the power"
    r" and the network of the TCP serial server, and whether its serial side hung"
)


def unsent(sock: socket.socket) -> int:
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQNSD, bytes(4)))[0])


def backed_up(address: tuple[str, int]) -> int:
    """Filler sent on the link's own connection until some of it stays unsent (the server's window closed,
    the socket's buffer still far from full); the bytes unsent."""
    with own_socket_to(address) as ours:  # a second handle: closed here, or it would keep the socket alive
        ours.setblocking(False)
        for _ in range(1000):
            if unsent(ours) > 0:
                time.sleep(0.05)  # the kernel moves queued bytes along in the background
                if (waiting := unsent(ours)) > 0:
                    return waiting
                continue
            ours.send(bytes(1024))
    raise AssertionError(f"the connection to {address} did not back up within 1 MB")


_TCP_CLOSE_WAIT = 8  # <netinet/tcp.h>: the peer's FIN came, and nothing after it


def read_again(conn: socket.socket) -> tuple[bytes, str]:
    """The server reading again: all it gets, and whether the connection was reset, closed or is still open.

    pyserial's close shuts the socket down before closing it: with nothing queued the FIN goes out
    first and a reset after it still ends the connection, so "closed" is the FIN and nothing else.
    """
    conn.settimeout(1.0)
    got = b""
    try:
        while data := conn.recv(65536):
            got += data
    except ConnectionResetError:
        return got, "reset"
    except TimeoutError:
        return got, "open"
    state = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]  # tcpi_state
    return got, "closed" if state == _TCP_CLOSE_WAIT else "reset after the FIN"


def delivered(got: bytes) -> str:
    """The requests among what the server got (past the filler's zero bytes), in hex."""
    return got.lstrip(bytes(1)).hex(" ")


async def test_an_unlock_reported_failed_on_a_tcp_serial_server_never_reaches_the_board_later() -> None:
    """Regression: the poll after the unlock ended in BoardTimeout, which kept the link open, and pyserial's
    reset_output_buffer discards nothing on a socket: the unlock and the poll stayed queued, and the server
    got `02 00 31 03 36` (the door opening late) once it read again."""
    with deaf_server() as (listener, address):
        bus = silent_bus(f"tcp://{address[0]}:{address[1]}")  # CU16 at address 0, replies awaited 0.5 s
        await bus.link.open()
        conn, _ = await asyncio.to_thread(listener.accept)
        try:
            await asyncio.to_thread(backed_up, address)
            outcome: object
            try:
                outcome = await bus.unlock(bus.boards[0], 1)
            except LinkError as exc:
                outcome = exc
            got, ended = await asyncio.to_thread(read_again, conn)
            assert UNLOCK_1 not in got, f"the failed unlock reached the server: {delivered(got)}"
            assert ended == "reset"
            assert isinstance(outcome, LinkError), f"the unlock ended in {outcome!r}"
            said = GAVE_UP.fullmatch(str(outcome))
            assert said is not None, str(outcome)
            assert int(said[1]) >= 2 * len(UNLOCK_1)  # the unlock and its poll, behind what the filler left
            assert not bus.link.is_open
        finally:
            conn.close()
            await bus.link.close()


async def test_a_tcp_link_closed_with_an_unlock_still_unsent_never_delivers_it() -> None:
    """Regression: `close()` (the bus stopped, a reload) closed the socket gracefully, which sends all it
    queued first, an unlock nobody was told had opened among it."""
    with deaf_server() as (listener, address):
        bus = silent_bus(f"tcp://{address[0]}:{address[1]}")
        await bus.link.open()
        conn, _ = await asyncio.to_thread(listener.accept)
        try:
            await asyncio.to_thread(backed_up, address)
            assert await bus.link.exchange(bus.boards[0].unlock_exchange(1), 0.5) is None  # no reply awaited
            await bus.link.close()
            got, ended = await asyncio.to_thread(read_again, conn)
            assert UNLOCK_1 not in got, f"the unlock reached the server after the close: {delivered(got)}"
            assert ended == "reset"
        finally:
            conn.close()
            await bus.link.close()


async def test_an_unlock_whose_poll_was_cancelled_is_never_delivered_by_the_link_left_open() -> None:
    """Regression: a command's deadline cancels the unlock while its poll waits for the reply; the poll's
    thread still ends in its own timeout, which nobody hears, so a link that only the awaiting side gave
    up stayed open with the unlock queued, delivered as soon as the server read again."""
    with deaf_server() as (listener, address), watched_executor() as executor:
        bus = silent_bus(f"tcp://{address[0]}:{address[1]}")
        await bus.link.open()
        conn, _ = await asyncio.to_thread(listener.accept)
        try:
            await asyncio.to_thread(backed_up, address)
            await cancelled_in_read(asyncio.create_task(bus.unlock(bus.boards[0], 1)))  # in its poll's read
            ended_with = executor.work[-1].exception(timeout=2)  # the poll's thread, on its own
            got, ended = await asyncio.to_thread(read_again, conn)
            assert UNLOCK_1 not in got, f"the cancelled unlock reached the server: {delivered(got)}"
            assert ended == "reset"
            assert isinstance(ended_with, LinkError) and GAVE_UP.fullmatch(str(ended_with)), repr(ended_with)
            # the next exchange says why the link is gone, not just that it is
            with pytest.raises(LinkError) as caught:
                await bus.link.exchange(bus.boards[0].query, 0.5)
            assert str(caught.value) == str(ended_with)
            assert not bus.link.is_open
        finally:
            conn.close()
            await bus.link.close()


async def test_a_silent_board_behind_a_tcp_serial_server_taking_data_keeps_the_link_and_closes_it_cleanly() -> None:
    """Nothing unsent, nothing to take back: polls the server took and no board answered are the board's
    silence (the link stays), and the close is a plain one (FIN, not a reset a server logs as an error).
    Polls in quick succession, each within the server's delayed ACK of the one before: a request held
    back by Nagle's algorithm (unsent until that ACK) is no server that stopped taking data."""
    with deaf_server() as (listener, address):
        bus = silent_bus(f"tcp://{address[0]}:{address[1]}")
        await bus.link.open()
        conn, _ = await asyncio.to_thread(listener.accept)
        try:
            for _ in range(10):
                with pytest.raises(BoardTimeout):
                    await bus.link.exchange(bus.boards[0].query, 0.02)
            assert bus.link.is_open
            await bus.link.close()
            got, ended = await asyncio.to_thread(read_again, conn)
            assert (got, ended) == (codec.encode_cu16_query(0) * 10, "closed")
        finally:
            conn.close()
            await bus.link.close()
