"""A slow op on the control socket never holds the other pages: the dashboard answers while a command waits.

The web UI talked to the gateway over one shared connection whose calls took turns. A `command` waits for
its device up to the router's 10 s (a locker board that took an unlock and went quiet), and every page and
poll of every open browser waited behind it: a librarian's dashboard stood still for those 10 s. Here the
web runs as `edgegw web` builds it (gateway.web.cli.serve, over TLS), in front of a real gateway (Runtime and
ControlServer on a Unix socket) whose test adapter holds a command until the test lets it go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest

from gateway.accounts.store import AccountStore, Role
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.app import Runtime
from gateway.config import load_config
from gateway.control.protocol import ControlError, ControlUnavailable
from gateway.control.server import ControlServer
from gateway.records import Attribute, Command, CommandResult, Emit, Reading, Source, utc_now
from gateway.web.certs import CERT_FILE
from gateway.web.cli import serve
from gateway.web.control_pool import ControlPool
from tests.control.running import running_gateway
from tests.support.entry_points import add_test_family
from tests.support.orion_double import OrionDouble
from tests.web.conftest import PASSWORD, cheap_hasher
from tests.web.test_cli import free_port

RELAY_ID = "urn:ngsi-ld:Relay:held-{n}"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
# well under the 10 s a held command lasts, well over what a status call takes on a loaded test box
DASHBOARD_WAIT_S = 3.0


class HeldRelayConfig(AdapterConfig):
    relays: int = 1


class HeldRelay:
    """Reports `relays` relays as locker compartments (so that /lockers sends them its commands) and holds every
    command until `release` is set (a device slow to act)."""

    config_model: ClassVar[type[AdapterConfig]] = HeldRelayConfig
    handled: ClassVar[list[Command]] = []
    release: ClassVar[asyncio.Event]

    def __init__(self, config: HeldRelayConfig, context: AdapterContext) -> None:
        self.name = config.name
        self.relays = config.relays

    async def run(self, emit: Emit) -> None:
        for n in range(self.relays):
            await emit(
                Reading(
                    entity_id=RELAY_ID.format(n=n),
                    entity_type="LockerCompartment",
                    observed_at=utc_now(),
                    attributes={
                        "state": Attribute(value=False),
                        "compartmentLabel": Attribute(value=f"A-{n:02d}", type="Text"),
                    },
                    source=Source(adapter=self.name, device=f"r{n}"),
                )
            )
        await asyncio.Event().wait()

    async def handle(self, command: Command) -> CommandResult:
        if command.name == "grid":  # the /lockers page's own question (where it finds the relays), answered at once
            cells = [
                {"label": f"A-{n:02d}", "entity_id": RELAY_ID.format(n=n), "board": "r", "online": True}
                | {"door": "locked", "occupied": None, "pickup": "free", "assignment": None}
                for n in range(self.relays)
            ]
            return CommandResult(command_id=command.command_id, ok=True, info=json.dumps(cells))
        HeldRelay.handled.append(command)
        await HeldRelay.release.wait()
        return CommandResult(command_id=command.command_id, ok=True, info="switched")


@pytest.fixture
def held_relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    add_test_family(monkeypatch, "test-held-relay", HeldRelay)
    HeldRelay.handled = []
    HeldRelay.release = asyncio.Event()
    yield
    HeldRelay.release.set()


@dataclass
class Served:
    url: str
    server: ControlServer
    runtime: Runtime
    trust: ssl.SSLContext
    sessions: list[aiohttp.ClientSession]
    stop: asyncio.Event
    web: asyncio.Task[None]

    async def stop_web(self) -> None:
        """Stops `edgegw web` as SIGTERM does, the gateway left running."""
        for session in self.sessions:
            await session.close()
        self.sessions.clear()
        self.stop.set()
        await self.web

    async def browser(self, name: str) -> aiohttp.ClientSession:
        """A browser logged in as `name` (added before the web started)."""
        # unsafe: the jar keeps the cookies of an IP-address host, as a browser does
        session = aiohttp.ClientSession(self.url, cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sessions.append(session)
        async with session.get("/login", ssl=self.trust) as page:
            token = CSRF_RE.search(await page.text())
        assert token is not None
        form = {"csrf_token": token.group(1), "name": name, "password": PASSWORD}
        async with session.post("/login", data=form, ssl=self.trust, allow_redirects=False) as answer:
            assert answer.status == 302, await answer.text()
        return session

    async def token(self, session: aiohttp.ClientSession, path: str) -> str:
        async with session.get(path, ssl=self.trust) as page:
            found = CSRF_RE.search(await page.text())
        assert found is not None, path
        return found.group(1)


@asynccontextmanager
async def served_web(tmp_path: Path, orion_url: str, *, relays: int = 1) -> AsyncIterator[Served]:
    """The gateway in-process and `edgegw web`'s serve() on a free port, with a librarian and a viewer."""
    sockets = Path(tempfile.mkdtemp(dir="/tmp", prefix="egw"))  # tmp_path is too long for a socket path
    port = free_port()
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(
        f"""[gateway]
id = "gw-held"
data_dir = "{tmp_path / "data"}"
control_socket = "{sockets / "control.sock"}"

[web]
listen = ["127.0.0.1"]
port = {port}

[[adapters]]
name = "relays"
type = "test-held-relay"
relays = {relays}

[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_url}"
"""
    )
    config_path.chmod(0o640)
    cfg = load_config(config_path)
    state_dir = cfg.web.state_path(tmp_path / "data")
    accounts = AccountStore(state_dir, cfg.web, hasher=cheap_hasher())
    accounts.add_user("hanako", Role.LIBRARIAN, PASSWORD, now=0.0)
    accounts.add_user("mika", Role.VIEWER, PASSWORD, now=0.0)
    accounts.add_user("admin1", Role.ADMIN, PASSWORD, now=0.0)  # no setup link printed
    runtime = Runtime(config_path, cfg)
    server = ControlServer(cfg.gateway.control_path(), runtime)
    await server.start()
    await runtime.start()
    stop = asyncio.Event()
    web = asyncio.create_task(serve(cfg, config_path, stop=stop))
    served: Served | None = None
    try:
        cert = state_dir / CERT_FILE
        await until(lambda: cert.exists() and _listening(port), "edgegw web listening")
        served = Served(
            url=f"https://127.0.0.1:{port}",
            server=server,
            runtime=runtime,
            trust=ssl.create_default_context(cafile=str(cert)),
            sessions=[],
            stop=stop,
            web=web,
        )
        yield served
    finally:
        if served is not None:
            await served.stop_web()
        stop.set()
        await web
        await server.stop()
        await runtime.stop()
        shutil.rmtree(sockets, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def unlock(web: Served, librarian: aiohttp.ClientSession, n: int) -> int:
    """A librarian's unlock of relay `n` from /lockers; the answer's status once the command is done."""
    form = {
        "csrf_token": await web.token(librarian, "/lockers"),
        "action": "unlock",
        "entity_id": RELAY_ID.format(n=n),
        "label": f"A-{n:02d}",
    }
    async with librarian.post("/lockers/action", data=form, ssl=web.trust, allow_redirects=False) as answer:
        return answer.status


async def dashboard_wait(web: Served, viewer: aiohttp.ClientSession) -> tuple[float, dict[str, Any] | None]:
    """Seconds the dashboard's refresh took, at most DASHBOARD_WAIT_S, and its document if it came."""

    async def poll() -> dict[str, Any]:
        async with viewer.get("/api/status", ssl=web.trust) as answer:
            doc: dict[str, Any] = await answer.json()
            return doc

    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(poll())
    done, _ = await asyncio.wait({task}, timeout=DASHBOARD_WAIT_S)
    took = loop.time() - started
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return took, None
    return took, task.result()


@pytest.mark.usefixtures("held_relay")
async def test_the_dashboard_answers_while_a_command_waits_for_its_device(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    async with served_web(tmp_path, orion_double.url) as web:
        await until(lambda: web.runtime.gateway.router.owner(RELAY_ID.format(n=0)) == "relays", "the relay")
        librarian = await web.browser("hanako")
        viewer = await web.browser("mika")
        command = asyncio.create_task(unlock(web, librarian, 0))
        try:
            await until(lambda: len(HeldRelay.handled) == 1, "the unlock at the device")
            took, doc = await dashboard_wait(web, viewer)
        finally:
            HeldRelay.release.set()
            answered = await command
        assert doc is not None, f"the dashboard waited {took:.1f} s and more behind a command held at its device"
        assert doc["reachable"] is True
        assert answered == 302  # the command went on and was answered once the device acted


@pytest.mark.usefixtures("held_relay")
async def test_many_held_commands_take_a_bounded_number_of_connections_and_leave_none(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    """Six librarians unlock at once: the web opens at most its few connections, the dashboard still answers,
    every command is answered in the end, and no connection is left open once the web stops."""
    async with served_web(tmp_path, orion_double.url, relays=6) as web:
        await until(lambda: web.runtime.gateway.router.owner(RELAY_ID.format(n=5)) == "relays", "the relays")
        librarians = [await web.browser("hanako") for _ in range(6)]
        viewer = await web.browser("mika")
        before = web.server.counters()["connections"]
        commands = [asyncio.create_task(unlock(web, b, n)) for n, b in enumerate(librarians)]
        try:
            # the pool lets fewer than all six through to the gateway at once; wait for those
            await until(lambda: len(HeldRelay.handled) >= 3, "the first unlocks at the device")
            await asyncio.sleep(0.2)  # any unlock that could still get a connection has got one
            held = len(HeldRelay.handled)
            took, doc = await dashboard_wait(web, viewer)
            # and a burst of page refreshes meanwhile opens nothing past the bound either
            await asyncio.gather(*(dashboard_wait(web, viewer) for _ in range(8)))
            connections = web.server.counters()["connections"]
        finally:
            HeldRelay.release.set()
            answered = [await c for c in commands]
        assert doc is not None, f"the dashboard waited {took:.1f} s and more behind {held} held commands"
        assert held == 3, "three commands at once, one connection left for the pages"
        assert connections <= 4, f"{connections} connections open to the gateway, the web's bound is 4"
        assert before <= 1
        assert answered == [302] * 6
        assert sorted(c.entity_id for c in HeldRelay.handled) == sorted(RELAY_ID.format(n=n) for n in range(6))
        await web.stop_web()
        # serve() closed every connection it opened
        await until(lambda: web.server.counters()["connections"] == 0, "the web's connections closed")


@pytest.mark.usefixtures("held_relay")
async def test_a_page_whose_browser_went_away_leaves_no_late_reply_for_the_next(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    """The librarian closes the tab while the unlock waits: the web stops waiting (aiohttp cancels the page), and
    the gateway's answer to the unlock, when it comes, must not be read as the answer to someone else's call."""
    async with served_web(tmp_path, orion_double.url) as web:
        await until(lambda: web.runtime.gateway.router.owner(RELAY_ID.format(n=0)) == "relays", "the relay")
        librarian = await web.browser("hanako")
        viewer = await web.browser("mika")
        command = asyncio.create_task(unlock(web, librarian, 0))
        try:
            await until(lambda: len(HeldRelay.handled) == 1, "the unlock at the device")
            command.cancel()  # the browser closes its connection
            await asyncio.gather(command, return_exceptions=True)
            await asyncio.sleep(0.2)  # the web notices and cancels the page
            took, first = await dashboard_wait(web, viewer)
        finally:
            HeldRelay.release.set()
        await asyncio.sleep(0.2)  # the device acted: the gateway has answered the unlock
        _, second = await dashboard_wait(web, viewer)
        assert first is not None, f"the dashboard waited {took:.1f} s and more behind an abandoned command"
        assert second is not None, "the dashboard waited for the abandoned command's answer"
        # not "the gateway answered with an error (malformed)": the unlock's reply read as the status's
        assert (first["reachable"], second["reachable"]) == (True, True), second


@pytest.mark.usefixtures("held_relay")
async def test_a_slow_op_that_finds_no_connection_free_is_refused_in_its_time_and_said_once(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two connections, one held by a command: a rollback (slow, 0.5 s here) gets `unavailable` with the bound in
    its words, the pages' status still answers, and the log says the spell once at its start and once at its end."""
    text = f"""[gateway]
id = "gw-held"
data_dir = "{tmp_path / "data"}"

[[adapters]]
name = "relays"
type = "test-held-relay"

[[uplinks]]
name = "orion"
type = "orion"
url = "{orion_double.url}"
"""
    async with running_gateway(tmp_path, orion_double.url, text=text) as gw:
        await until(lambda: gw.runtime.gateway.router.owner(RELAY_ID.format(n=0)) == "relays", "the relay")
        async with ControlPool(gw.socket, size=2, timeout_s=0.5) as pool:
            on = asyncio.create_task(
                pool.call("command", entity_id=RELAY_ID.format(n=0), name="on", value=None, actor="t")
            )
            try:
                await until(lambda: len(HeldRelay.handled) == 1, "the command at the device")
                with caplog.at_level(logging.INFO, logger="gateway.web.control_pool"):
                    for _ in range(2):
                        with pytest.raises(ControlUnavailable) as refused:
                            await pool.call("config.rollback", version=999, actor="t")
                    assert (await pool.call("status"))["gateway"] == "gw-held"
            finally:
                HeldRelay.release.set()
            assert (await on)["ok"] is True
            with (
                caplog.at_level(logging.INFO, logger="gateway.web.control_pool"),
                pytest.raises(ControlError) as answered,
            ):
                await pool.call("config.rollback", version=999, actor="t")
            assert answered.value.code != "unavailable"  # the gateway's own answer this time
    bound = (
        "the web UI opens at most 2 connections, 1 of them for slow ops "
        "(command, config.apply, config.rollback, fleet.probe, reload)"
    )
    assert refused.value.message == (
        f"control socket {gw.socket}: no connection free for config.rollback within 0.5 s; {bound}; "
        "try again in a moment"
    )
    assert caplog.messages == [
        f"web: control socket {gw.socket}: no connection free for config.rollback within 0.5 s, refusing calls "
        f"until one is; {bound}",
        f"web: control socket {gw.socket}: a connection free again, after 2 call(s) refused",
    ]
