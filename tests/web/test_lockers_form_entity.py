"""/lockers/action and /lockers/assign act on a compartment the page lists, and record that compartment's own label.

Both handlers sent the command to the form's `entity_id` and wrote the form's `label` into the flash and the
audit log without checking either: unlocking A-02 with the label A-03 said "A-03 opened" and audited A-03
(the gateway does not audit commands from its control socket, so the web's entry is the only record), and a
`reset` went to a river gauge's entity. The entity id is now resolved against the locker adapters' grids (the
page's own); its label and site are what the flash and the audit log name (the entity id in the detail), the
form's label is ignored, and anything else is refused with a 400 and nothing sent.
"""

from __future__ import annotations

import html
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.accounts.store import Role
from gateway.audit.log import AuditLog
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_gateway_flow import _locker_registered as _locker_registered
from tests.adapters.locker.test_gateway_flow import gateway_text
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import OrionDouble
from tests.web.conftest import WebEnv, csrf_token, login
from tests.web.pages_harness import GatewayWeb, gateway_web, until

Client = TestClient[web.Request, web.Application]
ENTITY = "urn:ngsi-ld:LockerCompartment:gw-lib-lockers-{label}"
RIVER = "urn:ngsi-ld:WaterObserved:rev3-0"
RIVER_ADAPTER = """
[[adapters]]
name = "river"
type = "simulated"
entities = 1
rate = 20
id_prefix = "urn:ngsi-ld:WaterObserved:rev3-"

[[uplinks]]"""


def recorded(audit: AuditLog, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e.actor, e.target, dict(e.detail)) for e in reversed(audit.entries(action=action))]


async def post(librarian: Client, path: str, **fields: str) -> tuple[int, str]:
    """The form sent with a fresh token; the answer's status and the page the librarian then sees."""
    data = {"csrf_token": await csrf_token(librarian, "/lockers"), **fields}
    response = await librarian.post(path, data=data, allow_redirects=False)
    if response.status == 302:
        return 302, await (await librarian.get("/lockers")).text()
    return response.status, await response.text()


@dataclass
class Lockers:
    env: GatewayWeb
    sim: BoardSim
    librarian: Client
    audit: AuditLog


@asynccontextmanager
async def lockers_and_a_river_gauge(orion_url: str, tmp_path: Path, *, extra: str = "") -> AsyncIterator[Lockers]:
    """A gateway with a locker adapter (a board on a socat pty, mail to SMTP on loopback) and a river gauge;
    `extra`: TOML appended to its configuration."""
    sim = BoardSim([SimBoard("cu16", 0)])
    smtp = await SmtpServer().start()
    try:
        with pty_pair(tmp_path) as (gw_port, board_port):
            async with serve_pty(sim, board_port):
                text = gateway_text(tmp_path / "data", orion_url, gw_port, smtp.port)
                text = text.replace("\n[[uplinks]]", RIVER_ADAPTER, 1) + extra
                async with gateway_web(tmp_path, orion_url, text=text) as env:
                    router = env.runtime.gateway.router
                    await until(lambda: router.owner(ENTITY.format(label="A-03")) is not None, "the compartments")
                    await until(lambda: router.owner(RIVER) == "river", "the river gauge")
                    await until(lambda: sim.requests > 3, "a few polls")
                    librarian = await env.browser("hanako", Role.LIBRARIAN)
                    yield Lockers(env=env, sim=sim, librarian=librarian, audit=env.services.audit)
    finally:
        await smtp.stop()


