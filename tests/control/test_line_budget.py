"""One byte budget for the request lines of all connections together: clients cannot make the gateway
allocate past its unit's MemoryMax (64 connections each part-way through a 6 MiB line did)."""

from __future__ import annotations

import asyncio
import logging
import re
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
from gateway.control.protocol import ControlError
from gateway.control.server import ControlServer
from tests.control.running import config_text, socket_dir, until
from tests.control.test_limits import clients

pytestmark = pytest.mark.both_loops  # transports: uvloop is what `edgegw run` runs on

MAX_LINE = 600
BUDGET = 1000


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[ControlServer]:
    """A real ControlServer with a small line limit and budget; no gateway started (`tools` needs none)."""
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path / "data", "http://127.0.0.1:9", rate=1.0))
    directory = socket_dir()
    server = ControlServer(
        directory / "control.sock",
        Runtime(config, load_config(config)),
        tools=[],
        max_line=MAX_LINE,
        line_budget=BUDGET,
    )
    try:
        async with server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def request(size: int, op: str = "tools", request_id: int = 1) -> bytes:
    """A request line of exactly `size` bytes without its newline (padded in an argument the op ignores)."""
    bare = orjson.dumps({"id": request_id, "op": op, "args": {"pad": ""}})
    assert len(bare) <= size
    return orjson.dumps({"id": request_id, "op": op, "args": {"pad": "x" * (size - len(bare))}})


async def reply(reader: asyncio.StreamReader) -> Any:
    return orjson.loads(await asyncio.wait_for(reader.readline(), 5))


async def closed(reader: asyncio.StreamReader) -> bytes:
    data = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(64 * 1024):
                data += chunk
    except TimeoutError:
        raise AssertionError("the server kept the connection open") from None
    except ConnectionError:
        pass
    return data


def busy(held: int) -> dict[str, Any]:
    return {
        "id": None,
        "ok": False,
        "error": {
            "code": "busy",
            "message": f"control socket: at most {BUDGET} bytes of requests held for all clients at once, got "
            f"{held}; try again in a moment (a request is held from its first byte until it is answered)",
            "errors": [],
        },
    }


async def held(server: ControlServer, expected: int) -> None:
    await until(lambda: server.line_bytes == expected, f"{expected} bytes held, got {server.line_bytes}", timeout=5)


async def test_a_client_past_the_budget_is_refused_busy_and_the_others_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.control.server")
    async with serving(tmp_path) as server, clients(server) as c:
        a_line, b_line = request(500, request_id=1), request(400, request_id=2)
        a_reader, a_writer = await c.sending(a_line[:-1])  # part-way: everything but its last byte
        await held(server, 499)
        b_reader, b_writer = await c.sending(b_line[:-1])
        await held(server, 499 + 399)
        c_line = request(300)
        c_reader, c_writer = await c.sending(c_line[:200])
        assert await reply(c_reader) == busy(499 + 399 + 200)
        await held(server, 499 + 399)  # what the refused one sent is let go at once
        c_writer.write(c_line[200:] + b"\n")  # the rest is read and dropped, so the client's write completes
        assert await closed(c_reader) == b""
        assert server.counters()["refused_busy"] == 1
        a_writer.write(a_line[-1:] + b"\n")
        assert (await reply(a_reader))["ok"] is True
        await held(server, 399)  # answered: its bytes are free again
        d_line = request(500, request_id=4)
        d_reader, _ = await c.sending(d_line + b"\n")
        assert (await reply(d_reader))["ok"] is True
        b_writer.write(b_line[-1:] + b"\n")
        assert (await reply(b_reader))["ok"] is True
        await held(server, 0)
        assert server.counters()["requests"] == 3
    spell = [(r.levelno, r.getMessage()) for r in caplog.records if "request" in r.getMessage()]
    assert spell == [
        (
            logging.WARNING,
            f"control socket {server.path}: requests being received or answered hold {BUDGET} bytes at most, "
            f"got {499 + 399 + 200}; refusing connections that would need more (many large requests at once: "
            "a client sending config texts in a loop?)",
        ),
        (
            logging.INFO,
            f"control socket {server.path}: room for the largest request again, 1 connection(s) refused meanwhile",
        ),
    ]


async def test_a_request_is_held_until_its_op_answers(tmp_path: Path) -> None:
    async with serving(tmp_path) as server, clients(server) as c:
        answer, started = asyncio.Event(), asyncio.Event()

        async def slow(args: dict[str, Any]) -> str:  # as config.apply waiting for its reload
            started.set()
            await answer.wait()
            return "done"

        server.ops["slow"] = slow
        a_reader, _ = await c.sending(request(600, op="slow") + b"\n")
        await asyncio.wait_for(started.wait(), 5)
        await held(server, 600)  # its decoded arguments are alive while the op runs
        b_reader, _ = await c.sending(request(500)[:401] + b"\n")
        assert orjson.loads(await closed(b_reader)) == busy(600 + 401)
        answer.set()
        assert await reply(a_reader) == {"id": 1, "ok": True, "result": "done"}
        await held(server, 0)


async def test_a_line_too_long_holds_nothing_while_it_is_skipped(tmp_path: Path) -> None:
    async with serving(tmp_path) as server, clients(server) as c:
        long_reader, long_writer = await c.sending(b"x" * MAX_LINE)
        await held(server, MAX_LINE)
        long_writer.write(b"x")  # one past the limit: the framer lets go of the line and skips to its end
        await held(server, 0)
        other_reader, _ = await c.sending(request(MAX_LINE) + b"\n")  # with the long one held, past the budget
        assert (await reply(other_reader))["ok"] is True
        long_writer.write(b"x" * 1000 + b"\n")
        assert (await reply(long_reader))["error"]["code"] == "too_large"
        await held(server, 0)


async def test_a_client_refused_part_way_through_a_large_request_reads_busy(tmp_path: Path) -> None:
    # larger than the socket's buffers: the refusal comes while the client is still writing
    size = 1024 * 1024
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path / "data", "http://127.0.0.1:9", rate=1.0))
    directory = socket_dir()
    runtime = Runtime(config, load_config(config))
    server = ControlServer(directory / "control.sock", runtime, tools=[], max_line=size, line_budget=size)
    try:
        async with server, clients(server) as c:
            await c.sending(b"x" * (size // 2))
            await held(server, size // 2)
            client = ControlClient(server.path, timeout_s=5.0)
            with pytest.raises(ControlError) as refused:
                await client.call("tools", pad="x" * (size * 3 // 4))
            await client.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert refused.value.code == "busy"  # not `unavailable` from the broken pipe
    assert refused.value.message.startswith(f"control socket: at most {size} bytes of requests held for all clients")


def test_a_budget_below_one_line_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path / "data", "http://127.0.0.1:9", rate=1.0))
    refusal = (
        f"control socket: line_budget must hold one largest request line, got {MAX_LINE - 1} below max_line {MAX_LINE}"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(refusal)}$"):
        ControlServer(
            tmp_path / "control.sock",
            Runtime(config, load_config(config)),
            tools=[],
            max_line=MAX_LINE,
            line_budget=MAX_LINE - 1,
        )
