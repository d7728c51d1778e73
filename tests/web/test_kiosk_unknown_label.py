"""What a patron types as the compartment is kept and shown only when it is one of the kiosk's compartments.

A patron who swapped the two fields (the code 696159 in the compartment field) had their live code written
into the audit log as the try's target (kept three years, shown on /audit) and echoed on the public screen:
"ロッカー 696159 はありません". As the login page does for a name that is no account, the kiosk now audits
such a try with the target `-` and says only that there is no such compartment; a try it cannot match to a
compartment at all (the gateway not answering) is audited so too.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.accounts.store import Role
from gateway.audit.log import AuditLog
from gateway.control.client import ControlClient
from gateway.web.i18n import Catalogs
from gateway.web.kiosk import build_kiosk_app
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_gateway_flow import _locker_registered as _locker_registered
from tests.adapters.locker.test_gateway_flow import gateway_text, text_after_mail
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web, until

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
A01 = "urn:ngsi-ld:LockerCompartment:gw-lib-lockers-A-01"
CODE = "696159"
NO_SUCH_JA = "その番号のロッカーはありません。番号を確認してください。"
NO_SUCH_EN = "There is no locker with that number. Please check the number."


async def kiosk_try(client: Any, label: str, code: str) -> tuple[int, str]:
    page = await client.get("/")
    match = CSRF_RE.search(await page.text())
    assert match
    response = await client.post("/open", data={"csrf_token": match.group(1), "label": label, "code": code})
    return response.status, await response.text()


def pickups(audit: AuditLog) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e.actor, e.target, dict(e.detail)) for e in reversed(audit.entries(action="locker.pickup"))]


async def test_a_code_typed_as_the_compartment_is_neither_audited_nor_shown(
    orion_double: OrionDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = BoardSim([SimBoard("cu16", 0)])
    with pty_pair(tmp_path) as (gw_port, board_port):
        async with serve_pty(sim, board_port):
            full = gateway_text(tmp_path / "data", orion_double.url, gw_port, 1)
            text = full[: full.index("[mail]")] + text_after_mail(full)
            async with gateway_web(tmp_path, orion_double.url, text=text) as env:
                await until(lambda: env.runtime.gateway.router.owner(A01) is not None, "the compartments")
                audit = env.services.audit
                control = ControlClient(env.server.path, timeout_s=10.0)
                try:
                    app = build_kiosk_app(control, audit=audit, secure_cookie=False)
                    async with TestClient(TestServer(app)) as kiosk:
                        with caplog.at_level(logging.DEBUG):
                            swapped = await kiosk_try(kiosk, CODE, "A-01")
                            known = await kiosk_try(kiosk, "a-01", "000000")  # a compartment, lower case
                finally:
                    await control.close()
                admin = await env.browser("kanri", Role.ADMIN)
                audit_page = await (await admin.get("/audit")).text()

    status, page = swapped
    assert status == 404
    assert NO_SUCH_JA in page
    assert CODE not in page
    assert known[0] == 400 and "ロッカー A-01 には有効な暗証番号がありません。" in known[1]
    assert pickups(audit) == [
        ("kiosk", "-", {"outcome": "unknown"}),
        ("kiosk", "A-01", {"outcome": "no_code"}),  # a compartment's try keeps its target
    ]
    assert CODE not in audit_page
    assert [r.getMessage() for r in caplog.records if CODE in r.getMessage()] == []
    assert sim.boards[0].unlocks == []


async def test_a_try_the_kiosk_cannot_match_is_audited_without_its_label(tmp_path: Path) -> None:
    """No gateway behind the kiosk: which compartments it serves is unknown, so no typed label is one of them."""
    audit = AuditLog(tmp_path / "web")
    app = build_kiosk_app(ControlClient(tmp_path / "none.sock"), audit=audit, secure_cookie=False, lang="en")
    async with TestClient(TestServer(app)) as kiosk:
        status, page = await kiosk_try(kiosk, CODE, "A-01")
    assert status == 503
    assert "This does not work right now. Please try again in a moment." in page
    assert CODE not in page
    assert pickups(audit) == [("kiosk", "-", {"outcome": "failed"})]


def test_the_no_such_compartment_sentence_names_no_compartment() -> None:
    """The sentence for `unknown` has no placeholder: nothing typed can be put back on the public screen."""
    catalogs = Catalogs()
    assert catalogs.translate("ja", "kiosk.outcome.unknown", label=CODE) == NO_SUCH_JA
    assert catalogs.translate("en", "kiosk.outcome.unknown", label=CODE) == NO_SUCH_EN
