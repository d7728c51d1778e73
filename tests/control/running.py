"""A real gateway (simulated adapter → buffer → the Orion double) with its control socket, in-process."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.app import Runtime
from gateway.config import load_config
from gateway.control.client import ControlClient
from gateway.control.server import ControlServer
from gateway.control.tools import Tool


def config_text(
    data_dir: Path, orion_url: str, *, prefix: str = "urn:ngsi-ld:WaterObserved:a-", rate: float = 20.0
) -> str:
    return f"""[gateway]
id = "gw-control"
data_dir = "{data_dir}"

[[adapters]]
name = "gauges"
type = "simulated"
entities = 3
rate = {rate}
id_prefix = "{prefix}"

[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_url}"
"""


def socket_dir() -> Path:
    # pytest's tmp_path can exceed the 108-byte limit of a Unix socket path
    return Path(tempfile.mkdtemp(dir="/tmp", prefix="egw"))


@dataclass
class Running:
    runtime: Runtime
    server: ControlServer
    client: ControlClient
    config_path: Path
    socket: Path


@asynccontextmanager
async def running_gateway(
    tmp_path: Path, orion_url: str, *, rate: float = 20.0, tools: list[Tool] | None = None, text: str | None = None
) -> AsyncIterator[Running]:
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(text or config_text(tmp_path / "data", orion_url, rate=rate))
    config_path.chmod(0o640)
    sockets = socket_dir()
    path = sockets / "control.sock"
    runtime = Runtime(config_path, load_config(config_path))
    server = ControlServer(path, runtime, tools=tools or [])
    await server.start()
    await runtime.start()
    client = ControlClient(path, timeout_s=10.0)
    try:
        yield Running(runtime=runtime, server=server, client=client, config_path=config_path, socket=path)
    finally:
        await client.close()
        await server.stop()
        await runtime.stop()
        shutil.rmtree(sockets, ignore_errors=True)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def eventually(
    call: Callable[[], Awaitable[Any]], predicate: Callable[[Any], bool], what: str, timeout: float = 10.0
) -> Any:
    """`await call()` until its result satisfies `predicate`; that result."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await call()
        if predicate(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}, last got {result!r}")
        await asyncio.sleep(0.02)
