"""Every answer the locker adapter gives about the code mail when staff cancel has its own text on /lockers.

The adapter words the mail's fate in English for the CLI and the log, and the page reads it from there
(tests/web/test_lockers_cancel_mail_outcome.py has the page through a real gateway); a change of that wording
fails here instead of showing "unknown" to staff.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from adapters.locker import code_mail
from adapters.locker.pickup import Assignment, PickupState
from gateway.mail.queue import MailQueue
from gateway.web.i18n import Catalogs
from gateway.web.pages.lockers import MAIL_OUTCOMES, mail_outcome
from tests.adapters.locker.test_adapter import running


async def test_every_answer_the_adapter_gives_about_the_mail_has_its_own_text(tmp_path: Path) -> None:
    """A real adapter's answers, and code_mail's own for the cases no compartment here reaches."""
    catalogs = Catalogs(strict=True)
    answers: dict[str, str] = {}
    async with running(tmp_path) as rig:

        async def cancelled_after(prepare: Callable[[int], Awaitable[object]] | None) -> str:
            assigned = await rig.command("A-02", "assign", {"email": "p@example.jp", "reference": "R-1"})
            assert assigned.ok, assigned.info
            mail_id = json.loads(assigned.info)["mail_id"]
            if prepare is not None:
                await prepare(mail_id)
            result = await rig.command("A-02", "cancel")
            assert result.ok, result.info
            return result.info

        answers["withdrawn"] = await cancelled_after(None)
        answers["sending"] = await cancelled_after(lambda _: rig.mail.due(now=1e12))
        answers["sent"] = await cancelled_after(lambda m: rig.mail.mark_sent(m))
        answers["failed"] = await cancelled_after(lambda m: rig.mail.mark_failed(m, "550 no such user"))
        answers["not_withdrawn"] = await cancelled_after(lambda _: rig.mail.close())  # the queue unusable
        queue = await MailQueue.open(tmp_path / "other-mail")
        try:
            stale = Assignment(
                id=7,
                label="A-01",
                reference="R-7",
                state=PickupState.RESERVED,
                created_at=0.0,
                expires_at=1.0,
                wrong=0,
                mail_id=None,
                opened_at=None,
                closed_at=None,
                has_email=False,
                event_pending=False,
            )
            answers["none"] = await code_mail.withdraw(queue, "lockers", stale, "assignment cancelled")
            answers["not_queued"] = await code_mail.withdraw(
                queue, "lockers", replace(stale, mail_id=999), "assignment cancelled"
            )
            answers["no_queue"] = await code_mail.withdraw(None, "lockers", stale, "assignment cancelled")
        finally:
            await queue.close()
    for word, info in answers.items():
        assert mail_outcome(info) == word, info
        for lang in ("ja", "en"):
            text = catalogs.translate(lang, f"lockers.done.cancel.{word}", label="A-02")
            assert "A-02" in text
    assert mail_outcome("cancelled: assignment 3; something new about its mail") == "unknown"
    assert "届いている可能性" in catalogs.translate("ja", "lockers.done.cancel.unknown", label="A-02")
    assert {word for _, word in MAIL_OUTCOMES} == set(answers)
