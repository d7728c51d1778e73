"""The test SMTP server (aiosmtpd) refuses what a submission server refuses, so a sender that passes here passes there."""

from __future__ import annotations

import ssl

import aiosmtplib
import pytest

from tests.mail.conftest import PASSWORD
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import TlsMaterial


def client_context(material: TlsMaterial) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(material.ca_file))


async def test_starttls_submission_refuses_mail_before_tls_and_auth(
    smtp: SmtpServer, tls_material: TlsMaterial
) -> None:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=smtp.port, start_tls=False, tls_context=client_context(tls_material)
    )
    await client.connect()
    try:
        await client.ehlo()
        assert client.supports_extension("starttls") and not client.supports_extension("auth")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as before_tls:
            await client.sendmail("gw@example.jp", ["p@example.jp"], b"Subject: x\r\n\r\nx\r\n")
        assert before_tls.value.code == 530
        await client.starttls()
        await client.ehlo()
        assert client.supports_extension("auth") and "PLAIN" in client.esmtp_extensions["auth"].upper()
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as before_auth:
            await client.sendmail("gw@example.jp", ["p@example.jp"], b"Subject: x\r\n\r\nx\r\n")
        assert before_auth.value.code == 530
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as wrong:
            await client.login("gateway", "wrong")
        assert wrong.value.code == 535
        await client.login("gateway", PASSWORD)
        await client.sendmail("gw@example.jp", ["p@example.jp"], b"Subject: x\r\n\r\nx\r\n")
    finally:
        await client.quit()
    [got] = smtp.received
    assert got.tls and got.user == "gateway" and got.rcpt_to == ["p@example.jp"]
    assert got.data == b"Subject: x\r\n\r\nx\r\n"
    assert smtp.commands.count("MAIL") == 3 and smtp.sessions == 1


async def test_smtps_requires_auth_and_a_relay_offers_none(
    server_context: ssl.SSLContext, tls_material: TlsMaterial
) -> None:
    smtps = await SmtpServer(tls_context=server_context, smtps=True, credentials={"gateway": PASSWORD}).start()
    try:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=smtps.port, use_tls=True, tls_context=client_context(tls_material)
        )
        await client.connect()
        await client.ehlo()
        assert not client.supports_extension("starttls") and client.supports_extension("auth")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as before_auth:
            await client.sendmail("gw@example.jp", ["p@example.jp"], b"Subject: x\r\n\r\nx\r\n")
        assert before_auth.value.code == 530
        await client.login("gateway", PASSWORD)
        await client.sendmail("gw@example.jp", ["p@example.jp"], b"Subject: x\r\n\r\nx\r\n")
        await client.quit()
        assert [(r.tls, r.user) for r in smtps.received] == [(True, "gateway")]
    finally:
        await smtps.stop()
    relay = await SmtpServer().start()
    try:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
        await client.connect()
        await client.ehlo()
        assert not client.supports_extension("auth") and not client.supports_extension("starttls")
        rcpt = await client.execute_command(b"RCPT", b"TO:<p@example.jp>")
        assert rcpt.code == 503  # RCPT before MAIL
        await client.quit()
        assert relay.received == []
    finally:
        await relay.stop()
