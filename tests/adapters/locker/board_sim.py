"""A stand-in for locker boards on an RS-485 line: a pty pair made by socat, or a TCP serial server.

Requests are recognised by comparing against the frames the codec's encoders make (the codec is
the reference for what goes on the wire); replies are built here byte by byte from the protocol
tables in adapters/locker/README.md, with their own checksums, not with any adapter code. Doors
open on an unlock (and close when the test says so), compartments fill and empty, a board can go
silent, and the next reply can be corrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from adapters.locker import codec


def one_board_toml(port: str) -> str:
    """The locker adapter's bus on `port` and one CU16 board at address 0 with compartments A-01..A-03:
    the `[[adapters.buses]]` and `[[adapters.boards]]` tables of the gateway tests' configurations."""
    return f"""[[adapters.buses]]
name = "rs485"
port = "{port}"
timeout = 0.1
gap = 0
unlock_settle = 0

[[adapters.boards]]
name = "a"
bus = "rs485"
model = "cu16"
address = 0
compartments = {{ "A-01" = 1, "A-02" = 2, "A-03" = 3 }}
"""


def _sum(data: bytes) -> bytes:
    return data + bytes((sum(data) & 0xFF,))


def _xor(data: bytes) -> bytes:
    x = 0
    for b in data:
        x ^= b
    return data + bytes((x,))


@dataclass(slots=True)
class SimBoard:
    model: str  # cu16 | cu48 | xor12 | xor24
    address: int
    locked: list[bool] = field(default_factory=list)
    occupied: list[bool] = field(default_factory=list)
    silent: bool = False
    corrupt_next: int = 0
    unlocks: list[int] = field(default_factory=list)
    open_on_unlock: bool = True

    def __post_init__(self) -> None:
        n = {"cu16": 16, "cu48": 48, "xor12": 12}.get(self.model, 24)
        self.locked = [True] * n
        self.occupied = [False] * n

    def _bits(self, values: list[bool]) -> int:
        return sum(1 << k for k, v in enumerate(values) if v)

    def status(self) -> bytes:
        locks = self._bits(self.locked)
        if self.model == "cu16":
            ir = self._bits(self.occupied)
            body = bytes((0x02, self.address << 4, 0x35, locks & 0xFF, locks >> 8, ir & 0xFF, ir >> 8, 0x03))
            return _sum(body)
        if self.model == "cu48":
            return _sum(bytes((0x02, self.address, 0x00, 0x75)) + locks.to_bytes(6, "little") + b"\x03")
        groups = 2 if self.model == "xor12" else 3
        return _xor(bytes((0x80, self.address)) + locks.to_bytes(groups, "big") + b"\x33")

    def unlock(self, lock: int) -> bytes:
        self.unlocks.append(lock)
        if self.open_on_unlock:
            self.locked[lock - 1] = False
        if self.model.startswith("xor"):
            return _xor(bytes((0x8A, self.address, lock, 0x11 if self.locked[lock - 1] else 0x00)))
        return b""  # Kerong boards: the status query that follows tells


class BoardSim:
    """Sans-I/O: bytes from the gateway in, reply bytes out."""

    def __init__(self, boards: list[SimBoard], *, baud: int = 0) -> None:
        self.boards = boards
        self.baud = baud  # > 0: replies are delayed by the request's and their own wire time
        self.requests = 0
        self.noise = 0
        self.late_s = 0.0  # with `baud`: how much later than the wire time the replies went out, in total
        self._buf = b""
        self._table: dict[bytes, tuple[SimBoard, int]] = {}  # request → (board, lock or 0 for a status query)
        for b in boards:
            n = len(b.locked)
            if b.model == "cu16":
                self._table[codec.encode_cu16_query(b.address)] = (b, 0)
                for k in range(1, n + 1):
                    self._table[codec.encode_cu16_unlock(b.address, k)] = (b, k)
            elif b.model == "cu48":
                self._table[codec.encode_cu48_query(b.address)] = (b, 0)
                for k in range(1, n + 1):
                    self._table[codec.encode_cu48_unlock(b.address, k)] = (b, k)
            else:
                self._table[codec.encode_xor_query_all(b.address)] = (b, 0)
                for k in range(1, n + 1):
                    self._table[codec.encode_xor_unlock(b.address, k, channels=n)] = (b, k)
        self._lengths = sorted({len(r) for r in self._table}, reverse=True)

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = b""
        while self._buf:
            for n in self._lengths:
                hit = self._table.get(self._buf[:n])
                if hit is not None:
                    self._buf = self._buf[n:]
                    out += self._answer(*hit)
                    break
            else:
                if len(self._buf) < self._lengths[0]:
                    return out  # maybe the head of a request not complete yet
                self._buf = self._buf[1:]
                self.noise += 1
        return out

    def _answer(self, board: SimBoard, lock: int) -> bytes:
        self.requests += 1
        if board.silent:
            return b""
        reply = board.status() if lock == 0 else board.unlock(lock)
        if reply and board.corrupt_next:
            board.corrupt_next -= 1
            reply = reply[:-1] + bytes(((reply[-1] + 1) & 0xFF,))
        return reply


# --- I/O --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def pty_pair(tmp: Path) -> Iterator[tuple[str, str]]:
    """Two connected ptys (socat); yields (gateway side, board side) paths."""
    socat = shutil.which("socat")
    assert socat, "socat is not installed (Debian package socat)"
    a, b = tmp / "gw", tmp / "boards"
    proc = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()):
            assert time.monotonic() < deadline, "socat made no ptys within 5 s"
            time.sleep(0.01)
        yield str(a), str(b)
    finally:
        proc.terminate()
        proc.wait(5)


class _Replier:
    def __init__(self, sim: BoardSim) -> None:
        self.sim = sim

    async def reply(self, data: bytes, write: object) -> None:
        out = self.sim.feed(data)
        if out:
            if self.sim.baud:
                # the request's and the reply's time on a real line (10 bits a byte, 8N1); a pty has none
                delay = (len(data) + len(out)) * 10 / self.sim.baud
                started = time.monotonic()
                await asyncio.sleep(delay)
                self.sim.late_s += time.monotonic() - started - delay  # the event loop's wake-up lateness
            write(out)  # type: ignore[operator]


@contextlib.asynccontextmanager
async def serve_pty(sim: BoardSim, path: str) -> AsyncIterator[None]:
    """Play the boards on the board side of a pty pair until the block ends."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()
    replier = _Replier(sim)
    pending: set[asyncio.Task[None]] = set()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        task = loop.create_task(replier.reply(data, lambda out: os.write(fd, out)))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_reader(fd, readable)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        for t in list(pending):
            t.cancel()
        os.close(fd)


@contextlib.asynccontextmanager
async def serve_tcp(sim: BoardSim) -> AsyncIterator[int]:
    """Play the boards behind a TCP serial server on 127.0.0.1; yields its port."""
    replier = _Replier(sim)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(4096):
                await replier.reply(data, writer.write)
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
