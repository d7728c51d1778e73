"""Fixtures: a real SMTP server on loopback (aiosmtpd, tests/mail/smtp_server.py), TLS material, a mail config."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.mail import MailConfig
from gateway.secrets import SecretStore
from tests.mail.smtp_server import SmtpServer
from tests.support.orion_double import TlsMaterial, make_tls_material

PASSWORD = "s3cret-smtp-pass"


class Clock:
    """Injected time: tests move it, nothing sleeps."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def server_context(tls_material: TlsMaterial) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls_material.server_cert), str(tls_material.server_key))
    return ctx


@pytest.fixture
async def smtp(server_context: ssl.SSLContext) -> AsyncIterator[SmtpServer]:
    """STARTTLS offered, AUTH PLAIN required (after TLS), as a submission server on port 587 is."""
    server = await SmtpServer(tls_context=server_context, credentials={"gateway": PASSWORD}).start()
    yield server
    await server.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    SecretStore(d).set("smtp_password", PASSWORD)
    return d


@pytest.fixture
def clock() -> Clock:
    return Clock()


def mail_config(port: int, material: TlsMaterial, **over: Any) -> MailConfig:
    doc: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
        "username": "gateway",
        "password": "secret:smtp_password",
        "from_address": "gateway@library.example.jp",
        "from_name": "町立図書館",
        "timeout_s": 5,
        "retry_initial_s": 30,
        "retry_cap_s": 600,
        "tls": {"ca_file": str(material.ca_file)},
    }
    doc.update(over)
    return MailConfig.model_validate(doc)
