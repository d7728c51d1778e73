"""A passphrase-protected client key is refused with the fix, never asked for on the terminal.

OpenSSL, given no password callback, reads the passphrase from the controlling terminal: a gateway started
by hand then hung in `client_context`, its event loop blocked. So the check runs in a child process whose
controlling terminal is a pty of this test: a prompt there is seen (and the child killed) instead of the
test waiting on it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.uplinks_mqtt.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]

# Takes the pty on fd 0 as its controlling terminal (it leads a session of its own), then reports
# what client_context did with each table, one JSON line each.
CHILD = """
import fcntl, json, sys, termios
from pathlib import Path
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
from gateway.errors import ConfigError
from gateway.tls import TlsSection, client_context
for where, table in json.loads(sys.argv[1]):
    try:
        client_context(TlsSection.model_validate(table), where)
        print(json.dumps([where, "built"]), flush=True)
    except ConfigError as exc:
        print(json.dumps([where, exc.errors]), flush=True)
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def encrypted(pki: Pki, path: Path) -> Path:
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"field-passphrase"),
        )
    )
    return path


def on_a_terminal(script: str, *args: str, deadline_s: float = 10.0) -> str:
    """Everything the child wrote to its terminal; a child still running at the deadline is killed."""
    master, slave = os.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    end = time.monotonic() + deadline_s
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child has closed its side of the pty
                break
            if not chunk:
                break
            out += chunk
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        os.close(master)
    return out.decode(errors="replace").replace("\r\n", "\n")


def test_an_encrypted_key_is_refused_with_the_fix_not_prompted_for(pki: Pki, tmp_path: Path) -> None:
    key = encrypted(pki, tmp_path / "client-key.pem")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.client_cert.read_bytes() + key.read_bytes())
    started = time.monotonic()
    tables = [
        ("uplinks.orion", {"cert_file": str(pki.client_cert), "key_file": str(key)}),
        ("adapters.river", {"cert_file": str(bundle)}),  # the key inside the certificate file
        ("uplinks.plain", {"cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}),
    ]
    text = on_a_terminal(CHILD, json.dumps(tables))
    assert "pass phrase" not in text
    assert [json.loads(line) for line in text.splitlines()] == [
        [
            "uplinks.orion",
            [
                f"uplinks.orion.tls.key_file: the private key is passphrase-protected, got an encrypted key in "
                f"'{key}'; remove the passphrase: openssl pkey -in {key} -out key-plain.pem, chmod 600 key-plain.pem "
                "and set uplinks.orion.tls.key_file to it"
            ],
        ],
        [
            "adapters.river",
            [
                f"adapters.river.tls.cert_file: the private key is passphrase-protected, got an encrypted key in "
                f"'{bundle}'; remove the passphrase: openssl pkey -in {bundle} -out key-plain.pem, chmod 600 "
                "key-plain.pem and set adapters.river.tls.key_file to it"
            ],
        ],
        ["uplinks.plain", "built"],  # an unencrypted key never reaches the callback
    ]
    assert time.monotonic() - started < 5


def test_a_prompt_on_the_childs_terminal_is_seen() -> None:
    """The harness itself: what the child writes to /dev/tty reaches the test, so the test above cannot pass
    with OpenSSL prompting somewhere unseen."""
    script = (
        "import fcntl, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "tty = open('/dev/tty', 'w'); tty.write('Enter PEM pass phrase:'); tty.flush()"
    )
    assert on_a_terminal(script) == "Enter PEM pass phrase:"
