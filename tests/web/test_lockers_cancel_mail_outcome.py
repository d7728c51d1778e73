"""After a cancel, /lockers says what became of the code mail: withdrawn in time, or already with the patron.

The page said "the assignment is cancelled" whatever the adapter answered about the mail, so a librarian
could not tell a patron who never got the code from one who holds a code that no longer opens anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.accounts.store import Role
from gateway.mail.queue import MailQueue, MailState, MailStatus
from tests.adapters.locker.board_sim import BoardSim, SimBoard, pty_pair, serve_pty
from tests.adapters.locker.test_gateway_flow import _locker_registered as _locker_registered
from tests.adapters.locker.test_gateway_flow import gateway_text
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import OrionDouble
from tests.web.conftest import csrf_token
from tests.web.pages_harness import gateway_web, until

Client = TestClient[web.Request, web.Application]
ENTITY = "urn:ngsi-ld:LockerCompartment:gw-lib-lockers-{label}"


async def assign(librarian: Client, label: str, reference: str) -> None:
    data = {
        "csrf_token": await csrf_token(librarian, "/lockers"),
        "entity_id": ENTITY.format(label=label),
        "label": label,
        "email": f"patron.{reference.lower()}@example.jp",
        "reference": reference,
    }
    response = await librarian.post("/lockers/assign", data=data, allow_redirects=False)
    assert response.status == 302
    assert f"{label} を割り当て" in await (await librarian.get("/lockers")).text()


async def cancel(librarian: Client, label: str, language: str = "ja") -> str:
    """The /lockers page after the cancel, in `language`, its flash showing."""
    headers = {"Accept-Language": language}
    data = {
        "csrf_token": await csrf_token(librarian, "/lockers"),
        "action": "cancel",
        "entity_id": ENTITY.format(label=label),
        "label": label,
    }
    response = await librarian.post("/lockers/action", data=data, headers=headers, allow_redirects=False)
    assert response.status == 302
    return await (await librarian.get("/lockers", headers=headers)).text()


async def mail_until(queue: MailQueue, mail_id: int, ready: Callable[[MailStatus], bool], what: str) -> MailStatus:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while True:
        status = await queue.status(mail_id)
        if status is not None and ready(status):
            return status
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; mail {mail_id}: {status}")
        await asyncio.sleep(0.02)


async def test_the_cancel_says_whether_the_code_mail_was_withdrawn_or_had_left(
    orion_double: OrionDouble, tmp_path: Path
) -> None:
    sim = BoardSim([SimBoard("cu16", 0)])
    smtp = await SmtpServer().start()
    try:
        with pty_pair(tmp_path) as (gw_port, board_port):
            async with serve_pty(sim, board_port):
                text = gateway_text(tmp_path / "data", orion_double.url, gw_port, smtp.port)
                # a refused connection leaves a mail waiting for ten minutes: no attempt races the cancels below
                text = text.replace("retry_initial_s = 0.2", "retry_initial_s = 600").replace(
                    "retry_cap_s = 0.5", "retry_cap_s = 600"
                )
                async with gateway_web(tmp_path, orion_double.url, text=text) as env:
                    queue = env.runtime.gateway.mail_queue
                    assert queue is not None
                    await until(
                        lambda: env.runtime.gateway.router.owner(ENTITY.format(label="A-03")) is not None,
                        "the compartments",
                    )
                    await until(lambda: sim.requests > 3, "a few polls")
                    librarian = await env.browser("hanako", Role.LIBRARIAN)

                    # A-01's code mail reaches the patron; then the mail server goes away
                    await assign(librarian, "A-01", "R-1")
                    await mail_until(queue, 1, lambda m: m.state is MailState.SENT, "A-01's code mail sent")
                    assert len(smtp.received) == 1
                    await smtp.stop()
                    # A-02's mail is tried once, refused, and waits
                    await assign(librarian, "A-02", "R-2")
                    waiting = await mail_until(queue, 2, lambda m: m.last_error is not None, "A-02's mail tried")
                    assert waiting.state is MailState.PENDING, waiting

                    page = await cancel(librarian, "A-02")
                    assert (
                        '<p class="flash flash-success" role="status">lockers のロッカー A-02 の割り当てを取り消しました。'
                        "暗証番号のメールは送信前に取り消したので、利用者には届きません。</p>"
                    ) in page
                    page = await cancel(librarian, "A-01")
                    assert (  # the patron holds a code: staff may have to call them, so a warning
                        '<p class="flash flash-warning" role="status">lockers のロッカー A-01 の割り当てを取り消しました。'
                        "暗証番号のメールはすでに送信済みのため、利用者は暗証番号を知っています"
                        "（その暗証番号ではもう開きません）。必要なら利用者に連絡してください。</p>"
                    ) in page
                    assert "送信前に取り消した" not in page

                    await assign(librarian, "A-03", "R-3")
                    page = await cancel(librarian, "A-03", "en")
                    assert (
                        "The assignment of compartment A-03 (lockers) is cancelled. Its code mail was withdrawn before "
                        "it was sent: the patron does not get the code."
                    ) in page
                    assert len(smtp.received) == 1
    finally:
        await smtp.stop()
