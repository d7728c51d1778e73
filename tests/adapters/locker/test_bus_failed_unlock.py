"""A locker line that stopped delivering: what an exchange left queued is thrown away once the exchange failed,
so a line that takes data again never opens a door whose unlock was reported failed.

On a pty whose far end nothing reads and whose reading side is full (`backlog`), requests fit in
the pty's buffer and wait there, as they wait in the driver of an RS-485 adapter that stopped
passing data on: the unlock "went out", the status poll after it got no reply, and the caller was
told the unlock failed. Reading the far end afterwards shows what the line delivers once it takes
data again. (Bytes a pty already moved into the far end's line discipline are delivered, as bytes
on the wire are: no port can call them back.) A TCP serial server that stopped taking data keeps
the bytes in this host's socket instead; giving the link up must not hand them to the server
afterwards, as a plain close of the socket does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import time
from collections.abc import Iterator

import pytest

from adapters.locker import codec
from adapters.locker.bus import BoardState, LinkError
from tests.adapters.locker.board_sim import SimBoard
from tests.adapters.locker.test_bus_close import silent_bus
from tests.adapters.rfid.port_threads import line as line
from tests.adapters.rfid.port_threads import until_sent
from tests.adapters.rfid.stalled_line import drain

UNLOCK_1 = codec.encode_cu16_unlock(0, 1)


def backlog(path: str) -> None:
    """Zero bytes from `path` (the device's end) toward the far end, more than its line discipline holds
    (N_TTY_BUF_SIZE, 4096 bytes): what is written after them waits in the pty's own buffer, which a
    flush of the output can still discard, and the line still takes data (far from `stall`'s full)."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        assert os.write(fd, bytes(4096)) + os.write(fd, bytes(1024)) == 5120
    finally:
        os.close(fd)


async def test_an_unlock_reported_failed_is_not_delivered_once_the_line_takes_data_again(
    line: tuple[str, int],
) -> None:
    """Regression: queued output was discarded only when a write timed out; the 5-byte unlock fits in the
    buffer, the poll after it ended in BoardTimeout, and the unlock reached the board once the line drained."""
    assert UNLOCK_1.hex() == "0200310336"
    path, far = line
    bus = silent_bus(path)  # CU16 at address 0, replies awaited 0.5 s, offline after 3 failed polls
    board = bus.boards[0]
    await bus.link.open()
    try:
        poll = asyncio.create_task(bus.poll(board))
        await until_sent(far, codec.encode_cu16_query(0))
        os.write(far, SimBoard("cu16", 0).status())
        assert await poll is not None
        assert board.state is BoardState.ONLINE
        backlog(path)  # from here on nothing reads the far end: the line has stopped delivering
        assert await bus.unlock(board, 1) is None  # no status after the unlock: reported failed
        await bus.poll(board)
        await bus.poll(board)
        assert board.counters.went_offline == 1  # the three polls took the board offline
        given_up = drain(far).strip(bytes(1))  # the line takes data again; past the backlog's zero bytes
        assert UNLOCK_1 not in given_up, f"the failed unlock was still delivered: {given_up.hex()}"
        # nor any poll that already failed (its late reply would read as a later poll's)
        assert given_up == b"", f"requests given up were delivered: {given_up.hex()}"
    finally:
        await bus.link.close()


@contextlib.contextmanager
def deaf_server() -> Iterator[tuple[socket.socket, tuple[str, int]]]:
    """A TCP serial server that accepts and never reads: what the gateway sends stays in the sockets."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by the accepted socket
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        yield listener, listener.getsockname()
    finally:
        listener.close()


def own_socket_to(address: tuple[str, int]) -> socket.socket:
    """A second handle on this process's socket connected to `address` (the link's own connection)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if not stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if sock.getpeername() == address:
                return sock
        except OSError:
            pass
        sock.close()
    raise AssertionError(f"no socket of this process is connected to {address}")


def fill(sock: socket.socket) -> int:
    """Send into `sock` until it takes no more (the peer reads nothing); the bytes queued."""
    sock.setblocking(False)
    queued = 0
    full_since: float | None = None
    while full_since is None or time.monotonic() - full_since < 0.05:
        try:
            queued += sock.send(bytes(4096))
            full_since = None
        except BlockingIOError:
            full_since = full_since or time.monotonic()
            time.sleep(0.005)
    return queued


def read_all(conn: socket.socket) -> tuple[int, str]:
    """Everything the server's side gets until the connection ends: the byte count and how it ended."""
    conn.settimeout(5)
    got = 0
    try:
        while data := conn.recv(65536):
            got += len(data)
    except ConnectionResetError:
        return got, "reset"
    return got, "closed"


async def test_a_tcp_link_given_up_hands_the_server_nothing_it_still_held() -> None:
    """Regression: a TCP link given up (its request not taken) was closed gracefully, and a socket closed so
    still sends all it queued, the given-up request too, once the server takes data again."""
    with deaf_server() as (listener, address):
        bus = silent_bus(f"tcp://{address[0]}:{address[1]}")
        await bus.link.open()
        conn, _ = await asyncio.to_thread(listener.accept)
        try:
            with own_socket_to(address) as ours:
                queued = await asyncio.to_thread(fill, ours)
            with pytest.raises(LinkError) as caught:
                await bus.link.exchange(bus.boards[0].unlock_exchange(1), 0.5)
            assert "the line stopped taking data" in str(caught.value)
            assert not bus.link.is_open
            got, ended = await asyncio.to_thread(read_all, conn)  # the server takes data again
            assert ended == "reset", f"the server was handed all {got} bytes and a clean close"
            assert got < queued + len(UNLOCK_1)
        finally:
            conn.close()
            await bus.link.close()
