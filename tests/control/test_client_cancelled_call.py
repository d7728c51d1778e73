"""A call cancelled while its reply is on the way (a page whose browser closed, a CLI's Ctrl-C in a script, the
kiosk's stop) leaves no reply for the next call on the same client: the next call gets its own answer.

Before, the next call read the cancelled one's late reply and failed as `malformed` ("for request 1, got it for
2"), and the client dropped the connection only then. The peer here is a real Unix socket server that answers
the requests of a connection in turn, as the gateway's does, the first one late (a command waiting for its
device).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from gateway.control.client import ControlClient
from gateway.control.protocol import decode_request, encode_result
from tests.control.running import socket_dir

SLOW_OP_S = 0.5


async def test_the_call_after_a_cancelled_one_gets_its_own_reply() -> None:
    directory = socket_dir()
    path = directory / "control.sock"
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while line := await reader.readline():
                request = decode_request(line)
                if request.op == "command":
                    await asyncio.sleep(SLOW_OP_S)  # the device takes its time; the caller gives up meanwhile
                writer.write(encode_result(request.id, {"op": request.op}))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(serve, path=str(path))
    client = ControlClient(Path(path), timeout_s=5.0)
    try:
        slow = asyncio.create_task(client.call("command", entity_id="urn:x", name="unlock"))
        await asyncio.sleep(0.1)  # sent, waiting for its reply
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        assert await client.call("status") == {"op": "status"}
        await asyncio.sleep(SLOW_OP_S)  # the cancelled call's reply has come by now, on its own connection
        assert await client.call("status") == {"op": "status"}
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
        shutil.rmtree(directory, ignore_errors=True)
    assert connections == 2  # the cancelled call's connection was not used again
