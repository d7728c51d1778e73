"""The socket's limits: silent and trickling clients closed after the idle bound, slow ops not cut, a cap on connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import Runtime
from gateway.config import load_config
from gateway.control.client import ControlClient
from gateway.control.protocol import ControlError, ControlUnavailable, decode_request, encode_request, encode_result
from gateway.control.server import ControlServer
from tests.control.running import config_text, socket_dir, until

pytestmark = pytest.mark.both_loops  # timers and transports: uvloop is what `edgegw run` runs on

IDLE = 0.3  # the idle bound in these tests: short, so the suite stays quick
CAP = 3


@asynccontextmanager
async def serving(tmp_path: Path, **limits: Any) -> AsyncIterator[ControlServer]:
    """A real ControlServer on a Unix socket; no gateway started (the ops used here do not need one)."""
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path / "data", "http://127.0.0.1:9", rate=1.0))
    directory = socket_dir()
    server = ControlServer(directory / "control.sock", Runtime(config, load_config(config)), tools=[], **limits)
    try:
        async with server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Clients:
    """Raw connections to the socket, every one closed at the end (an open transport would warn)."""

    def __init__(self, server: ControlServer) -> None:
        self.server = server
        self.writers: list[asyncio.StreamWriter] = []

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_unix_connection(str(self.server.path))
        self.writers.append(writer)
        return reader, writer

    async def sending(self, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection that has sent `data` (a request line, whole or part-way)."""
        reader, writer = await self.open()
        writer.write(data)
        await writer.drain()
        return reader, writer

    async def admitted(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection the server has taken in: it answered a request on it."""
        reader, writer = await self.open()
        assert (await ask(reader, writer))["ok"] is True
        return reader, writer

    async def leave(self, writer: asyncio.StreamWriter) -> None:
        left = self.server.counters()["connections"] - 1
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        await until(lambda: self.server.counters()["connections"] == left, f"{left} connections")

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@asynccontextmanager
async def clients(server: ControlServer) -> AsyncIterator[Clients]:
    c = Clients(server)
    try:
        yield c
    finally:
        await c.close()


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, op: str = "tools") -> Any:
    writer.write(encode_request(1, op, {}))
    await writer.drain()
    return orjson.loads(await asyncio.wait_for(reader.readline(), 5))


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does not within 5 s."""
    data = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(64 * 1024):
                data += chunk
    except TimeoutError:
        raise AssertionError("the server kept the connection open") from None
    except ConnectionError:
        pass  # a write of ours met the closed socket first (uvloop reports that on the reader)
    return data


def now() -> float:
    return asyncio.get_running_loop().time()


# --- idle --------------------------------------------------------------------------------------------


async def test_a_client_that_sends_nothing_is_closed_after_the_idle_bound(tmp_path: Path) -> None:
    async with serving(tmp_path, idle_timeout_s=IDLE) as server, clients(server) as c:
        start = now()
        reader, _ = await c.open()
        assert await closed(reader) == b""  # nothing said: a reply would break the request/reply order
        assert IDLE * 0.9 <= now() - start < IDLE + 2
        await until(lambda: server.counters()["connections"] == 0, "the connection gone")
        assert server.counters()["idle_closed"] == 1


async def test_a_partial_line_trickling_in_is_idle_and_closed_after_the_bound(tmp_path: Path) -> None:
    partial = b'{"id": 1, "op": "tools", "args": {}}'  # no newline: never a complete request
    async with serving(tmp_path, idle_timeout_s=IDLE) as server, clients(server) as c:
        start = now()
        reader, writer = await c.open()

        async def trickle() -> None:  # a byte every sixth of the bound: bytes arriving do not extend it
            for i in range(len(partial)):
                writer.write(partial[i : i + 1])
                await writer.drain()
                await asyncio.sleep(IDLE / 6)

        trickling = asyncio.create_task(trickle())
        try:
            assert await closed(reader) == b""
            assert IDLE * 0.9 <= now() - start < len(partial) * IDLE / 6  # before the line could be complete
        finally:
            trickling.cancel()
            await asyncio.gather(trickling, return_exceptions=True)
        assert server.counters()["idle_closed"] == 1
        assert server.counters()["requests"] == 0


async def test_the_bound_is_per_request_and_closes_a_client_gone_quiet_after_some(tmp_path: Path) -> None:
    async with serving(tmp_path, idle_timeout_s=IDLE) as server, clients(server) as c:
        reader, writer = await c.open()
        for _ in range(5):  # twice the bound in all, never the bound between two requests
            await asyncio.sleep(IDLE / 2.5)
            assert (await ask(reader, writer))["ok"] is True
        quiet = now()
        assert await closed(reader) == b""
        assert IDLE * 0.9 <= now() - quiet < IDLE + 2
        assert (server.counters()["requests"], server.counters()["idle_closed"]) == (5, 1)


async def test_an_op_answering_slowly_is_not_cut_and_the_bound_starts_again_after_it(tmp_path: Path) -> None:
    async with serving(tmp_path, idle_timeout_s=IDLE) as server, clients(server) as c:
        answer = asyncio.Event()
        started = asyncio.Event()

        async def slow(args: dict[str, Any]) -> str:  # as `command` waiting on its device, or fleet.probe
            started.set()
            await answer.wait()
            return "done"

        server.ops["slow"] = slow
        reader, writer = await c.open()
        writer.write(encode_request(7, "slow", {}))
        await writer.drain()
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(IDLE * 3)  # the op runs three times the bound
        assert server.counters()["idle_closed"] == 0
        answer.set()
        replied = now()
        assert orjson.loads(await asyncio.wait_for(reader.readline(), 5)) == {"id": 7, "ok": True, "result": "done"}
        assert await closed(reader) == b""  # and then the client, quiet, is idle like any other
        assert IDLE * 0.9 <= now() - replied < IDLE + 2
        assert server.counters()["idle_closed"] == 1


async def test_a_client_that_never_reads_its_reply_is_closed_after_the_bound(tmp_path: Path) -> None:
    async with serving(tmp_path, idle_timeout_s=IDLE) as server, clients(server) as c:

        async def large(args: dict[str, Any]) -> str:  # more than the socket's buffers hold
            return "x" * (8 * 1024 * 1024)

        server.ops["large"] = large
        _, writer = await c.open()
        writer.write(encode_request(1, "large", {}))
        await writer.drain()
        await until(lambda: server.counters()["idle_closed"] == 1, "the connection closed", timeout=5)
        assert server.counters()["connections"] == 0


# --- the cap -------------------------------------------------------------------------------------------

BUSY_LINE = {
    "id": None,
    "ok": False,
    "error": {
        "code": "busy",
        "message": "control socket: at most 3 connections at once, got 4; try again in a moment "
        "(an idle connection is closed after 60 s)",
        "errors": [],
    },
}


async def refused(c: Clients) -> None:
    """A connection over the cap gets the one busy line, then the server closes it."""
    reader, _ = await c.open()
    data = await closed(reader)
    assert data.count(b"\n") == 1 and orjson.loads(data) == BUSY_LINE


async def test_a_connection_over_the_cap_is_refused_busy_and_counted(tmp_path: Path) -> None:
    async with serving(tmp_path, max_connections=CAP) as server, clients(server) as c:
        held = [await c.admitted() for _ in range(CAP)]
        await refused(c)
        assert server.counters() | {"bad_requests": None} == {
            "connections": CAP,
            "requests": CAP,
            "bad_requests": None,
            "refused_busy": 1,
            "idle_closed": 0,
        }
        for reader, writer in held:  # the ones in keep working
            assert (await ask(reader, writer))["ok"] is True


async def test_a_slot_is_free_again_once_a_client_leaves(tmp_path: Path) -> None:
    async with serving(tmp_path, max_connections=CAP) as server, clients(server) as c:
        held = [await c.admitted() for _ in range(CAP)]
        await refused(c)
        await c.leave(held[0][1])
        await c.admitted()
        await refused(c)
        assert (server.counters()["connections"], server.counters()["refused_busy"]) == (CAP, 2)


async def test_refusals_are_logged_once_a_spell_and_its_end_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.control.server")
    async with serving(tmp_path, max_connections=CAP) as server, clients(server) as c:
        path = server.path
        held = [await c.admitted() for _ in range(CAP)]
        for _ in range(5):
            await refused(c)
        # a freed slot taken again at once: still at the cap, the same spell
        await c.leave(held.pop(0)[1])
        held.append(await c.admitted())
        await refused(c)
        # room to spare once in: the spell is over
        await c.leave(held.pop(0)[1])
        await c.leave(held.pop(0)[1])
        held.append(await c.admitted())
        held.append(await c.admitted())
        await refused(c)
    full = (
        f"control socket {path}: 3 connections open, the most it takes; refusing more until some close "
        "(is a client opening connections without closing them?)"
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "gateway.control.server"] == [
        ("INFO", f"control socket listening on {path}"),
        ("WARNING", full),
        ("INFO", f"control socket {path}: taking connections again, after refusing 6"),
        ("WARNING", full),
    ]


# --- the client side: edgegw web and the kiosk keep one ControlClient between calls ---------------


async def test_a_client_whose_connection_was_closed_idle_connects_again_for_its_next_call(tmp_path: Path) -> None:
    async with serving(tmp_path, idle_timeout_s=IDLE) as server:
        client = ControlClient(server.path)
        try:
            assert await client.call("tools") == []
            await until(lambda: server.idle_closed == 1, "the idle connection closed")
            assert await client.call("tools") == []  # not "the gateway is not answering" once first
            assert server.counters()["requests"] == 2
        finally:
            await client.close()


async def test_a_client_refused_at_the_cap_gets_busy_then_is_served_once_a_slot_is_free(tmp_path: Path) -> None:
    async with serving(tmp_path, max_connections=CAP) as server, clients(server) as c:
        held = [await c.admitted() for _ in range(CAP)]
        client = ControlClient(server.path)
        try:
            with pytest.raises(ControlError) as refusal:
                await client.call("tools")
            assert refusal.value.code == "busy"
            await c.leave(held[0][1])
            assert await client.call("tools") == []  # on a new connection, not the refused one
        finally:
            await client.close()


class Resetting:
    """A socket peer that answers requests, but resets chosen ones as they arrive, before any reply.

    The real server's idle close does this to a request sent in the instant it closes; here it
    happens on cue, so the client's side of that race runs every time. `partial` sends the first
    bytes of the reply before the reset (a peer that had begun answering: the op ran).
    """

    def __init__(self, path: Path, reset: set[int], partial: bool = False) -> None:
        self.path = path
        self.reset = reset  # which requests, counted from 1 over all connections, are reset
        self.partial = partial
        self.connections = 0
        self.requests: list[str] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while line := await reader.readline():
            request = decode_request(line)
            self.requests.append(request.op)
            if len(self.requests) in self.reset:
                if self.partial:
                    writer.write(encode_result(request.id, [])[:5])
                    await writer.drain()
                writer.transport.abort()
                return
            writer.write(encode_result(request.id, []))
            await writer.drain()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Resetting]:
        server = await asyncio.start_unix_server(self._serve, str(self.path))
        try:
            yield self
        finally:
            server.close()
            for writer in self._writers:
                writer.close()
            await server.wait_closed()


