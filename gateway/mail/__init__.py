"""The one outgoing-mail component: every feature that sends e-mail enqueues a `Mail` here.

`MailQueue` (queue.py) keeps mails durably in <data_dir>/mail.db with the recipients encrypted;
`MailSender` (sender.py) delivers them over SMTP (STARTTLS or SMTPS, aiosmtplib) with backoff,
marking a mail failed with the server's reply when the server refuses that mail for good (5xx to
RCPT TO or DATA); a refusal of the sender or the session (MAIL FROM, AUTH) keeps every mail waiting. Adapters reach the queue as
`AdapterContext.mail` (None without a `[mail]` section); the web UI through the control ops
`mail.status` and `mail.failures`.

Only the config is imported with the package; the message, the queue and the sender on first use:
the config layer imports `gateway.mail.config` for every gateway, and the sender's aiosmtplib
(~12 MB resident), the queue's cryptography (~8 MB) and the message's email modules (~1 MB) must
not load in a gateway without a `[mail]` section (issue 18: ≤ 70 MB while draining;
tests/test_lazy_imports.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.mail.config import MailConfig, MailSecurity

if TYPE_CHECKING:
    from gateway.mail.message import Mail, build_message
    from gateway.mail.queue import MailFailure, MailQueue, MailState, MailStatus
    from gateway.mail.sender import MailSender

_LAZY = {
    "Mail": "gateway.mail.message",
    "build_message": "gateway.mail.message",
    "MailFailure": "gateway.mail.queue",
    "MailQueue": "gateway.mail.queue",
    "MailState": "gateway.mail.queue",
    "MailStatus": "gateway.mail.queue",
    "MailSender": "gateway.mail.sender",
}

__all__ = [
    "Mail",
    "MailConfig",
    "MailFailure",
    "MailQueue",
    "MailSecurity",
    "MailSender",
    "MailState",
    "MailStatus",
    "build_message",
]


def __getattr__(name: str) -> Any:
    # PEP 562: `from gateway.mail import MailQueue` still works, and loads the queue only then
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
