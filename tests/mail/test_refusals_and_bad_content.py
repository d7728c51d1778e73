"""What must never stop the queue: a header that is not one line, and a server refusing the sender.

Regressions of the review of the mail queue: a subject with U+2028 (or \\x0b, \\x0c, \\x85) was
queued and then stopped every mail for up to 7 days; a 5xx to MAIL FROM (530 without AUTH, Office
365's 550 5.7.60) failed and erased the whole queue; an address with a trailing LF passed the check
(`$` matches before a final newline) and went out with a broken header block.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail import Mail, MailConfig, MailQueue, MailSender, MailState
from gateway.mail.message import MailError, build_message, check_address
from gateway.mail.sender import SessionError, send_now
from gateway.secrets import SecretStore
from tests.mail.conftest import Clock, mail_config
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import TlsMaterial

PATRON = "hanako.yamada@mail.example.jp"
# every character str.splitlines breaks a line on
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
OTHER_CONTROLS = "\x00\x01\x08\t\x1b\x1f\x7f\x80\x9f"


def pickup(n: int = 0, **over: Any) -> Mail:
    fields: dict[str, Any] = {
        "to": (f"patron{n}@example.jp",),
        "subject": f"【町立図書館】受け取りのご案内 {n}",
        "text": f"解錠コード: 48291{n}\n",
        "purpose": "locker.pickup",
        "reference": f"R-{n}",
    }
    fields.update(over)
    return Mail(**fields)


def relay_config(server: SmtpServer, material: TlsMaterial, **over: Any) -> MailConfig:
    """`server` as a loopback relay: no TLS, no AUTH (unless `over` says otherwise)."""
    return mail_config(
        server.port, material, **({"security": "plain-loopback", "username": None, "password": None, "tls": {}} | over)
    )


@pytest.fixture
async def plain_relay() -> AsyncIterator[SmtpServer]:
    server = await SmtpServer().start()
    yield server
    await server.stop()


def queued_by_an_earlier_version(data_dir: Path, mail_id: int, **content: Any) -> None:
    """Rewrite a queued row's sealed content as an earlier version (whose `Mail` checked less) stored it."""
    key = SecretStore(data_dir).get("mail.queue_key")
    db = sqlite3.connect(data_dir / "mail.db")
    try:
        (token,) = db.execute("SELECT payload FROM mails WHERE id = ?", (mail_id,)).fetchone()
        stored = json.loads(Fernet(key.encode()).decrypt(token)) | content
        payload = Fernet(key.encode()).encrypt(json.dumps(stored, ensure_ascii=False).encode())
        with db:
            db.execute("UPDATE mails SET payload = ? WHERE id = ?", (payload, mail_id))
    finally:
        db.close()


# --- 1. refused when it is made: the subject is one line without control characters ---------------------


@pytest.mark.parametrize("char", LINE_BREAKS + OTHER_CONTROLS)
def test_a_subject_with_a_line_break_or_a_control_character_is_refused_naming_the_field(char: str) -> None:
    with pytest.raises(MailError) as exc:
        Mail(to=(PATRON,), subject=f"ロッカー 3番{char}扉", text="t")
    assert str(exc.value) == (
        f"mail.subject: must be one line without control characters, got U+{ord(char):04X} at character 8"
    )


# any text, with the characters that break lines or headers often among it
subjects = st.text(
    st.characters(exclude_categories=["Cs"]) | st.sampled_from(LINE_BREAKS + OTHER_CONTROLS), max_size=40
)


def first_not_one_line(s: str) -> tuple[int, str] | None:
    """Where `s` stops being one line of text: a character str.splitlines breaks on, or a C0/C1 control."""
    for i, c in enumerate(s):
        if len(f"x{c}x".splitlines()) > 1 or unicodedata.category(c) == "Cc":
            return i, c
    return None


