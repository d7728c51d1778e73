"""A 421 (the server closing the session, RFC 5321 3.8) is about the session at whichever command it comes: every
due mail waits for the session backoff, none is charged an attempt, as the README says for MAIL FROM."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.mail import MailState
from gateway.mail.sender import SessionError, send_now
from tests.mail.conftest import Clock, mail_config
from tests.mail.smtp_server import SmtpServer
from tests.mail.test_sender import open_sender, pickup
from tests.support.orion_double import TlsMaterial


@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "DATA", "DATA-END"])
async def test_a_421_at_any_command_makes_every_due_mail_wait(
    verb: str, smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    ids = [await queue.enqueue(pickup(reference=f"R-{i}")) for i in range(3)]
    smtp.replies[verb].append("421 4.3.2 service shutting down")
    await sender.run_once()
    assert sender.session_failures == 1 and sender.next_session_at > clock()
    assert sender.last_error is not None and "421" in sender.last_error and "closing the session" in sender.last_error
    for mail_id in ids:
        status = await queue.status(mail_id)
        assert status is not None
        assert (status.state, status.attempts) == (MailState.PENDING, 0), verb
    # nothing is tried again before the session backoff: no new session for the other mails
    sessions = smtp.sessions
    await sender.run_once()
    assert smtp.sessions == sessions and not smtp.received
    await queue.close()


async def test_send_now_says_a_421_at_rcpt_is_the_sessions(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial
) -> None:
    smtp.replies["RCPT"].append("421 4.3.2 service shutting down")
    with pytest.raises(SessionError, match=r"the server refused the recipients at RCPT TO, got 421 .*closing the"):
        await send_now(mail_config(smtp.port, tls_material), data_dir, pickup())