async def test_the_compartment_acted_on_is_the_one_recorded(orion_double: OrionDouble, tmp_path: Path) -> None:
    async with lockers_and_a_river_gauge(orion_double.url, tmp_path) as rig:
        sim, librarian, audit = rig.sim, rig.librarian, rig.audit
        # A-02's door, the form's label saying A-03: A-02 is opened, and A-02 is what is said and kept
        a02 = ENTITY.format(label="A-02")
        status, page = await post(librarian, "/lockers/action", action="unlock", entity_id=a02, label="A-03")
        assert status == 302
        assert "lockers のロッカー A-02 の扉を開けました。" in page
        assert "A-03 の扉" not in page
        assert sim.boards[0].unlocks == [2]
        sim.boards[0].locked[1] = True  # closed again
        assert recorded(audit, "locker.unlock") == [
            ("hanako", "A-02", {"ok": True, "result": "opened: compartment A-02", "entity_id": a02, "site": "lockers"})
        ]

        # assigning A-01 with the label A-04: the patron's mail and the record both name A-01
        a01 = ENTITY.format(label="A-01")
        status, page = await post(
            librarian,
            "/lockers/assign",
            entity_id=a01,
            label="A-04",
            email="patron@example.jp",
            reference="R-7",
        )
        assert status == 302
        assert "lockers のロッカー A-01 を割り当て" in page and "A-04" not in page
        ((actor, target, detail),) = recorded(audit, "locker.assign")
        assert (actor, target, detail["entity_id"], detail["reference"], detail["site"]) == (
            "hanako",
            "A-01",
            a01,
            "R-7",
            "lockers",
        )


async def test_an_entity_that_is_no_compartment_is_refused_and_nothing_is_sent(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with lockers_and_a_river_gauge(orion_double.url, tmp_path) as rig:
        sim, librarian, audit = rig.sim, rig.librarian, rig.audit
        # not a compartment: refused before anything is sent, nothing recorded
        refusals = [
            ("/lockers/action", {"action": "reset", "entity_id": RIVER, "label": "A-01"}),
            ("/lockers/action", {"action": "unlock", "entity_id": ENTITY.format(label="Z-09")}),
            ("/lockers/assign", {"entity_id": RIVER, "label": "A-03", "email": "p@example.jp"}),
        ]
        for path, fields in refusals:
            fields.setdefault("reference", "R-8")
            token = await csrf_token(librarian, "/lockers")
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="gateway.commands"):
                response = await librarian.post(path, data={"csrf_token": token, **fields}, allow_redirects=False)
                page = await response.text()
            assert response.status == 400, (path, fields)
            assert (
                '<p class="flash flash-error" role="status">'
                f"操作の対象（{fields['entity_id']}）は、このゲートウェイのロッカーではありません。"
                "何も操作していません。ページを読み込み直してから、もう一度操作してください。</p>"
            ) in page, page
            # the page shown with the refusal asks for its grid; no other command reaches the gateway
            received = [r.getMessage() for r in caplog.records if r.name == "gateway.commands"]
            assert [m for m in received if not m.startswith("command grid ")] == [], (path, fields)
        assert [e.action for e in audit.entries(limit=1000) if e.action.startswith("locker.")] == []
        assert sim.boards[0].unlocks == []

        english = await librarian.post(
            "/lockers/action",
            data={
                "csrf_token": await csrf_token(librarian, "/lockers"),
                "action": "reset",
                "entity_id": RIVER,
            },
            headers={"Accept-Language": "en"},
            allow_redirects=False,
        )
        assert english.status == 400
        assert (
            f"The target of the action ({RIVER}) is not a compartment of this gateway's lockers. "
            "Nothing was done; reload the page and try again."
        ) in html.unescape(await english.text())


async def test_without_the_gateway_nothing_is_sent_nor_recorded(web_env: WebEnv) -> None:
    """Which compartments there are is not known: the action is refused as the gateway's, not as the form's."""
    web_env.add_user("hanako", Role.LIBRARIAN)
    assert (await login(web_env.client, "hanako")).status == 302
    fields = {"action": "unlock", "entity_id": ENTITY.format(label="A-01"), "label": "A-01"}
    response = await web_env.client.post(
        "/lockers/action",
        data={"csrf_token": await csrf_token(web_env.client, "/lockers"), **fields},
        allow_redirects=False,
    )
    assert response.status == 503
    assert (
        '<p class="flash flash-error" role="status">ゲートウェイに接続できません。'
        "ゲートウェイ（edgegw）が動いているか確認してください。</p>"
    ) in await response.text()
    assert web_env.entries("locker.unlock") == []