@settings(max_examples=300, deadline=None)
@given(subject=subjects)
def test_a_subject_mail_accepts_is_one_line_and_builds_an_intact_message(subject: str) -> None:
    bad = first_not_one_line(subject)
    if bad is not None:
        with pytest.raises(MailError) as exc:
            Mail(to=(PATRON,), subject=subject, text="t")
        where, char = bad
        assert str(exc.value) == (
            f"mail.subject: must be one line without control characters, got U+{ord(char):04X} at character {where + 1}"
        )
        return
    mail = Mail(to=(PATRON, "taro@example.jp"), subject=subject, text="本文\n")
    wire = build_message(mail, from_address="gw@library.example.jp", now=datetime(2026, 12, 4, tzinfo=UTC)).as_bytes()
    parsed = message_from_bytes(wire, policy=default)
    assert parsed.defects == [] and [a.addr_spec for a in parsed["To"].addresses] == [PATRON, "taro@example.jp"]
    assert list(parsed.keys()) == [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
    ]
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == "本文\n"


# --- 3. an address with a trailing newline ----------------------------------------------------------------


@pytest.mark.parametrize("address", [PATRON + "\n", "a@example.jp\n", "a@b\n"])
def test_an_address_with_a_trailing_newline_is_refused(address: str) -> None:
    with pytest.raises(MailError, match=r"^mail\.to: not an e-mail address \(local@domain\), got a value not shown"):
        Mail(to=(address,), subject="s", text="t")
    with pytest.raises(MailError, match=r"^recipients\.high\[0\]: not an e-mail address"):
        check_address(address, "recipients.high[0]")


# --- 1. at send: a mail an earlier version queued that this one refuses is failed alone --------------------


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (
            {"subject": "ロッカー 3番\u2028扉"},
            "mail.subject: must be one line without control characters, got U+2028 at character 8",
        ),
        (
            {"subject": "pickup\x0bcode"},
            "mail.subject: must be one line without control characters, got U+000B at character 7",
        ),
        ({"to": [PATRON + "\n"]}, "mail.to: not an e-mail address (local@domain), got a value not shown here"),
    ],
)
async def test_a_mail_queued_by_an_earlier_version_that_cannot_be_sent_is_failed_alone_and_the_rest_go_out(
    plain_relay: SmtpServer,
    data_dir: Path,
    tls_material: TlsMaterial,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    content: dict[str, Any],
    error: str,
) -> None:
    queue = await MailQueue.open(data_dir, clock=clock)
    bad = await queue.enqueue(pickup(9, to=(PATRON,), reference="R-old"))  # the oldest: first in line
    good = [await queue.enqueue(pickup(n)) for n in range(3)]
    await queue.close()
    queued_by_an_earlier_version(data_dir, bad, **content)
    queue = await MailQueue.open(data_dir, clock=clock)
    sender = MailSender(relay_config(plain_relay, tls_material), queue, data_dir, clock=clock)

    with caplog.at_level(logging.INFO, "gateway.mail"):
        assert await sender.run_once() == 4

    status = await queue.status(bad)
    assert status is not None and status.state is MailState.FAILED and status.attempts == 1
    assert status.last_error == f"cannot be sent as it was queued: {error}"
    row = await queue.raw_row(bad)
    assert row is not None and row["payload"] is None  # erased like any failed mail
    for mail_id in good:
        sent = await queue.status(mail_id)
        assert sent is not None and sent.state is MailState.SENT
    assert sorted(r.rcpt_to[0] for r in plain_relay.received) == [f"patron{n}@example.jp" for n in range(3)]
    d = sender.diagnostics()
    assert (d["sent"], d["failed"], d["unsendable"], d["connected"]) == (3, 1, 1, True)
    assert d["last_error"] == f"cannot be sent as it was queued: {error}"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"mail {bad} failed permanently (locker.pickup, R-old): cannot be sent as it was queued: {error}"
    ]
    assert PATRON not in caplog.text
    assert await sender.run_once() == 0  # never tried again
    await queue.close()


