"""The mail component inside a running gateway: AdapterContext.mail, the sender task, the control ops."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from gateway.control.protocol import ControlError
from gateway.mail import Mail, MailQueue
from gateway.secrets import SecretStore
from tests.control.running import config_text, eventually, running_gateway, until
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import OrionDouble, TlsMaterial


def with_mail(data_dir: Path, orion_url: str, port: int, material: TlsMaterial, rate: float = 0.001) -> str:
    return config_text(data_dir, orion_url, rate=rate) + (
        f"""
[mail]
host = "127.0.0.1"
port = {port}
username = "gateway"
password = "secret:smtp_password"
from_address = "gateway@library.example.jp"
from_name = "町立図書館"
timeout_s = 5

[mail.tls]
ca_file = "{material.ca_file}"
"""
    )


async def test_adapters_get_the_queue_the_sender_runs_and_the_control_ops_answer(
    smtp: SmtpServer, data_dir: Path, tmp_path: Path, tls_material: TlsMaterial, orion_double: OrionDouble
) -> None:
    text = with_mail(data_dir, orion_double.url, smtp.port, tls_material)
    async with running_gateway(tmp_path, orion_double.url, text=text) as gw:
        queue = gw.runtime.gateway.context.mail
        assert isinstance(queue, MailQueue)
        sent_id = await queue.enqueue(
            Mail(to=("patron@example.jp",), subject="受け取りのご案内", text="コード 123456", purpose="locker.pickup")
        )
        status = await eventually(
            lambda: gw.client.call("mail.status", id=sent_id), lambda s: s["state"] == "sent", "the mail sent"
        )
        assert status["domains"] == ["***@example.jp"] and "patron" not in str(status)
        assert len(smtp.received) == 1 and smtp.received[0].tls

        smtp.replies["RCPT"].append("550 5.1.1 <nobody@example.jp>: User unknown")
        failed_id = await queue.enqueue(Mail(to=("nobody@example.jp",), subject="s", text="t", purpose="alarm"))
        failures = await eventually(lambda: gw.client.call("mail.failures"), lambda f: len(f) == 1, "the failure")
        assert failures[0]["id"] == failed_id and failures[0]["purpose"] == "alarm"
        assert failures[0]["last_error"] == "550 5.1.1 <***@example.jp>: User unknown"
        assert await gw.client.call("mail.failures", purpose="locker.pickup") == []

        diagnostics = await gw.client.call("mail.status")
        assert queue.diagnostics() == diagnostics | {"enqueued": 2}
        assert diagnostics["sent"] == 1 and diagnostics["failed"] == 1 and diagnostics["connected"] is True
        with pytest.raises(ControlError) as exc:
            await gw.client.call("mail.status", id=999)
        assert exc.value.code == "not_found"
        doc = await gw.client.call("status")
        assert doc["mail"]["sent"] == 1
    # stopped: the queue was closed with the generation
    with pytest.raises(RuntimeError, match="mail queue is closed"):
        await queue.status(sent_id)


async def test_without_a_mail_section(tmp_path: Path, orion_double: OrionDouble) -> None:
    async with running_gateway(tmp_path, orion_double.url, rate=0.001) as gw:
        assert gw.runtime.gateway.context.mail is None
        with pytest.raises(ControlError) as exc:
            await gw.client.call("mail.failures")
        assert exc.value.code == "unavailable"
        assert exc.value.message == "mail: not configured, got no [mail] section; add one to send e-mail"


async def test_a_queue_whose_key_is_lost_keeps_its_mails_and_the_readings_go_on(
    smtp: SmtpServer, data_dir: Path, tmp_path: Path, tls_material: TlsMaterial, orion_double: OrionDouble
) -> None:
    queue = await MailQueue.open(data_dir)
    await queue.enqueue(Mail(to=("patron@example.jp",), subject="s", text="コード 123456", purpose="locker.pickup"))
    await queue.close()
    SecretStore(data_dir).set("mail.queue_key", Fernet.generate_key().decode())  # another key than the mail's
    text = with_mail(data_dir, orion_double.url, smtp.port, tls_material, rate=20.0)
    async with running_gateway(tmp_path, orion_double.url, text=text) as gw:
        assert gw.runtime.gateway.context.mail is None  # lockers and alarms say no mail can be sent
        doc = await gw.client.call("status")
        assert "are sealed under another key than secret:mail.queue_key" in doc["mail"]["error"]
        await until(lambda: len(orion_double.entities) > 0, "readings delivered without mail")
    assert smtp.received == []
