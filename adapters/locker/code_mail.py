"""An assignment's code mail in the gateway's mail queue: found again after a crash, taken back when staff cancel.

The code exists in clear only in that mail. A mail left queued for an assignment that has ended would
give a patron a code for a compartment that may hold someone else's book, and their tries would count
against that assignment; so cancelling withdraws it, and says whether it had already left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.locker.notice import PURPOSE
from adapters.locker.pickup import Assignment

if TYPE_CHECKING:  # the mail queue (and its cryptography) loads only in a gateway with [mail]
    from gateway.mail.queue import MailQueue, Withdrawal

__all__ = ["find", "reference", "withdraw"]


def reference(adapter: str, assignment_id: int) -> str:
    """The mail's handle in the queue (shown to staff, never personal data)."""
    return f"{adapter}:{assignment_id}"


async def find(queue: MailQueue, adapter: str, a: Assignment) -> int | None:
    """The code mail queued for `a` whose id a crash kept from being noted (the newest made since `a` was: a
    store started anew reuses assignment ids, and older mails with the same handle are not this one's)."""
    mails = await queue.by_reference(PURPOSE, reference(adapter, a.id))
    ours = [m.id for m in mails if m.created_at >= a.created_at]
    return ours[-1] if ours else None


def _note(outcome: Withdrawal, mail_id: int) -> str:
    from gateway.mail.queue import Withdrawal

    return {
        Withdrawal.WITHDRAWN: f"its code mail {mail_id} was withdrawn before it was sent",
        Withdrawal.SENDING: f"its code mail {mail_id} was being sent and may still reach the patron; "
        "the code no longer works",
        Withdrawal.SENT: f"its code mail {mail_id} had been sent already; the code no longer works",
        Withdrawal.FAILED: f"its code mail {mail_id} had failed, nothing was sent",
        Withdrawal.UNKNOWN: f"its code mail {mail_id} is not in the mail queue",
    }[outcome]


async def withdraw(queue: MailQueue | None, adapter: str, a: Assignment, why: str) -> str:
    """Take back `a`'s code mail; what became of it, for the staff's answer. Raises what the queue raises."""
    if queue is None:
        return "no mail queue to withdraw its code mail from"
    mail_id = a.mail_id if a.mail_id is not None else await find(queue, adapter, a)
    if mail_id is None:
        return "no code mail on record"
    return _note(await queue.withdraw(mail_id, f"{why} ({reference(adapter, a.id)})"), mail_id)
