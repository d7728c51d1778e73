"""The sender against a real SMTP server on loopback: TLS, AUTH, retries, failures, erasure, redaction."""

from __future__ import annotations

import asyncio
import logging
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from gateway.mail import Mail, MailQueue, MailSender, MailState
from gateway.mail.sender import SessionError, send_now
from tests.mail.conftest import Clock, mail_config
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import TlsMaterial
from tests.support.ports import free_port

PATRON = "hanako.yamada@mail.example.jp"
SUBJECT = "【町立図書館】予約資料のロッカー受け取りのご案内"
TEXT = "山田 花子 様\n\nロッカー A-03 に予約資料をご用意しました。\n解錠コード: 482913\n受取期限: 2026年12月11日\n"


def pickup(**over: object) -> Mail:
    fields: dict[str, object] = {
        "to": (PATRON,),
        "subject": SUBJECT,
        "text": TEXT,
        "purpose": "locker.pickup",
        "reference": "R-2026-0042",
    }
    fields.update(over)
    return Mail(**fields)  # type: ignore[arg-type]


async def open_sender(
    data_dir: Path, port: int, material: TlsMaterial, clock: Clock, **over: object
) -> tuple[MailQueue, MailSender]:
    queue = await MailQueue.open(data_dir, clock=clock)
    return queue, MailSender(mail_config(port, material, **over), queue, data_dir, clock=clock)


