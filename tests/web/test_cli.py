"""`edgegw web` as a process: HTTPS up, URL and one-time setup link printed, fingerprint, clean SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import socket
import ssl
import sys
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.web.certs import CERT_FILE
from gateway.web.cli import urls

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, port: int) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
id = "web-test"
data_dir = "{data}"

[web]
listen = ["127.0.0.1"]
port = {port}

[[uplinks]]
name = "platform"
type = "mqtt"
host = "127.0.0.1"
port = 1
format = "ngsi-v2"
""",
        encoding="utf-8",
    )
    return path


async def edgegw(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )


async def test_edgegw_web_serves_prints_setup_link_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    proc = await edgegw("web", "--config", str(config))
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        second = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert first == f"edgegw web: listening on https://127.0.0.1:{port}/\n"
        match = re.fullmatch(
            rf"edgegw web: no admin yet; create the first one within 1 hour at "
            rf"(https://127\.0\.0\.1:{port}/setup/[A-Za-z0-9_-]{{43}}) \(or on the box: edgegw user add NAME --role admin\)\n",
            second,
        )
        assert match, second
        cert_path = tmp_path / "data" / "web" / CERT_FILE
        trust = ssl.create_default_context(cafile=str(cert_path))
        # unsafe: the jar keeps cookies of an IP-address host, as a browser does
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(match.group(1), ssl=trust) as response:
                assert response.status == 200
                assert 'id="setup-form"' in await response.text()
            async with session.post(match.group(1), data={"name": "x"}, ssl=trust, allow_redirects=False) as response:
                assert response.status == 403  # no CSRF token
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        journal = (await proc.stderr.read()).decode()
        assert "GET /setup/… 200" not in journal  # a page read is not an event worth an SD card's write
        assert "127.0.0.1 POST /setup/… 403" in journal  # a refused change is, without the token
        assert journal.count(match.group(1).rsplit("/", 1)[1]) == 1  # only the setup line itself
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    shown = ":".join(digest[i : i + 2] for i in range(0, 64, 2))
    fp = await edgegw("web", "fingerprint", "--config", str(config))
    out, _ = await fp.communicate()
    assert fp.returncode == 0
    assert out.decode() == f"SHA-256 {shown}  (self-signed, {cert_path})\n"
    assert shown.replace(":", " ") in journal  # the fingerprint at start, readable in the journal


async def test_fingerprint_before_first_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    proc = await edgegw("web", "fingerprint", "--config", str(config))
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode().startswith("edgegw web fingerprint: ")
    assert "`edgegw web` makes it at first start" in err.decode()


def test_urls() -> None:
    assert urls(("192.168.1.5", "fd00::5"), 8443) == ["https://192.168.1.5:8443/", "https://[fd00::5]:8443/"]
    assert urls(("10.0.0.1",), 443) == ["https://10.0.0.1/"]
    shown = urls(("0.0.0.0",), 8443, hostname="gw-01")
    assert shown[-1] == "https://gw-01:8443/"
    assert all("[" not in url for url in shown)  # an IPv4 wildcard is not reachable over IPv6
    # nor an IPv6 one over IPv4: its socket is IPv6-only, as asyncio made it for TCPSite
    v6 = urls(("::",), 8443, hostname="gw-01")
    assert v6[-1] == "https://gw-01:8443/"
    assert all(url.startswith("https://[") for url in v6[:-1]), v6
