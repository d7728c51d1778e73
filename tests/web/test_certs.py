"""The UI's TLS material: the self-signed certificate's names, key, lifetime and fingerprint; a real handshake."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.errors import ConfigError
from gateway.web.certs import CERT_FILE, KEY_FILE, make_self_signed, material, server_context
from gateway.web.config import WebConfig

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def sans(path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [str(a) for a in ext.get_values_for_type(x509.IPAddress)]


def test_self_signed_for_the_box_names_and_addresses(tmp_path: Path) -> None:
    tls = make_self_signed(
        tmp_path, WebConfig(), now=NOW, hostname="gw-01", addresses=["192.168.1.10", "fe80::1%eth0", "10.0.0.2"]
    )
    dns, ips = sans(tls.cert)
    assert dns == ["gw-01", "gw-01.local", "localhost"]
    assert ips == ["127.0.0.1", "::1", "192.168.1.10", "10.0.0.2"]  # link-local left out: it needs a zone
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert cert.not_valid_after_utc - NOW == dt.timedelta(days=3650)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    assert tls.fingerprint == ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    assert tls.self_signed


def test_listen_addresses_name_the_certificate(tmp_path: Path) -> None:
    tls = make_self_signed(
        tmp_path, WebConfig(listen=("192.168.5.7",)), now=NOW, hostname="gw-02", addresses=["10.9.9.9"]
    )
    _, ips = sans(tls.cert)
    assert ips == ["127.0.0.1", "::1", "192.168.5.7"]
    assert all(ipaddress.ip_address(a) for a in ips)


def test_made_once_then_reused(tmp_path: Path) -> None:
    first = material(WebConfig(), tmp_path)
    again = material(WebConfig(), tmp_path)
    assert first.fingerprint == again.fingerprint
    with pytest.raises(FileNotFoundError):
        material(WebConfig(), tmp_path / "elsewhere", create=False)


def test_a_pair_left_empty_by_a_crash_is_made_again_and_the_files_are_written_whole(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"")  # an older release, killed between creating the files and writing them
    (tmp_path / CERT_FILE).write_bytes(b"")
    tls = material(WebConfig(), tmp_path)
    server_context(tls)  # loads: TLS works again instead of failing at every start
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([KEY_FILE, CERT_FILE])  # no temporary file left
    assert material(WebConfig(), tmp_path).fingerprint == tls.fingerprint  # and kept from then on


def test_admins_certificate(tmp_path: Path) -> None:
    own = make_self_signed(tmp_path / "own", WebConfig(), now=NOW, hostname="office-gw", addresses=[])
    tls = material(WebConfig(tls_cert=own.cert, tls_key=own.key), tmp_path / "state")
    assert tls.fingerprint == own.fingerprint and not tls.self_signed
    assert not (tmp_path / "state" / CERT_FILE).exists()
    with pytest.raises(ConfigError) as exc:
        material(WebConfig(tls_cert=own.cert), tmp_path / "state")
    assert exc.value.errors == ["web.tls_cert: tls_cert and tls_key go together, got only one of them"]


async def test_handshake_verifies_against_the_certificate(tmp_path: Path) -> None:
    tls = material(WebConfig(listen=("127.0.0.1",)), tmp_path)
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock, ssl_context=server_context(tls)).start()
    try:
        trust = ssl.create_default_context(cafile=str(tls.cert))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{port}/", ssl=trust) as response:
                assert await response.text() == "ok"
            async with session.get(f"https://localhost:{port}/", ssl=trust) as response:
                assert response.status == 200
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"https://127.0.0.1:{port}/", ssl=ssl.create_default_context())
    finally:
        await runner.cleanup()
