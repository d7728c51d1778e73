"""An assignment's code mail in the gateway's mail queue: found again after a crash, taken back when staff cancel.

The code exists in clear only in that mail. A mail left queued for an assignment that has ended would
give a patron a code for a compartment that may hold someone else's book, and their tries would count
against that assignment; so cancelling withdraws it, and says whether it had already left: as a stable
word (`MailFate`, which the staff page reads to tell staff whether to call the patron) and in English.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.locker.notice import PURPOSE
from adapters.locker.pickup import Assignment

if TYPE_CHECKING:  # the mail queue (and its cryptography) loads only in a gateway with [mail]
    from gateway.mail.queue import MailQueue, Withdrawal

__all__ = ["MailFate", "MailNote", "cancelled", "find", "not_withdrawn", "reference", "withdraw"]


class MailFate(enum.Enum):
    """What became of a code mail when its assignment was cancelled; the value is the word in the answer."""

    WITHDRAWN = "withdrawn"  # taken back before it left: the patron never gets the code
    SENDING = "sending"  # being sent: it may still reach the patron
    SENT = "sent"  # the server took it: the patron has the code
    FAILED = "failed"  # it had failed before: nothing was sent
    NOT_QUEUED = "not_queued"  # its id is not in the queue: whether it left is not known
    NONE = "none"  # no code mail on record (none was queued)
    NO_QUEUE = "no_queue"  # mail not running: nothing to withdraw it from, it may be sent later
    NOT_WITHDRAWN = "not_withdrawn"  # the queue failed: it may still be sent


@dataclass(frozen=True, slots=True)
class MailNote:
    fate: MailFate
    text: str  # English, for staff at the CLI and the log


def cancelled(assignment_id: int, note: MailNote) -> str:
    """The cancel's answer: the mail's word at a fixed place (the second "; " field), then the text, which may
    quote the queue's error and be reworded: `cancelled: assignment 7; mail=sent; its code mail 12 had …`."""
    return f"cancelled: assignment {assignment_id}; mail={note.fate.value}; {note.text}"


def not_withdrawn(exc: Exception, redacted: str) -> MailNote:
    """The queue raised while withdrawing (`redacted`: its message, personal data masked)."""
    return MailNote(
        MailFate.NOT_WITHDRAWN,
        f"its code mail could not be withdrawn, got {type(exc).__name__}: {redacted}; it may still be sent, and the "
        "code no longer works",
    )


def reference(adapter: str, assignment_id: int) -> str:
    """The mail's handle in the queue (shown to staff, never personal data)."""
    return f"{adapter}:{assignment_id}"


async def find(queue: MailQueue, adapter: str, a: Assignment) -> int | None:
    """The code mail queued for `a` whose id a crash kept from being noted (the newest made since `a` was: a
    store started anew reuses assignment ids, and older mails with the same handle are not this one's)."""
    mails = await queue.by_reference(PURPOSE, reference(adapter, a.id))
    ours = [m.id for m in mails if m.created_at >= a.created_at]
    return ours[-1] if ours else None


def _note(outcome: Withdrawal, mail_id: int) -> MailNote:
    from gateway.mail.queue import Withdrawal

    return {
        Withdrawal.WITHDRAWN: MailNote(MailFate.WITHDRAWN, f"its code mail {mail_id} was withdrawn before it was sent"),
        Withdrawal.SENDING: MailNote(
            MailFate.SENDING,
            f"its code mail {mail_id} was being sent and may still reach the patron; the code no longer works",
        ),
        Withdrawal.SENT: MailNote(
            MailFate.SENT, f"its code mail {mail_id} had been sent already; the code no longer works"
        ),
        Withdrawal.FAILED: MailNote(MailFate.FAILED, f"its code mail {mail_id} had failed, nothing was sent"),
        Withdrawal.UNKNOWN: MailNote(MailFate.NOT_QUEUED, f"its code mail {mail_id} is not in the mail queue"),
    }[outcome]


async def withdraw(queue: MailQueue | None, adapter: str, a: Assignment, why: str) -> MailNote:
    """Take back `a`'s code mail; what became of it, for the staff's answer. Raises what the queue raises."""
    if queue is None:
        return MailNote(MailFate.NO_QUEUE, "no mail queue to withdraw its code mail from")
    mail_id = a.mail_id if a.mail_id is not None else await find(queue, adapter, a)
    if mail_id is None:
        return MailNote(MailFate.NONE, "no code mail on record")
    return _note(await queue.withdraw(mail_id, f"{why} ({reference(adapter, a.id)})"), mail_id)
