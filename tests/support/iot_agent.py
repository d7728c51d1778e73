"""The real FIWARE IoT Agents (JSON, UltraLight 2.0) as test peers: a Node process per agent, provisioned over its north API.

`make iotagents` (a prerequisite of `make test`) unpacks the agents' sources from the shared vendor
folder into `.venv/iotagents/<name>-<commit>/` and installs them with npm. An `IotAgent` runs one of
them with the memory device registry, a free north port, the test's mosquitto as its broker and the
Orion double as its context broker, and provisions config groups and devices as a platform team
would (`POST /iot/services`, `POST /iot/devices`). The registry lives in the process, so `restart()`
replays the provisioning, as a platform's MongoDB would keep it.

The agents connect with a clean session and a new client id at every start, so a message published
before `start()` returns (the agent has subscribed) or while it is stopped is lost: that is what the
tests about restarts rely on.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest

from tests.support.mosquitto import MosquittoBroker
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
AGENTS_DIR = Path(os.environ.get("EDGEGW_IOTAGENTS_DIR", REPO / ".venv" / "iotagents"))
SERVICE = "edgegw"
SERVICE_PATH = "/river"
HEADERS = {"fiware-service": SERVICE, "fiware-servicepath": SERVICE_PATH}


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentKind:
    """What differs between the two agents."""

    package: str  # the npm package name, the start of the installed folder's name
    resource: str  # the config group resource the agent matches its southbound messages against
    default_key: str


JSON = AgentKind(package="iotagent-json", resource="/iot/json", default_key="1234")
UL = AgentKind(package="iotagent-ul", resource="/iot/d", default_key="TEF")


def agent_home(kind: AgentKind) -> Path:
    """The installed agent's folder; fails (never skips) the test when `make iotagents` has not run."""
    found = sorted(AGENTS_DIR.glob(f"{kind.package}-*/.installed"))
    if not found:
        pytest.fail(
            f"the FIWARE {kind.package} is not installed in {AGENTS_DIR}; run `make test` (make iotagents) first"
        )
    return found[-1].parent


def _config_js(
    kind: AgentKind, *, broker: MosquittoBroker, orion_url: str, north_port: int, http_port: int, log_level: str
) -> str:
    config = {
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "qos": 0,
            "retain": False,
            "retries": 1000,
            "retryTime": 1,
            "keepalive": 60,
            "avoidLeadingSlash": False,
            "disabled": False,
        },
        "amqp": {"disabled": True},
        "http": {"port": http_port, "host": "127.0.0.1"},
        "iota": {
            "logLevel": log_level,
            "timestamp": True,
            "contextBroker": {"url": orion_url, "ngsiVersion": "v2"},
            "server": {"port": north_port, "host": "127.0.0.1"},
            "deviceRegistry": {"type": "memory"},
            "types": {},
            "service": SERVICE,
            "subservice": SERVICE_PATH,
            "providerUrl": f"http://127.0.0.1:{north_port}",
            "deviceRegistrationDuration": "P20Y",
            "defaultType": "Thing",
            "defaultResource": kind.resource,
            "explicitAttrs": False,
        },
        "jexlTransformations": {},
        "configRetrieval": False,
        "defaultKey": kind.default_key,
        "defaultTransport": "MQTT",
    }
    return "module.exports = " + json.dumps(config, indent=2) + ";\n"


