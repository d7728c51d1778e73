"""Every answer the locker adapter gives about the code mail when staff cancel carries a word /lockers knows.

The adapter's answer is `cancelled: assignment 7; mail=<word>; <English text>`: the word, at that fixed place,
is what the page reads (tests/web/test_lockers_cancel_mail_outcome.py has the page through a real gateway); the
text is for the CLI and the log and may be reworded. Before, the page matched English phrases of the text, so a
rewording showed "unknown" to staff, and a phrase of another outcome inside the text (the queue's own error
message quoted in it) could read as that outcome.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from adapters.locker import code_mail
from adapters.locker.pickup import Assignment, PickupState
from gateway.mail.queue import MailQueue
from gateway.web.i18n import Catalogs
from gateway.web.pages.lockers import MAIL_OUTCOMES, mail_outcome
from tests.adapters.locker.test_adapter import running


async def test_every_answer_the_adapter_gives_about_the_mail_carries_a_word_the_page_knows(tmp_path: Path) -> None:
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
            for word, note in (
                ("none", await code_mail.withdraw(queue, "lockers", stale, "assignment cancelled")),
                ("not_queued", await code_mail.withdraw(queue, "lockers", replace(stale, mail_id=999), "cancelled")),
                ("no_queue", await code_mail.withdraw(None, "lockers", stale, "assignment cancelled")),
            ):
                answers[word] = code_mail.cancelled(stale.id, note)
        finally:
            await queue.close()
    for word, info in answers.items():
        assert info.split("; ")[1] == f"mail={word}", info  # the fixed place: after the assignment
        assert mail_outcome(info) == word, info
        for lang in ("ja", "en"):
            text = catalogs.translate(lang, f"lockers.done.cancel.{word}", label="A-02", site="north")
            assert "A-02" in text and "north" in text
    # every fate the adapter knows is one of the page's words, and every word of the page was given here
    assert {fate.value for fate in code_mail.MailFate} == set(MAIL_OUTCOMES) == set(answers)


def test_the_page_reads_the_word_not_the_text() -> None:
    # the word wins over a phrase of another outcome in the text
    assert (
        mail_outcome("cancelled: assignment 3; mail=sent; its code mail 1 was withdrawn before it was sent") == "sent"
    )
    # a reworded text keeps its outcome
    assert mail_outcome("cancelled: assignment 3; mail=withdrawn; the mail never left the box") == "withdrawn"


def test_a_missing_misplaced_or_unknown_word_is_the_safe_side() -> None:
    catalogs = Catalogs(strict=True)
    expected = {
        "cancelled: assignment 3; its code mail 1 was withdrawn before it was sent": "unknown",  # a phrase, no word
        "cancelled: assignment 3; mail=teleported; something new about its mail": "unknown",
        # the queue's error text quoted after the word says nothing about the outcome
        "cancelled: assignment 3; mail=not_withdrawn; its code mail could not be withdrawn, got OSError: mail=none": (
            "not_withdrawn"
        ),
        "cancelled: assignment 3; its code mail could not be withdrawn, got OSError: x; mail=withdrawn": "unknown",
        "cancelled: assignment 3": "unknown",
        "": "unknown",
    }
    assert {info: mail_outcome(info) for info in expected} == expected
    assert "届いている可能性" in catalogs.translate("ja", "lockers.done.cancel.unknown", label="A-02", site="north")


@given(
    assignment_id=st.integers(min_value=1, max_value=2**63 - 1),
    fate=st.sampled_from(code_mail.MailFate),
    text=st.text(),  # the queue's error message quoted in it may hold anything, "; mail=…" too
)
def test_the_word_survives_any_text_after_it(assignment_id: int, fate: code_mail.MailFate, text: str) -> None:
    info = code_mail.cancelled(assignment_id, code_mail.MailNote(fate, text))
    assert mail_outcome(info) == fate.value


@given(st.text())
def test_any_answer_reads_as_a_known_word_or_unknown(info: str) -> None:
    assert mail_outcome(info) in MAIL_OUTCOMES | {"unknown"}