async def test_a_from_name_that_is_not_one_line_keeps_every_mail_waiting_and_says_which_setting(
    plain_relay: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    # the [mail] section refuses it now (test_a_from_name_or_address_not_one_line_is_refused_by_the_config);
    # a configuration validated by an earlier version still reaches the sender, whose From header would
    # lose the gateway's address
    queue = await MailQueue.open(data_dir, clock=clock)
    cfg = relay_config(plain_relay, tls_material).model_copy(update={"from_name": "町立図書館\u2028本館"})
    sender = MailSender(cfg, queue, data_dir, clock=clock)
    ids = [await queue.enqueue(pickup(n)) for n in range(2)]
    assert await sender.run_once() == 0
    error = (
        "[mail] from_name: must be one line without control characters, got U+2028 at character 6; "
        "correct it in the configuration"
    )
    for mail_id in ids:
        status = await queue.status(mail_id)
        assert status is not None and status.state is MailState.PENDING and status.last_error == error
    assert plain_relay.sessions == 0 and plain_relay.received == []
    assert sender.diagnostics()["connected"] is False and sender.last_error == error
    with pytest.raises(SessionError, match=r"^\[mail\] from_name: must be one line"):
        await send_now(cfg, data_dir, pickup())
    await queue.close()


# --- 2. a refusal at MAIL FROM is the session's problem: every mail waits -------------------------------------


async def test_530_at_mail_from_without_a_username_keeps_every_mail_waiting_and_names_the_setting(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # a submission server that wants AUTH, and a [mail] section without username: aiosmtpd answers MAIL with 530
    queue = await MailQueue.open(data_dir, clock=clock)
    cfg = mail_config(smtp.port, tls_material, username=None, password=None)
    sender = MailSender(cfg, queue, data_dir, clock=clock)
    ids = [await queue.enqueue(pickup(n)) for n in range(3)]
    error = (
        "the server refused the sender at MAIL FROM, got 530 5.7.0 Authentication required; "
        "set [mail] username and password, the server wants authentication"
    )
    with caplog.at_level(logging.INFO, "gateway.mail"):
        assert await sender.run_once() == 0
        first_retry = sender.next_session_at
        assert clock.now + 3 <= first_retry <= clock.now + 30  # the sender's backoff (retry_initial_s 30)
        clock.now = first_retry
        assert await sender.run_once() == 0
    assert smtp.commands.count("MAIL") == 2 and smtp.received == []
    for mail_id in ids:
        status = await queue.status(mail_id)
        assert status is not None and status.state is MailState.PENDING and status.attempts == 0
        assert status.last_error == error
        row = await queue.raw_row(mail_id)
        assert row is not None and row["payload"] is not None  # nothing erased
    d = sender.diagnostics()
    assert (d["failed"], d["session_failures"], d["connected"], d["last_error"]) == (0, 2, False, error)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].endswith(error)

    # the technician sets the username: the same mails go out, each once
    fixed = MailSender(mail_config(smtp.port, tls_material), queue, data_dir, clock=clock)
    clock.now = sender.next_session_at  # when the mails are due again
    assert await fixed.run_once() == 3
    assert sorted(r.rcpt_to[0] for r in smtp.received) == [f"patron{n}@example.jp" for n in range(3)]
    await queue.close()


@pytest.mark.parametrize(
    ("reply", "fix"),
    [
        (
            "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
            "check [mail] from_address: the server or the account may not send as it",
        ),
        (
            "553 5.7.1 <gateway@library.example.jp>: Sender address rejected: not owned by user gateway",
            "check [mail] from_address: the server or the account may not send as it",
        ),
        ("535 5.7.8 Error: authentication failed", "check [mail] username and password"),
        ("451 4.1.8 Sender address rejected: Domain not found", "check [mail] from_address if it persists"),
    ],
)
async def test_a_refusal_at_mail_from_keeps_every_mail_waiting_logs_once_and_is_retried_with_the_backoff(
    smtp: SmtpServer,
    data_dir: Path,
    tls_material: TlsMaterial,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    reply: str,
    fix: str,
) -> None:
    queue = await MailQueue.open(data_dir, clock=clock)
    sender = MailSender(mail_config(smtp.port, tls_material), queue, data_dir, clock=clock)
    ids = [await queue.enqueue(pickup(n)) for n in range(5)]
    smtp.replies["MAIL"].extend([reply, reply])
    shown = reply.replace("gateway@library.example.jp", "***@library.example.jp")
    error = f"the server refused the sender at MAIL FROM, got {shown}; {fix}"
    with caplog.at_level(logging.INFO, "gateway.mail"):
        assert await sender.run_once() == 0
        assert await sender.run_once() == 0  # before the backoff: the server is not asked again
        assert smtp.sessions == 1
        clock.now = sender.next_session_at
        assert await sender.run_once() == 0  # refused again: the same spell, not logged again
        for mail_id in ids:
            status = await queue.status(mail_id)
            assert status is not None and status.state is MailState.PENDING and status.last_error == error
            row = await queue.raw_row(mail_id)
            assert row is not None and row["payload"] is not None
        assert sender.diagnostics()["failed"] == 0 and sender.diagnostics()["last_error"] == error
        clock.now = sender.next_session_at
        assert await sender.run_once() == 5  # the account may send again
    messages = [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()]
    assert len(messages) == 1 and messages[0].endswith(error)
    assert sum("reachable again" in r.getMessage() for r in caplog.records) == 1
    assert len(smtp.received) == 5 and smtp.sessions == 3
    assert "gateway@library.example.jp" not in caplog.text
    await queue.close()


@pytest.mark.parametrize("verb", ["RCPT", "DATA"])
async def test_a_demand_for_authentication_at_rcpt_or_data_is_a_session_problem_too(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock, verb: str
) -> None:
    queue = await MailQueue.open(data_dir, clock=clock)
    sender = MailSender(mail_config(smtp.port, tls_material), queue, data_dir, clock=clock)
    ids = [await queue.enqueue(pickup(n)) for n in range(2)]
    smtp.replies[verb].append("530 5.7.0 Authentication required")
    assert await sender.run_once() == 0
    for mail_id in ids:
        status = await queue.status(mail_id)
        assert status is not None and status.state is MailState.PENDING
        assert (status.last_error or "").endswith(
            "got 530 5.7.0 Authentication required; check [mail] username and password"
        )
    clock.now = sender.next_session_at
    assert await sender.run_once() == 2
    await queue.close()


async def test_a_size_refusal_at_mail_from_fails_that_mail_only(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    # MAIL FROM carries SIZE=; a 552 there is about this one mail, and must not hold the others back
    queue = await MailQueue.open(data_dir, clock=clock)
    sender = MailSender(mail_config(smtp.port, tls_material), queue, data_dir, clock=clock)
    big, other = await queue.enqueue(pickup(0)), await queue.enqueue(pickup(1))
    smtp.replies["MAIL"].append("552 5.3.4 Message size exceeds fixed maximum message size")
    assert await sender.run_once() == 1
    assert await sender.run_once() == 1
    status = await queue.status(big)
    assert status is not None and status.state is MailState.FAILED
    assert status.last_error == "552 5.3.4 Message size exceeds fixed maximum message size"
    sent = await queue.status(other)
    assert sent is not None and sent.state is MailState.SENT
    await queue.close()


async def test_send_now_reports_a_refused_sender_as_a_session_problem_naming_the_setting(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial
) -> None:
    smtp.replies["MAIL"].append("550 5.7.60 SMTP; Client does not have permissions to send as this sender")
    with pytest.raises(SessionError) as err:
        await send_now(mail_config(smtp.port, tls_material), data_dir, pickup())
    assert str(err.value) == (
        "the server refused the sender at MAIL FROM, got 550 5.7.60 SMTP; Client does not have permissions to "
        "send as this sender; check [mail] from_address: the server or the account may not send as it"
    )
    assert smtp.received == []
