"""/lockers actions find their compartment in the locker adapters' grids, ask the gateway once, and name the site.

A review against a running gateway found, in the resolution of a form's entity id that came before:
- the labels were read from the gateway's *processed* latest values, so a valid `[[processing]]` rename of
  `compartmentLabel` refused every action ("not a compartment of this gateway's lockers");
- each action asked for every latest value (`filter=""`: 0.7 s at 20k entities), twice when a refusal showed
  the page again;
- with the gateway hung, the 503 came after three timeouts: the refusal's page asked it again;
- with two sites the flash and the audit log said only `A-01`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gateway.accounts.store import Role
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.control.server import ControlServer
from gateway.records import Attribute, Command, CommandResult, Emit, Reading, Source, utc_now
from gateway.web.control_pool import ControlPool
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_gateway_flow import _locker_registered as _locker_registered
from tests.adapters.locker.test_two_sites_kiosk import gateway_text, site
from tests.support.entry_points import add_test_family
from tests.support.orion_double import OrionDouble
from tests.web.conftest import WebEnv, csrf_token, login
from tests.web.pages_harness import config_text, gateway_web, until
from tests.web.test_lockers_form_entity import ENTITY, RIVER, lockers_and_a_river_gauge, post, recorded

# a valid rule (the gateway starts with it): the platform's data model calls the label `name`
RENAME_LABEL = """
[[processing]]
type = "rename"
match = { entity_type = "LockerCompartment", attribute = "compartmentLabel" }
to = "name"
"""


def record_ops(server: ControlServer) -> list[tuple[str, str]]:
    """Every op the gateway's control socket answers from now on, as (op, its filter or command name); the real
    handlers still answer."""
    calls: list[tuple[str, str]] = []

    def recording(op: str, handler: Callable[[dict[str, Any]], Awaitable[Any]]) -> Any:
        async def handle(args: dict[str, Any]) -> Any:
            calls.append((op, str(args.get("filter", args.get("name", "")))))
            return await handler(args)

        return handle

    for op, handler in list(server.ops.items()):
        server.ops[op] = recording(op, handler)
    return calls


async def test_a_renamed_label_attribute_leaves_the_actions_working(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with lockers_and_a_river_gauge(orion_double.url, tmp_path, extra=RENAME_LABEL) as rig:
        a02 = ENTITY.format(label="A-02")
        latest = rig.env.runtime.gateway.latest
        await until(lambda: any(r.entity_id == a02 for r in latest.values()), "A-02's latest value")
        (a02_latest,) = [r for r in latest.values() if r.entity_id == a02]
        assert "compartmentLabel" not in a02_latest.attributes and a02_latest.attributes["name"].value == "A-02"

        status, page = await post(rig.librarian, "/lockers/action", action="unlock", entity_id=a02)
        assert status == 302, page
        assert "lockers のロッカー A-02 の扉を開けました。" in page
        assert rig.sim.boards[0].unlocks == [2]
        assert recorded(rig.audit, "locker.unlock") == [
            ("hanako", "A-02", {"ok": True, "result": "opened: compartment A-02", "entity_id": a02, "site": "lockers"})
        ]


async def test_an_action_asks_for_the_compartments_once(orion_double: OrionDouble, tmp_path: Path) -> None:
    """One narrow `latest` (the compartments, not every entity), the grid, the command; a refusal's page is drawn
    from that same grid."""
    async with lockers_and_a_river_gauge(orion_double.url, tmp_path) as rig:
        token = await csrf_token(rig.librarian, "/lockers")
        calls = record_ops(rig.env.server)
        fields = {"csrf_token": token, "action": "unlock", "entity_id": ENTITY.format(label="A-01")}
        response = await rig.librarian.post("/lockers/action", data=fields, allow_redirects=False)
        assert response.status == 302
        assert calls == [("latest", "LockerCompartment"), ("command", "grid"), ("command", "unlock")]
        assert rig.sim.boards[0].unlocks == [1]

        token = await csrf_token(rig.librarian, "/lockers")
        calls.clear()
        fields = {"csrf_token": token, "action": "reset", "entity_id": RIVER}
        response = await rig.librarian.post("/lockers/action", data=fields, allow_redirects=False)
        assert response.status == 400
        assert 'id="compartment-A-03"' in await response.text()  # the page, with its grid
        assert calls == [("latest", "LockerCompartment"), ("command", "grid"), ("mail.failures", "")]


@asynccontextmanager
async def hung_gateway(path: Path) -> AsyncIterator[list[bytes]]:
    """A control socket that takes requests and never answers (the gateway stopped with SIGSTOP); the request
    lines it got."""
    lines: list[bytes] = []

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            lines.append(line)
        writer.close()

    server = await asyncio.start_unix_server(take, path)
    try:
        yield lines
    finally:
        server.close()
        await server.wait_closed()


async def test_a_hung_gateway_is_asked_once_and_the_refusal_comes_after_one_timeout(web_env: WebEnv) -> None:
    web_env.add_user("hanako", Role.LIBRARIAN)
    assert (await login(web_env.client, "hanako")).status == 302
    token = await csrf_token(web_env.client, "/lockers")  # while no gateway listens: answered at once
    fields = {"csrf_token": token, "action": "unlock", "entity_id": ENTITY.format(label="A-01")}
    pool = web_env.services.control
    assert isinstance(pool, ControlPool)
    async with hung_gateway(pool.path) as lines:
        response = await web_env.client.post("/lockers/action", data=fields, allow_redirects=False)
        page = await response.text()
    assert response.status == 503
    assert (
        '<p class="flash flash-error" role="status">ゲートウェイに接続できません。'
        "ゲートウェイ（edgegw）が動いているか確認してください。</p>"
    ) in page
    assert len(lines) == 1 and b'"op":"latest"' in lines[0].replace(b" ", b""), lines
    assert 'id="mail-failures"' not in page  # not asked, so not known: no "no mail failed" either
    assert web_env.entries("locker.unlock") == []


NORTH_A01 = "urn:ngsi-ld:LockerCompartment:gw-lib-north-A-01"
SOUTH_A01 = "urn:ngsi-ld:LockerCompartment:gw-lib-south-A-01"


async def test_with_two_sites_the_flash_and_the_record_name_the_site(orion_double: OrionDouble, tmp_path: Path) -> None:
    north, south = BoardSim([SimBoard("cu16", 0)]), BoardSim([SimBoard("cu16", 0)])
    (tmp_path / "n").mkdir()
    (tmp_path / "s").mkdir()
    with pty_pair(tmp_path / "n") as (gn, bn), pty_pair(tmp_path / "s") as (gs, bs):
        async with serve_pty(north, bn), serve_pty(south, bs):
            text = gateway_text(tmp_path / "data", site("north", gn), site("south", gs), uplink=orion_double.url)
            async with gateway_web(tmp_path, orion_double.url, text=text) as env:
                router = env.runtime.gateway.router
                await until(lambda: None not in (router.owner(SOUTH_A01), router.owner(NORTH_A01)), "both sites")
                await until(lambda: north.requests > 3 and south.requests > 3, "polls")
                librarian = await env.browser("hanako", Role.LIBRARIAN)
                audit = env.services.audit

                status, page = await post(librarian, "/lockers/action", action="unlock", entity_id=SOUTH_A01)
                assert status == 302
                assert "south のロッカー A-01 の扉を開けました。" in page
                assert (south.boards[0].unlocks, north.boards[0].unlocks) == ([1], [])
                south.boards[0].locked[0] = True  # closed again
                assert recorded(audit, "locker.unlock") == [
                    (
                        "hanako",
                        "A-01",
                        {"ok": True, "result": "opened: compartment A-01", "entity_id": SOUTH_A01, "site": "south"},
                    )
                ]

                data = {
                    "csrf_token": await csrf_token(librarian, "/lockers"),
                    "action": "unlock",
                    "entity_id": NORTH_A01,
                }
                english = {"Accept-Language": "en"}
                response = await librarian.post("/lockers/action", data=data, headers=english, allow_redirects=False)
                assert response.status == 302
                page = await (await librarian.get("/lockers", headers=english)).text()
                assert "The door of compartment A-01 (north) is open." in page
                assert north.boards[0].unlocks == [1]
                assert [e.detail["site"] for e in audit.entries(action="locker.unlock")] == ["north", "south"]


UNLABELLED = "urn:ngsi-ld:LockerCompartment:gw-web-bare-1"


class Unlabelled:
    """A locker family whose grid has a compartment without a label (a third-party adapter, or a bug)."""

    config_model: ClassVar[type[AdapterConfig]] = AdapterConfig
    handled: ClassVar[list[str]] = []

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        self.name = config.name

    async def run(self, emit: Emit) -> None:
        state = {"doorState": Attribute(value="locked", type="Text")}
        await emit(
            Reading(
                entity_id=UNLABELLED,
                entity_type="LockerCompartment",
                observed_at=utc_now(),
                attributes=state,
                source=Source(adapter=self.name, device="1"),
            )
        )
        await asyncio.Event().wait()

    async def handle(self, command: Command) -> CommandResult:
        if command.name == "grid":
            cell = {"entity_id": UNLABELLED, "label": "", "board": "a", "online": True, "door": "locked"}
            cell |= {"occupied": False, "pickup": "free", "assignment": None}
            return CommandResult(command_id=command.command_id, ok=True, info=json.dumps([cell]))
        Unlabelled.handled.append(command.name)
        return CommandResult(command_id=command.command_id, ok=True, info="opened: compartment ?")


@pytest.fixture
def unlabelled_family(monkeypatch: pytest.MonkeyPatch) -> None:
    add_test_family(monkeypatch, "test-unlabelled", Unlabelled)
    Unlabelled.handled = []


@pytest.mark.usefixtures("unlabelled_family")
async def test_a_compartment_without_a_label_is_refused_and_said_so(orion_double: OrionDouble, tmp_path: Path) -> None:
    text = config_text(tmp_path / "data", orion_double.url).replace(
        "\n[[uplinks]]", '\n[[adapters]]\nname = "bare"\ntype = "test-unlabelled"\n\n[[uplinks]]', 1
    )
    async with gateway_web(tmp_path, orion_double.url, text=text) as env:
        await until(lambda: env.runtime.gateway.router.owner(UNLABELLED) == "bare", "the compartment")
        librarian = await env.browser("hanako", Role.LIBRARIAN)
        data = {"csrf_token": await csrf_token(librarian, "/lockers"), "action": "unlock", "entity_id": UNLABELLED}
        response = await librarian.post("/lockers/action", data=data, allow_redirects=False)
        assert response.status == 400
        assert (
            f"操作の対象（{UNLABELLED}）は bare のロッカーですが、番号（ラベル）がありません。何も操作していません。"
            "locker アダプターの設定を確認するよう管理者に連絡してください。"
        ) in await response.text()
        assert Unlabelled.handled == []
        assert env.services.audit.entries(action="locker.unlock") == []