def files_bytes(db: Path) -> bytes:
    """The database and its WAL as they are on disk."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def parsed(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


async def test_sends_over_starttls_with_auth_and_erases_the_recipient(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    mail_id = await queue.enqueue(pickup(html="<p>ロッカー <b>A-03</b></p>"))
    before = await queue.raw_row(mail_id)
    assert before is not None and PATRON.encode() not in before["payload"]  # encrypted at rest
    on_disk = await asyncio.to_thread(files_bytes, queue.path)
    assert b"482913" not in on_disk and PATRON.encode() not in on_disk and "花子".encode() not in on_disk

    assert await sender.run_once() == 1

    [got] = smtp.received
    assert got.tls and got.user == "gateway"
    assert got.mail_from == "gateway@library.example.jp" and got.rcpt_to == [PATRON]
    msg = parsed(got.data)
    assert msg["Subject"] == SUBJECT  # decoded back to the same text
    assert msg["To"] == PATRON
    assert msg["From"].addresses[0].display_name == "町立図書館"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert got.data.isascii()  # RFC 2047 headers and base64 bodies: any relay passes it
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    # MIME's canonical text form has CRLF line ends, inside base64 too
    assert plain is not None and plain.get_content().replace("\r\n", "\n") == TEXT
    assert html is not None and "A-03" in html.get_content()

    row = await queue.raw_row(mail_id)
    assert row is not None and row["state"] == "sent" and row["payload"] is None
    assert row["marker"] == queue.marker(PATRON) and row["domains"] == "***@mail.example.jp"
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.SENT and status.attempts == 1
    assert sender.diagnostics()["sent"] == 1
    await queue.close()


async def test_starttls_missing_means_nothing_sent_in_clear(
    data_dir: Path, tls_material: TlsMaterial, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    clear_only = await SmtpServer(tls_context=None).start()  # offers no STARTTLS
    try:
        queue, sender = await open_sender(data_dir, clear_only.port, tls_material, clock)
        mail_id = await queue.enqueue(pickup())
        with caplog.at_level(logging.INFO, "gateway.mail"):
            assert await sender.run_once() == 0
        assert "MAIL" not in clear_only.commands and "AUTH" not in clear_only.commands
        assert clear_only.received == []
        status = await queue.status(mail_id)
        assert status is not None and status.state is MailState.PENDING
        assert status.last_error is not None and "STARTTLS" in status.last_error
        assert sender.diagnostics()["connected"] is False
        assert sum("unusable" in r.getMessage() for r in caplog.records) == 1
        await queue.close()
    finally:
        await clear_only.stop()


async def test_smtps(data_dir: Path, tls_material: TlsMaterial, clock: Clock, server_context: object) -> None:
    import ssl

    assert isinstance(server_context, ssl.SSLContext)
    server = await SmtpServer(
        tls_context=server_context, smtps=True, credentials={"gateway": "s3cret-smtp-pass"}
    ).start()
    try:
        queue, sender = await open_sender(data_dir, server.port, tls_material, clock, security="smtps")
        await queue.enqueue(pickup())
        assert await sender.run_once() == 1
        assert server.received[0].tls and "STARTTLS" not in server.commands
        await queue.close()
    finally:
        await server.stop()


async def test_certificate_checks_off_are_said_at_start(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock, tls={"verify": "off"})
    await queue.enqueue(pickup())
    assert await sender.run_once() == 1  # the test CA is in no trust store: only unchecked does it connect
    with caplog.at_level(logging.WARNING, "gateway.mail"):
        sender.start()
        await sender.stop()
    assert [r.getMessage() for r in caplog.records] == [
        f"TLS certificate checks are off for smtp://127.0.0.1:{smtp.port}; use tls.ca_file instead"
    ]
    await queue.close()


async def test_untrusted_certificate_is_refused(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock, tls={})  # system CAs only
    await queue.enqueue(pickup())
    assert await sender.run_once() == 0
    assert smtp.received == [] and "MAIL" not in smtp.commands
    assert "certificate" in (sender.last_error or "").lower()
    await queue.close()


async def test_4xx_is_retried_after_a_backoff(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    smtp.replies["RCPT"].append("450 4.2.1 mailbox busy, try later")
    mail_id = await queue.enqueue(pickup())
    assert await sender.run_once() == 1
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.PENDING and status.attempts == 1
    assert status.last_error == "450 4.2.1 mailbox busy, try later"
    assert status.next_attempt_at is not None and clock.now + 15 <= status.next_attempt_at <= clock.now + 30
    assert await sender.run_once() == 0  # not due yet: the server is not asked again
    assert smtp.commands.count("RCPT") == 1
    clock.now = status.next_attempt_at
    assert await sender.run_once() == 1
    assert len(smtp.received) == 1
    done = await queue.status(mail_id)
    assert done is not None and done.state is MailState.SENT and done.attempts == 2
    assert sender.diagnostics()["deferred"] == 1
    await queue.close()


async def test_5xx_fails_with_the_servers_reply_and_masks_the_address(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    smtp.replies["RCPT"].append(f"550 5.1.1 <{PATRON}>: Recipient address rejected: User unknown")
    mail_id = await queue.enqueue(pickup())
    other = await queue.enqueue(pickup(to=("taro@example.jp",), reference="R-2"))
    with caplog.at_level(logging.DEBUG):
        assert await sender.run_once() == 1  # the refused one; the session is renewed for the rest
        assert await sender.run_once() == 1
    [failure] = await queue.failures()
    assert failure.id == mail_id and failure.state is MailState.FAILED
    assert failure.last_error == "550 5.1.1 <***@mail.example.jp>: Recipient address rejected: User unknown"
    assert failure.reference == "R-2026-0042" and failure.marker == queue.marker(PATRON)
    row = await queue.raw_row(mail_id)
    assert row is not None and row["payload"] is None
    sent = await queue.status(other)
    assert sent is not None and sent.state is MailState.SENT
    assert [r.rcpt_to for r in smtp.received] == [["taro@example.jp"]]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "failed permanently" in logged
    assert PATRON not in logged and "taro@example.jp" not in logged
    assert await sender.run_once() == 0  # never retried
    await queue.close()


async def test_5xx_after_data_fails(smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    smtp.replies["DATA-END"].append("554 5.7.1 message rejected as spam")
    mail_id = await queue.enqueue(pickup())
    assert await sender.run_once() == 1
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.FAILED
    assert status.last_error == "554 5.7.1 message rejected as spam"
    await queue.close()


async def test_server_down_then_up_sends_once(
    data_dir: Path, tls_material: TlsMaterial, clock: Clock, server_context: object, caplog: pytest.LogCaptureFixture
) -> None:
    import ssl

    assert isinstance(server_context, ssl.SSLContext)
    port = free_port()
    queue, sender = await open_sender(data_dir, port, tls_material, clock)
    ids = [await queue.enqueue(pickup(reference=f"R-{i}")) for i in range(3)]
    with caplog.at_level(logging.INFO, "gateway.mail"):
        assert await sender.run_once() == 0
        clock.now = sender.next_session_at
        assert await sender.run_once() == 0  # still down: logged once, not again
        assert sum("unusable" in r.getMessage() for r in caplog.records) == 1
        assert sender.diagnostics()["queue"]["pending"] == 3
        server = await SmtpServer(
            port=port, tls_context=server_context, credentials={"gateway": "s3cret-smtp-pass"}
        ).start()
        try:
            clock.now = sender.next_session_at
            assert await sender.run_once() == 3
            assert sum("reachable again" in r.getMessage() for r in caplog.records) == 1
            assert await sender.run_once() == 0
            assert sorted(r.data.count(b"Subject:") for r in server.received) == [1, 1, 1]
            assert len(server.received) == 3
        finally:
            await server.stop()
    for mail_id in ids:
        status = await queue.status(mail_id)
        assert status is not None and status.state is MailState.SENT
    await queue.close()
    # a restart sends nothing again
    queue2, sender2 = await open_sender(data_dir, port, tls_material, clock)
    assert await queue2.due(clock.now + 10**6) == []
    assert await sender2.run_once() == 0
    await queue2.close()


async def test_wrong_password_keeps_mails_pending(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    from gateway.secrets import SecretStore

    SecretStore(data_dir).set("smtp_password", "wrong")
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    mail_id = await queue.enqueue(pickup())
    assert await sender.run_once() == 0
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.PENDING
    assert "authentication refused" in (status.last_error or "") and "535" in (status.last_error or "")
    assert "wrong" not in (sender.last_error or "")
    await queue.close()


async def test_too_old_is_failed_without_asking_the_server(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock, max_age_s=3600)
    mail_id = await queue.enqueue(pickup())
    clock.now += 3601
    assert await sender.run_once() == 1
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.FAILED
    assert status.last_error == "not accepted within max_age_s (3600 s)"
    assert smtp.sessions == 0
    await queue.close()


async def test_plain_loopback_relay(data_dir: Path, tls_material: TlsMaterial, clock: Clock) -> None:
    relay = await SmtpServer().start()
    try:
        queue, sender = await open_sender(
            data_dir, relay.port, tls_material, clock, security="plain-loopback", username=None, password=None, tls={}
        )
        await queue.enqueue(pickup())
        assert await sender.run_once() == 1
        assert relay.received[0].tls is False
        await queue.close()
    finally:
        await relay.stop()


async def test_send_now_reports_the_refusal(smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial) -> None:
    from gateway.mail.sender import DeliveryError

    cfg = mail_config(smtp.port, tls_material)
    await send_now(cfg, data_dir, pickup())
    assert len(smtp.received) == 1
    smtp.replies["RCPT"].append("450 4.2.1 mailbox busy")  # this mail's: a DeliveryError (a 421 is the session's)
    with pytest.raises(DeliveryError) as err:
        await send_now(cfg, data_dir, pickup())
    assert err.value.code == 450 and not err.value.permanent
    with pytest.raises(SessionError, match=r"cannot connect to 127\.0\.0\.1:\d+, got .*Connect call failed"):
        await send_now(mail_config(free_port(), tls_material), data_dir, pickup())


async def test_a_session_broken_mid_batch_keeps_the_rest_pending_and_the_sent_ones_sent(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    ids = [await queue.enqueue(pickup(reference=f"R-{i}")) for i in range(3)]
    smtp.replies["MAIL"].extend(["", "DROP"])  # the first mail goes through, then the server vanishes
    assert await sender.run_once() == 1
    first = await queue.status(ids[0])
    assert first is not None and first.state is MailState.SENT and first.last_error is None
    for mail_id in ids[1:]:
        status = await queue.status(mail_id)
        assert status is not None and status.state is MailState.PENDING and status.attempts == 0
        assert status.next_attempt_at == sender.next_session_at
        assert "closed" in (status.last_error or "") or "broke" in (status.last_error or "")
    clock.now = sender.next_session_at
    assert await sender.run_once() == 2
    assert len(smtp.received) == 3
    await queue.close()


async def test_probe_checks_tls_and_authentication_without_sending(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial
) -> None:
    from gateway.mail.sender import probe
    from gateway.secrets import SecretStore

    await probe(mail_config(smtp.port, tls_material), data_dir)
    assert smtp.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"] and smtp.received == []
    SecretStore(data_dir).set("smtp_password", "wrong")
    with pytest.raises(SessionError, match="authentication refused by the server, got 535"):
        await probe(mail_config(smtp.port, tls_material), data_dir)


async def test_a_missing_secret_keeps_mails_pending_and_says_which(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock, password="secret:not_set")
    mail_id = await queue.enqueue(pickup())
    assert await sender.run_once() == 0
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.PENDING
    assert status.last_error == "secret:not_set: not in the secret store; set it with `edgegw secret set not_set`"
    assert smtp.sessions == 0
    await queue.close()


# --- some recipients refused at RCPT TO, the others taking the mail (aiosmtplib raises only for all) ---

STAFF = ("kanri@library.example.jp", "tantou@library.example.jp", "yakan@library.example.jp")


def alarm(to: tuple[str, ...] = STAFF) -> Mail:
    return Mail(
        to=to, subject="【警報】アップリンク停止", text="orion: 送信停止 300 s\n", purpose="alarm", reference="A-7"
    )


async def test_a_recipient_refused_for_now_is_retried_alone_and_then_refused_for_good(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    smtp.replies["RCPT"].extend(["", f"450 4.2.1 <{STAFF[1]}>: mailbox busy", ""])
    mail_id = await queue.enqueue(alarm())
    assert await sender.run_once() == 1

    [got] = smtp.received
    assert got.rcpt_to == [STAFF[0], STAFF[2]] and parsed(got.data)["To"] == ", ".join(STAFF)
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.PENDING and status.attempts == 1
    assert status.last_error == "***@library.example.jp: 450 4.2.1 <***@library.example.jp>: mailbox busy"
    assert status.next_attempt_at is not None and clock.now + 15 <= status.next_attempt_at <= clock.now + 30
    row = await queue.raw_row(mail_id)
    assert row is not None and row["payload"] is not None and STAFF[1].encode() not in row["payload"]
    assert row["marker"] == queue.marker(STAFF) and row["recipients"] == 3  # the mail as it was enqueued
    [pending] = await queue.due(status.next_attempt_at)
    assert pending.mail.to == (STAFF[1],) and pending.delivered == 2 and pending.refused == ()

    clock.now = status.next_attempt_at
    smtp.replies["RCPT"].append(f"550 5.1.1 <{STAFF[1]}>: User unknown")
    assert await sender.run_once() == 1
    assert len(smtp.received) == 1  # the two who got it did not get it again
    assert smtp.commands.count("RCPT") == 4  # three, then the refused one alone
    done = await queue.status(mail_id)
    assert done is not None and done.state is MailState.FAILED and done.attempts == 2
    assert done.last_error == "550 5.1.1 <***@library.example.jp>: User unknown; 2 other recipient(s) got it"
    row = await queue.raw_row(mail_id)
    assert row is not None and row["payload"] is None
    d = sender.diagnostics()
    assert (d["sent"], d["deferred"], d["failed"], d["refused_recipients"]) == (0, 1, 1, 0)
    clock.now += 86400
    assert await sender.run_once() == 0
    await queue.close()


async def test_a_recipient_refused_for_good_is_counted_and_logged_masked_and_the_others_get_it(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    smtp.replies["RCPT"].extend([f"550 5.1.1 <{STAFF[0]}>: User unknown", ""])
    mail_id = await queue.enqueue(alarm(STAFF[:2]))
    with caplog.at_level(logging.DEBUG):
        assert await sender.run_once() == 1
    assert [r.rcpt_to for r in smtp.received] == [[STAFF[1]]]
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.SENT
    refusal = "***@library.example.jp: 550 5.1.1 <***@library.example.jp>: User unknown"
    assert status.last_error == "refused permanently: " + refusal
    d = sender.diagnostics()
    assert (d["sent"], d["failed"], d["refused_recipients"], d["last_error"]) == (1, 0, 1, refusal)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"mail {mail_id} (alarm, A-7): a recipient refused permanently, the others got it: {refusal}"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(a in logged for a in STAFF)
    await queue.close()


async def test_refused_for_good_and_for_now_in_one_answer(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock)
    smtp.replies["RCPT"].extend([f"550 5.1.1 <{STAFF[0]}>: User unknown", "451 4.3.0 try later", ""])
    mail_id = await queue.enqueue(alarm())
    assert await sender.run_once() == 1
    assert [r.rcpt_to for r in smtp.received] == [[STAFF[2]]]
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.PENDING
    assert status.last_error == "***@library.example.jp: 451 4.3.0 try later"
    assert status.next_attempt_at is not None
    clock.now = status.next_attempt_at
    assert await sender.run_once() == 1  # the one refused for now takes it
    assert [r.rcpt_to for r in smtp.received] == [[STAFF[2]], [STAFF[1]]]
    done = await queue.status(mail_id)
    assert done is not None and done.state is MailState.SENT and done.attempts == 2
    # the permanent refusal of the first attempt is the mail's last word, also after the retry
    assert done.last_error == (
        "refused permanently: ***@library.example.jp: 550 5.1.1 <***@library.example.jp>: User unknown"
    )
    assert sender.diagnostics()["refused_recipients"] == 1
    await queue.close()


async def test_send_now_returns_the_recipients_refused_beside_those_that_took_it(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial
) -> None:
    smtp.replies["RCPT"].extend(["", "452 4.2.2 mailbox full"])
    refused = await send_now(mail_config(smtp.port, tls_material), data_dir, alarm(STAFF[:2]))
    assert [(r.address, r.code, r.permanent, str(r)) for r in refused] == [
        (STAFF[1], 452, False, "***@library.example.jp: 452 4.2.2 mailbox full")
    ]
    assert [r.rcpt_to for r in smtp.received] == [[STAFF[0]]]


async def test_a_narrowed_mail_that_grows_too_old_says_what_became_of_the_others(
    smtp: SmtpServer, data_dir: Path, tls_material: TlsMaterial, clock: Clock
) -> None:
    queue, sender = await open_sender(data_dir, smtp.port, tls_material, clock, max_age_s=3600)
    smtp.replies["RCPT"].extend([f"550 5.1.1 <{STAFF[0]}>: User unknown", "450 4.2.1 try later", ""])
    mail_id = await queue.enqueue(alarm())
    assert await sender.run_once() == 1
    clock.now += 3601
    assert await sender.run_once() == 1  # failed without asking the server
    assert smtp.commands.count("RCPT") == 3
    status = await queue.status(mail_id)
    assert status is not None and status.state is MailState.FAILED
    assert status.last_error == (
        "not accepted within max_age_s (3600 s); 1 other recipient(s) got it; "
        "refused permanently: ***@library.example.jp: 550 5.1.1 <***@library.example.jp>: User unknown"
    )
    await queue.close()