class IotAgent:
    """One real IoT Agent process; see the module docstring. Use `async with IotAgent(...) as agent:`."""

    def __init__(
        self, kind: AgentKind, workdir: Path, *, broker: MosquittoBroker, orion_url: str, log_level: str = "INFO"
    ) -> None:
        self.kind = kind
        self.home = agent_home(kind)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.orion_url = orion_url
        self.log_level = log_level
        self.north_port = free_port()
        self.north_url = f"http://127.0.0.1:{self.north_port}"
        self.log_file = workdir / "agent.log"
        self._http_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._provisioning: list[tuple[str, dict[str, Any]]] = []  # replayed after a restart
        self._log_mark = 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- process --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self, timeout: float = 30.0) -> None:
        """Start the agent and return once its north API answers, it has subscribed, and it is provisioned."""
        assert self._proc is None, "agent already running"
        config = self.workdir / "config.js"
        config.write_text(
            _config_js(
                self.kind,
                broker=self.broker,
                orion_url=self.orion_url,
                north_port=self.north_port,
                http_port=self._http_port,
                log_level=self.log_level,
            )
        )
        self._log_mark = self.log_file.stat().st_size if self.log_file.exists() else 0
        # bin/iotagent-* require('../' + argv[2]): the config path is relative to the agent's folder
        relative = os.path.relpath(config, self.home)  # noqa: ASYNC240 - both paths are absolute: string arithmetic, no disk access
        with self.log_file.open("ab") as log:
            self._proc = await asyncio.to_thread(
                subprocess.Popen,
                ["node", f"bin/{self.kind.package}", relative],
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        await self._wait(deadline, self._north_answers, "its north API to answer")
        await self._wait(deadline, self._subscribed, "it to subscribe to the broker")
        for path, body in self._provisioning:
            await self._provision(path, body)

    async def stop(self) -> None:
        """Stop the agent as a container stop does (SIGTERM, then SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def log(self, since_start: bool = True) -> str:
        """The agent's log (since the last start by default)."""
        if not self.log_file.exists():
            return ""
        data = self.log_file.read_bytes()
        return data[self._log_mark if since_start else 0 :].decode("utf-8", "replace")

    async def _wait(self, deadline: float, ready: Callable[[], Awaitable[bool]], what: str) -> None:
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise RuntimeError(
                    f"{self.kind.package} exited ({code}) while waiting for {what}:\n{self.log()[-3000:]}"
                )
            if await ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind.package} did not get to {what} in time:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.05)

    async def _north_answers(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{self.north_url}/iot/about", timeout=aiohttp.ClientTimeout(total=1)) as resp,
            ):
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _subscribed(self) -> bool:
        return "Successfully subscribed" in self.log()

    # ---- north API ------------------------------------------------------------------------------

    async def north(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """One request to the agent's north API; (status, parsed JSON body or None)."""
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method,
                f"{self.north_url}{path}",
                json=body,
                headers=headers if headers is not None else HEADERS,
                timeout=aiohttp.ClientTimeout(total=15),
            ) as resp,
        ):
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def _provision(self, path: str, body: dict[str, Any]) -> None:
        status, answer = await self.north("POST", path, body)
        if status != 201:
            raise RuntimeError(f"{self.kind.package}: POST {path} answered {status} {answer}")

    async def provision_group(
        self,
        apikey: str,
        *,
        entity_type: str,
        attributes: Sequence[dict[str, Any]] = (),
        static_attributes: Sequence[dict[str, Any]] = (),
        **extra: Any,
    ) -> None:
        """A config group for `apikey` (required even for devices provisioned one by one), `timestamp: true`."""
        group = {
            "apikey": apikey,
            "cbroker": self.orion_url,
            "entity_type": entity_type,
            "resource": self.kind.resource,
            "timestamp": True,
            "transport": "MQTT",
            "attributes": list(attributes),
            "static_attributes": list(static_attributes),
            **extra,
        }
        body = {"services": [group]}
        await self._provision("/iot/services", body)
        self._provisioning.append(("/iot/services", body))

    async def provision_device(
        self,
        device_id: str,
        *,
        apikey: str,
        entity_name: str,
        entity_type: str,
        attributes: Sequence[dict[str, Any]] = (),
        commands: Sequence[dict[str, Any]] = (),
        **extra: Any,
    ) -> None:
        """One device with its Orion entity named `entity_name`, as a platform provisions a known sensor."""
        device = {
            "device_id": device_id,
            "apikey": apikey,
            "entity_name": entity_name,
            "entity_type": entity_type,
            "transport": "MQTT",
            "timestamp": True,
            "attributes": list(attributes),
            "commands": list(commands),
            **extra,
        }
        body = {"devices": [device]}
        await self._provision("/iot/devices", body)
        self._provisioning.append(("/iot/devices", body))

    async def send_command(self, entity_id: str, entity_type: str, command: str, value: Any) -> tuple[int, Any]:
        """What Orion does for a command attribute registered to the agent: `POST /v2/op/update` to the agent."""
        body = {
            "actionType": "update",
            "entities": [{"id": entity_id, "type": entity_type, command: {"type": "command", "value": value}}],
        }
        return await self.north("POST", "/v2/op/update", body)


StartAgent = Callable[..., Awaitable[IotAgent]]


@pytest.fixture
async def start_iot_agent(tmp_path: Path) -> AsyncIterator[StartAgent]:
    """`await start_iot_agent(JSON or UL, broker=..., orion_url=...)`: a started agent, stopped after the test."""
    agents: list[IotAgent] = []

    async def start(kind: AgentKind, *, broker: MosquittoBroker, orion_url: str, **kwargs: Any) -> IotAgent:
        agent = IotAgent(kind, tmp_path / f"{kind.package}-{len(agents)}", broker=broker, orion_url=orion_url, **kwargs)
        agents.append(agent)
        await agent.start()
        return agent

    yield start
    for agent in agents:
        await agent.stop()
