"""The admin's TLS key (`[web] tls_key`) as admins hand it over: passphrase-protected, or the wrong file.

OpenSSL asked for a passphrase on the terminal and waited there for good (`edgegw web` started by hand),
failed with "([Errno 22] Invalid argument)" without a terminal (systemd), and answered a certificate given
as the key with "([SSL] PEM lib …)" (review F8). The key is now read first, and OpenSSL never prompts.
"""

from __future__ import annotations

import os
import select
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.errors import ConfigError
from gateway.web.certs import TlsMaterial, make_self_signed, material, server_context
from gateway.web.config import WebConfig
from tests.web.test_cli import free_port

ROOT = Path(__file__).resolve().parents[2]


def _admins(tmp_path: Path) -> TlsMaterial:
    """The admin's own certificate and key (made here as the self-signed ones are)."""
    return make_self_signed(tmp_path / "own", WebConfig(), hostname="office-gw", addresses=[])


def _encrypted(tls: TlsMaterial, form: serialization.PrivateFormat, path: Path) -> Path:
    key = serialization.load_pem_private_key(tls.key.read_bytes(), password=None)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, form, serialization.BestAvailableEncryption(b"pw")))
    return path


def _context(tmp_path: Path, cert: Path, key: Path) -> ssl.SSLContext:
    return server_context(material(WebConfig(tls_cert=cert, tls_key=key), tmp_path / "state"))


def _handshake(server: ssl.SSLContext, cafile: Path) -> bytes | None:
    """A TLS handshake between `server` and a client trusting `cafile`, in memory; the certificate served (DER)."""
    client = ssl.create_default_context(cafile=str(cafile))
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname="office-gw")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for name, side in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return c.getpeercert(binary_form=True)
    raise AssertionError("no handshake")


@pytest.mark.parametrize("form", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_a_passphrase_protected_key_says_so_and_how_to_decrypt_it(
    tmp_path: Path, form: serialization.PrivateFormat
) -> None:
    own = _admins(tmp_path)
    key = _encrypted(own, form, tmp_path / "enc-key.pem")
    with pytest.raises(ConfigError) as info:
        _context(tmp_path, own.cert, key)
    assert info.value.errors == [
        f"web.tls_key: '{key}' is passphrase-protected, got an encrypted private key; give an unencrypted key: "
        f"openssl pkey -in {key} -out <new key file>, chmod 600 it and set tls_key to it"
    ]


def test_a_certificate_given_as_the_key_is_named_as_such_and_one_with_its_key_serves(tmp_path: Path) -> None:
    own = _admins(tmp_path)
    with pytest.raises(ConfigError) as info:
        _context(tmp_path, own.cert, own.cert)
    assert info.value.errors == [
        f"web.tls_key: '{own.cert}' is not a PEM private key, got PEM blocks CERTIFICATE; give the certificate's "
        "private key in PEM (-----BEGIN PRIVATE KEY-----)"
    ]
    both = tmp_path / "both.pem"
    both.write_bytes(own.cert.read_bytes() + own.key.read_bytes())  # what some CAs' tools write: OpenSSL takes it
    served = _handshake(_context(tmp_path, own.cert, both), own.cert)
    assert served == x509.load_pem_x509_certificate(own.cert.read_bytes()).public_bytes(serialization.Encoding.DER)


def test_a_der_key_is_named_as_such(tmp_path: Path) -> None:
    own = _admins(tmp_path)
    der = tmp_path / "key.der"
    key = serialization.load_pem_private_key(own.key.read_bytes(), password=None)
    der.write_bytes(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(ConfigError) as info:
        _context(tmp_path, own.cert, der)
    assert info.value.errors == [
        f"web.tls_key: '{der}' is not a PEM private key, got {der.stat().st_size} bytes without a PEM block "
        "(a DER key converts with openssl pkey -inform DER); give the certificate's private key in PEM "
        "(-----BEGIN PRIVATE KEY-----)"
    ]


# OpenSSL asks on the controlling terminal (/dev/tty), not on stdin: the child makes the pty its own
CTTY = "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.argv[1], sys.argv[1:])"


def test_edgegw_web_started_from_a_terminal_never_waits_for_a_passphrase(tmp_path: Path) -> None:
    own = _admins(tmp_path)
    key = _encrypted(own, serialization.PrivateFormat.PKCS8, tmp_path / "enc-key.pem")
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[gateway]\nid = "gw-tls"\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[web]\nlisten = ["127.0.0.1"]\nport = {free_port()}\ntls_cert = "{own.cert}"\ntls_key = "{key}"\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:9"\n'
    )
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", CTTY, sys.executable, "-m", "gateway", "web", "--config", str(config)]
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60  # a prompt waits for good: the deadline is the failure
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal, it has exited
                    break
                if not chunk:
                    break
                seen += chunk
                if b"pass phrase" in seen:
                    os.write(master, b"\n")  # unblocks an old OpenSSL prompt; the assertions below fail
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    assert "pass phrase" not in text
    assert code == 2, text
    assert f"edgegw web: web.tls_key: '{key}' is passphrase-protected" in text
