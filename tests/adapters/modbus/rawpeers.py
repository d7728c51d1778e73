"""Scripted Modbus peers that answer with exactly the bytes a test gives: a raw MBAP server, a raw RTU device on a pty.

pymodbus servers only send well-formed answers; these send whatever a broken device or gateway
sends (another function code, a lying byte count, a late answer, a frame from another unit), so
the adapter's checks are tested on the wire.
"""

from __future__ import annotations

import asyncio
import os
import struct
import termios
import time
import tty
from collections.abc import Callable

from adapters.modbus import rtu

# (transaction id, unit id, request PDU) -> the bytes to send back, None for silence, or (delay in seconds,
# bytes) pairs to send, in order, for an answer that comes late or in pieces
TcpScript = Callable[[int, int, bytes], bytes | list[tuple[float, bytes]] | None]
# a decoded request -> (delay in seconds, bytes) pairs to send, in order
RtuScript = Callable[[rtu.Request], list[tuple[float, bytes]]]


def mbap(tid: int, unit: int, pdu: bytes, *, length: int | None = None, protocol: int = 0) -> bytes:
    """A Modbus TCP frame; `length` and `protocol` override the header's fields (for broken answers)."""
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1 if length is None else length, unit) + pdu


def registers_pdu(function_code: int, values: list[int]) -> bytes:
    return bytes([function_code, 2 * len(values)]) + b"".join(struct.pack(">H", v) for v in values)


class RawTcpServer:
    """A Modbus TCP server on 127.0.0.1, port 0, answering each request as `script` says."""

    def __init__(self, script: TcpScript) -> None:
        self.script = script
        self.requests: list[tuple[int, bytes]] = []  # (unit, request PDU)
        self.connections = 0  # accepted so far
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pending: list[asyncio.TimerHandle] = []
        self.port = 0

    async def start(self) -> RawTcpServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections += 1
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                self.requests.append((unit, pdu))
                answer = self.script(tid, unit, pdu)
                if isinstance(answer, list):
                    loop = asyncio.get_running_loop()
                    self._pending += [loop.call_later(delay, writer.write, data) for delay, data in answer]
                elif answer:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def stop(self) -> None:
        for handle in self._pending:
            handle.cancel()
        for writer in list(self._writers):
            writer.close()  # the handlers end on their own, before the server goes
        await asyncio.sleep(0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


def read_request(pdu: bytes) -> tuple[int, int, int]:
    """(function code, address, count) of a read request PDU."""
    fc, address, count = struct.unpack(">BHH", pdu[:5])
    return fc, address, count


class RawRtuDevice:
    """Plays the units of an RTU line on one end of a pty pair: every request is answered as `script` says."""

    def __init__(self, path: str, script: RtuScript) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)
        self.script = script
        self.requests: list[tuple[int, float]] = []  # (unit, monotonic time)
        self._buffer = bytearray()
        self._loop = asyncio.get_running_loop()
        self._pending: list[asyncio.TimerHandle] = []
        self._loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            self._buffer += os.read(self.fd, 4096)
        except BlockingIOError:
            return
        while len(self._buffer) >= 8:
            size = 8 if self._buffer[1] not in (15, 16) else 9 + self._buffer[6]
            if len(self._buffer) < size:
                return
            frame = bytes(self._buffer[:size])
            del self._buffer[:size]
            request = rtu.decode_request(frame)
            self.requests.append((request.unit_id, time.monotonic()))
            for delay, data in self.script(request):
                self._pending.append(self._loop.call_later(delay, os.write, self.fd, data))

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._loop.remove_reader(self.fd)
        os.close(self.fd)


def rtu_answer(request: rtu.Request, value: int = 0x00D7, *, unit: int | None = None) -> bytes:
    """A normal RTU answer to `request` (every register `value`), from `unit` when given."""
    if unit is not None:
        request = rtu.Request(
            unit_id=unit, function_code=request.function_code, address=request.address, count=request.count
        )
    if request.function_code in (3, 4):
        return rtu.encode_response(request, registers=(value,) * request.count)
    if request.function_code in (1, 2):
        return rtu.encode_response(request, bits=(False,) * request.count)
    return rtu.encode_response(request)
