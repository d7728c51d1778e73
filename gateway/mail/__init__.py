"""The one outgoing-mail component: every feature that sends e-mail enqueues a `Mail` here.

`MailQueue` (queue.py) keeps mails durably in <data_dir>/mail.db with the recipients encrypted;
`MailSender` (sender.py) delivers them over SMTP (STARTTLS or SMTPS, aiosmtplib) with backoff,
marking permanent (5xx) failures failed with the server's reply. Adapters reach the queue as
`AdapterContext.mail` (None without a `[mail]` section); the web UI through the control ops
`mail.status` and `mail.failures`.
"""

from gateway.mail.config import MailConfig, MailSecurity
from gateway.mail.message import Mail, build_message
from gateway.mail.queue import MailFailure, MailQueue, MailState, MailStatus
from gateway.mail.sender import MailSender

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
