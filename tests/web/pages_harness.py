"""The web UI in front of a real gateway: Runtime + ControlServer on a tmp Unix socket, the Orion double, real stores."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.accounts.store import Role
from gateway.app import Runtime
from gateway.buffer.reader import BufferReader
from gateway.config import load_config
from gateway.control.server import ControlServer
from gateway.control.tools import Tool
from gateway.web.app import build_app
from gateway.web.control_pool import ControlPool
from gateway.web.services import SERVICES, WebServices
from tests.web.conftest import PASSWORD, Clock, login, make_services, new_client

Client = TestClient[web.Request, web.Application]


def config_text(data_dir: Path, orion_url: str, *, rate: float = 20.0, gateway_id: str = "gw-web") -> str:
    return f"""# the gateway behind the web UI's page tests
[gateway]
id = "{gateway_id}"
data_dir = "{data_dir}"

[[adapters]]
name = "gauges"
type = "simulated"
entities = 3
rate = {rate}
id_prefix = "urn:ngsi-ld:WaterObserved:w-"

[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_url}"
"""


@dataclass
class GatewayWeb:
    runtime: Runtime
    server: ControlServer
    config_path: Path
    clock: Clock
    app: web.Application
    web_server: TestServer
    clients: list[Client]

    async def browser(self, name: str, role: Role) -> Client:
        """A new browser logged in as a new user `name` with `role`."""
        accounts = self.services.accounts
        if accounts.get_user(name) is None:
            accounts.add_user(name, role, PASSWORD, now=self.clock())
        client = await new_client(self.web_server)
        self.clients.append(client)
        response = await login(client, name)
        assert response.status in (302, 303), await response.text()
        return client

    @property
    def services(self) -> WebServices:
        return self.app[SERVICES]


def socket_dir() -> Path:
    return Path(tempfile.mkdtemp(dir="/tmp", prefix="egw"))  # tmp_path may be too long for a socket path


@asynccontextmanager
async def gateway_web(
    tmp_path: Path, orion_url: str, *, text: str | None = None, tools: list[Tool] | None = None, rate: float = 20.0
) -> AsyncIterator[GatewayWeb]:
    config_path = tmp_path / "gateway.toml"
    data_dir = tmp_path / "data"
    config_path.write_text(text or config_text(data_dir, orion_url, rate=rate))
    config_path.chmod(0o640)
    sockets = socket_dir()
    sock = sockets / "control.sock"
    runtime = Runtime(config_path, load_config(config_path))
    server = ControlServer(sock, runtime, tools=tools or [])
    await server.start()
    await runtime.start()
    clock = Clock()
    base = make_services(tmp_path, clock)
    await base.control.close()
    services = replace(
        base,
        gateway_config_path=config_path,
        control=ControlPool(sock, timeout_s=10.0),
        buffer=BufferReader(data_dir / "buffer.db"),
    )
    app = build_app(services, strict_i18n=True)
    web_server = TestServer(app)
    env = GatewayWeb(
        runtime=runtime, server=server, config_path=config_path, clock=clock, app=app, web_server=web_server, clients=[]
    )
    try:
        yield env
    finally:
        for client in env.clients:
            await client.close()
        await web_server.close()
        await services.control.close()
        await services.buffer.close()
        await server.stop()
        await runtime.stop()
        shutil.rmtree(sockets, ignore_errors=True)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