async def test_a_call_reset_unanswered_on_a_kept_connection_is_sent_again_on_a_new_one() -> None:
    directory = socket_dir()
    try:
        async with Resetting(directory / "control.sock", reset={2}).running() as peer:
            async with ControlClient(peer.path) as client:
                assert await client.call("tools") == []
                assert await client.call("status") == []  # the reset one, answered on the new connection
                assert await client.call("tools") == []
            assert peer.requests == ["tools", "status", "status", "tools"]
            assert peer.connections == 2
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_call_whose_reply_had_begun_is_not_sent_again() -> None:
    directory = socket_dir()
    try:
        async with Resetting(directory / "control.sock", reset={2}, partial=True).running() as peer:
            async with ControlClient(peer.path) as client:
                assert await client.call("tools") == []
                with pytest.raises(ControlUnavailable, match=r"Connection reset|closed the connection"):
                    await client.call("status")  # it may have run: a second run is not the client's to risk
            assert peer.requests == ["tools", "status"]
            assert peer.connections == 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_call_reset_on_a_new_connection_is_not_sent_again() -> None:
    directory = socket_dir()
    try:
        async with Resetting(directory / "control.sock", reset={1}).running() as peer:
            async with ControlClient(peer.path) as client:
                with pytest.raises(ControlUnavailable, match="the gateway is not answering"):
                    await client.call("tools")  # nothing kept went stale: the gateway itself failed it
            assert peer.requests == ["tools"]
            assert peer.connections == 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)
