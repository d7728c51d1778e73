"""Cancelling an assignment withdraws its code mail while it waits, and tells staff when it had already left.

Before, the mail stayed queued (SMTP down): once the server was back the cancelled patron got a code
for a compartment that by then held another patron's book, and their tries locked that assignment.
"""

from __future__ import annotations

from pathlib import Path

from gateway.mail.queue import WITHDRAWN_PREFIX
from tests.adapters.locker.test_adapter import running


def code_in(text: str) -> str:
    return text.split("暗証番号　：")[1].split("\n")[0]


async def test_cancel_withdraws_the_waiting_code_mail(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:  # no sender: the mails wait, as while the SMTP server is down
        first = await rig.command("A-02", "assign", {"email": "wrong.patron@example.jp", "reference": "R-1"})
        assert first.ok, first.info
        cancel = await rig.command("A-02", "cancel")
        assert (cancel.ok, cancel.info) == (
            True,
            "cancelled: assignment 1; mail=withdrawn; its code mail 1 was withdrawn before it was sent",
        )
        row = await rig.mail.raw_row(1)
        assert row is not None
        assert (row["state"], row["payload"]) == ("failed", None)
        assert row["last_error"] == WITHDRAWN_PREFIX + "assignment cancelled (lockers:1)"
        second = await rig.command("A-02", "assign", {"email": "right.patron@example.jp", "reference": "R-2"})
        assert second.ok, second.info
        assert [p.mail.to for p in await rig.mail.due(now=1e12)] == [("right.patron@example.jp",)]


async def test_cancel_says_when_the_code_mail_had_left_already(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        assert (await rig.command("A-02", "assign", {"email": "p@example.jp", "reference": "R-1"})).ok
        # as the sender does once the server took it
        (pending,) = await rig.mail.due(now=1e12)
        await rig.mail.mark_sent(pending.id)
        cancel = await rig.command("A-02", "cancel")
        assert (cancel.ok, cancel.info) == (
            True,
            "cancelled: assignment 1; mail=sent; its code mail 1 had been sent already; the code no longer works",
        )
        late = await rig.command("A-02", "pickup", {"code": code_in(pending.mail.text)})
        assert late.info == (  # the patron may hold it: told apart, counted against nobody (test_cancel_code_at_kiosk)
            "cancelled_code: the reservation for compartment A-02 was cancelled; this code no longer opens it, "
            "ask the library"
        )


async def test_cancel_says_when_the_code_mail_is_being_sent(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        assert (await rig.command("A-02", "assign", {"email": "p@example.jp", "reference": "R-1"})).ok
        await rig.mail.due(now=1e12)  # the sender has read it and holds its text
        cancel = await rig.command("A-02", "cancel")
        assert (cancel.ok, cancel.info) == (
            True,
            "cancelled: assignment 1; mail=sending; its code mail 1 was being sent and may still reach the patron; "
            "the code no longer works",
        )
        assert await rig.mail.due(now=1e12) == []  # not sent again if that attempt fails
