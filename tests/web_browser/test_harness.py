"""The harness itself: Chromium reaches a TLS page served from the background loop, in the language asked."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from selenium import webdriver

from tests.web_browser.harness import LoopSite, MovableClock, UiLoop, element, page_text


def self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
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
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx


def test_chromium_reads_a_tls_page_from_the_loop_thread_with_japanese_accept_language(
    tmp_path: Path, ui_loop: UiLoop, driver: webdriver.Chrome
) -> None:
    clock = MovableClock()

    async def make_app() -> web.Application:
        async def page(request: web.Request) -> web.Response:
            lang = request.headers.get("Accept-Language", "")
            body = (
                f'<!doctype html><meta charset="utf-8"><p id="lang">{lang}</p><p id="now">{clock():.0f}</p><p>水位</p>'
            )
            return web.Response(text=body, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", page)
        return app

    site = LoopSite(ui_loop, self_signed(tmp_path))
    site.start(make_app)
    try:
        before = clock()
        clock.advance(15 * 60)
        driver.get(site.url("/"))
        assert element(driver, "#lang").text.startswith("ja")
        assert float(element(driver, "#now").text) >= before + 15 * 60 - 1
        assert "水位" in page_text(driver)
    finally:
        site.stop()
