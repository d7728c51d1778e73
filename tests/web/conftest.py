"""The web UI on aiohttp's test server (loopback), with real stores in tmp_path and an injected clock."""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from gateway.accounts.store import AccountStore, Role
from gateway.audit.log import AuditEntry, AuditLog
from gateway.buffer.reader import BufferReader
from gateway.web.app import build_app
from gateway.web.config import WebConfig
from gateway.web.control_pool import ControlPool
from gateway.web.services import WebServices

START = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()  # 09:00:00 JST, a "now" tests move forward
PASSWORD = "correct horse battery staple 42"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def cheap_hasher() -> PasswordHasher:
    # Argon2id still, with costs a test suite can afford; the production profile is the store's default.
    return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@dataclass
class WebEnv:
    """One UI process: its services, the test client (a browser with a cookie jar) and helpers."""

    services: WebServices
    clock: Clock
    client: TestClient[web.Request, web.Application]
    app: web.Application
    server: TestServer
    state_dir: Path
    extra_clients: list[TestClient[web.Request, web.Application]] = field(default_factory=list)

    @property
    def accounts(self) -> AccountStore:
        return self.services.accounts

    @property
    def audit(self) -> AuditLog:
        return self.services.audit

    def add_user(self, name: str, role: Role, *, password: str = PASSWORD, must_change: bool = False) -> None:
        self.accounts.add_user(name, role, password, now=self.clock(), must_change=must_change)

    async def browser(self) -> TestClient[web.Request, web.Application]:
        """A second browser (its own cookies) on the same server."""
        client = await new_client(self.server)
        self.extra_clients.append(client)
        return client

    def actions(self) -> list[str]:
        return [e.action for e in reversed(self.audit.entries(limit=1000))]

    def entries(self, action: str) -> list[AuditEntry]:
        return self.audit.entries(limit=1000, action=action)


async def csrf_token(client: TestClient[web.Request, web.Application], path: str = "/login") -> str:
    response = await client.get(path)
    match = CSRF_RE.search(await response.text())
    assert match, f"no csrf_token in {path}"
    return match.group(1)


async def post_form(
    client: TestClient[web.Request, web.Application], path: str, data: dict[str, Any], *, token_from: str = "/login"
) -> Any:
    """A form POST as a browser sends it: with the page's CSRF token, not following the redirect."""
    form = {"csrf_token": await csrf_token(client, token_from), **data}
    return await client.post(path, data=form, allow_redirects=False)


async def login(
    client: TestClient[web.Request, web.Application], name: str, password: str = PASSWORD, **extra: str
) -> Any:
    return await post_form(client, "/login", {"name": name, "password": password, **extra})


async def new_client(server: TestServer) -> TestClient[web.Request, web.Application]:
    if server.runner is None:
        await server.start_server()
    # The session cookie is Secure: the test's plain-HTTP loopback origin is declared a secure one.
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client: TestClient[web.Request, web.Application] = TestClient(server, cookie_jar=jar)
    await client.start_server()
    return client


def make_services(state_dir: Path, clock: Clock, config: WebConfig | None = None) -> WebServices:
    config = config or WebConfig()
    sock_dir = Path(tempfile.mkdtemp(dir="/tmp", prefix="egw"))
    return WebServices(
        config=config,
        gateway_config_path=state_dir / "edgegw.toml",
        control=ControlPool(sock_dir / "control.sock", timeout_s=1.0),
        buffer=BufferReader(state_dir / "buffer.db"),
        accounts=AccountStore(state_dir / "web", config, hasher=cheap_hasher()),
        audit=AuditLog(state_dir / "web"),
        clock=clock,
    )


@pytest.fixture
def web_config() -> WebConfig:
    return WebConfig()


@pytest.fixture
async def web_env(tmp_path: Path, web_config: WebConfig) -> AsyncIterator[WebEnv]:
    clock = Clock()
    services = make_services(tmp_path, clock, web_config)
    app = build_app(services, strict_i18n=True)
    server = TestServer(app)
    client = await new_client(server)
    env = WebEnv(services=services, clock=clock, client=client, app=app, server=server, state_dir=tmp_path / "web")
    try:
        yield env
    finally:
        for extra in env.extra_clients:
            await extra.close()
        await client.close()
        await services.control.close()
        await services.buffer.close()
