"""A real aiohttp server on 127.0.0.1 port 0 that serves a scripted document and records each request."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(kw_only=True)
class Request:
    headers: dict[str, str]
    query: dict[str, str]
    at: float  # time.monotonic() when it arrived


@dataclass(kw_only=True)
class DocServer:
    """What the next GET gets: `body` with `status`, optional validators, optional `delay_s`."""

    body: bytes = b"{}"
    status: int = 200
    content_type: str = "application/json"
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    honour_conditional: bool = True
    delay_s: float = 0.0
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Request(headers=dict(request.headers), query=dict(request.query), at=time.monotonic()))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        headers: dict[str, str] = {}
        if self.etag is not None:
            headers["ETag"] = self.etag
        if self.last_modified is not None:
            headers["Last-Modified"] = self.last_modified
        if self.honour_conditional and self.status == 200:
            inm = request.headers.get("If-None-Match")
            ims = request.headers.get("If-Modified-Since")
            if (inm is not None and inm == self.etag) or (
                inm is None and ims is not None and ims == self.last_modified
            ):
                return web.Response(status=304, headers=headers)
        ctype = self.content_type + (f"; charset={self.charset}" if self.charset else "")
        return web.Response(status=self.status, body=self.body, headers={**headers, "Content-Type": ctype})

    def wait_requests(self, n: int) -> Callable[[], bool]:
        return lambda: len(self.requests) >= n


@asynccontextmanager
async def serve(
    server: DocServer, path: str = "/river.json", ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[DocServer]:
    app = web.Application()
    app.router.add_get(path, server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"{'https' if ssl_context else 'http'}://{host}:{port}{path}"
    try:
        yield server
    finally:
        await runner.cleanup()


async def wait_for(predicate: Callable[[], bool], *, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, written under `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgegw test server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
