"""The kiosk, through a real gateway, tells a patron typing the code that already collected their book so.

Before, once the compartment held the next patron's book, that code was a wrong code for it: the
kiosk said "wrong code", and `max_wrong` such tries locked the next patron out (their right code
then answered "too many wrong codes"). (Codes past their deadline: tests/adapters/locker/
test_locker_ended_codes_at_kiosk.py, with the adapter's clock moved; the kiosk's words for them:
test_kiosk_outcomes.py.)
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from gateway.control.client import ControlClient
from gateway.records import Command
from gateway.web.kiosk import build_kiosk_app
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_two_sites_kiosk import gateway_text, site
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import OrionDouble
from tests.web.pages_harness import gateway_web, until

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
A01 = "urn:ngsi-ld:LockerCompartment:gw-lib-lockers-A-01"
USED_JA = "この暗証番号の資料はすでに受け取られています（ロッカー A-01）。"


async def kiosk_try(client: Any, code: str) -> tuple[int, str]:
    page = await client.get("/")
    match = CSRF_RE.search(await page.text())
    assert match
    r = await client.post("/open", data={"csrf_token": match.group(1), "label": "A-01", "code": code})
    return r.status, await r.text()


async def test_the_code_that_collected_the_book_is_told_so_and_locks_nobody_out(tmp_path: Path) -> None:
    sim = BoardSim([SimBoard("cu16", 0)])
    smtp = await SmtpServer().start()
    try:
        async with OrionDouble() as orion:
            with pty_pair(tmp_path) as (gw, boards):
                async with serve_pty(sim, boards):
                    mail = (
                        f'[mail]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "plain-loopback"\n'
                        'from_address = "lockers@library.example.jp"\nretry_initial_s = 0.2\nretry_cap_s = 0.5\n'
                    )
                    text = gateway_text(tmp_path / "data", site("lockers", gw), extra=mail, uplink=orion.url)
                    async with gateway_web(tmp_path, orion.url, text=text) as env:
                        router = env.runtime.gateway.router
                        await until(lambda: router.owner(A01) is not None, "the compartments")
                        await until(lambda: sim.requests > 3, "polls")

                        async def assign(who: str) -> str:
                            value = {"email": f"{who}@example.jp", "reference": who}
                            r = await router.dispatch(
                                Command(command_id=who, entity_id=A01, name="assign", value=value, uplink="control")
                            )
                            assert r.ok, r.info
                            await until(lambda: any(m.rcpt_to[0] == value["email"] for m in smtp.received), "mail")
                            (m,) = [m for m in smtp.received if m.rcpt_to[0] == value["email"]]
                            msg = email.message_from_bytes(m.data, policy=email.policy.default)
                            body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                            return str(re.findall(r"暗証番号　：(\d{6})", body)[0])

                        async def pickup_state() -> tuple[str, int | None]:
                            grid = await router.dispatch(
                                Command(command_id="g", entity_id=A01, name="grid", uplink="control")
                            )
                            (cell,) = [c for c in json.loads(grid.info) if c["label"] == "A-01"]
                            return cell["pickup"], (cell["assignment"] or {}).get("wrong")

                        control = ControlClient(env.server.path, timeout_s=10.0)
                        try:
                            async with TestClient(TestServer(build_kiosk_app(control, secure_cookie=False))) as kiosk:
                                used = await assign("first")
                                assert (await kiosk_try(kiosk, used))[0] == 200
                                sim.boards[0].locked[0] = True  # the book taken, the door closed: the pickup
                                for _ in range(250):  # the next statuses see it
                                    if (await pickup_state())[0] == "free":
                                        break
                                    await asyncio.sleep(0.02)
                                assert await pickup_state() == ("free", None)
                                new = await assign("second")
                                tries = [await kiosk_try(kiosk, used) for _ in range(4)]  # max_wrong is 3
                                assert [status for status, _ in tries] == [400] * 4
                                assert all(USED_JA in page for _, page in tries)
                                assert await pickup_state() == ("reserved", 0)
                                status, page = await kiosk_try(kiosk, new)
                                assert status == 200, page
                        finally:
                            await control.close()
                        assert sim.boards[0].unlocks == [1, 1]
    finally:
        await smtp.stop()
