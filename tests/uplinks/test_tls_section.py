"""The one `tls` table and context builder: its checks and each of its error texts, once."""

from __future__ import annotations

import concurrent.futures
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import ConfigError
from gateway.tls import TlsSection, TlsVerify, client_context
from tests.uplinks_mqtt.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def problem(**table: Any) -> str:
    with pytest.raises(ValidationError) as info:
        TlsSection.model_validate(table)
    [error] = info.value.errors()
    return str(error["msg"])


def test_verify_is_a_choice_and_the_old_booleans_still_work() -> None:
    assert TlsSection().verify is TlsVerify.FULL
    assert TlsSection.model_validate({"verify": "off"}).verify is TlsVerify.OFF
    # the HTTP uplinks' tables said `verify = true/false` before
    assert TlsSection.model_validate({"verify": True}).verify is TlsVerify.FULL
    assert TlsSection.model_validate({"verify": False}).verify is TlsVerify.OFF


def test_inconsistent_tables_are_refused_with_the_fix() -> None:
    assert problem(key_file="/etc/edgegw/c.key") == (
        "Value error, key_file needs cert_file for mutual TLS, got only key_file; set cert_file to the client certificate"
    )
    assert problem(ca_file="/etc/edgegw/ca.pem", verify="off") == (
        'Value error, ca_file is unused with verify = "off"; remove one of them'
    )


def test_a_certificate_may_carry_its_key(pki: Pki, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
    context = client_context(TlsSection(ca_file=pki.ca_file, cert_file=bundle), "uplinks.x")
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_verify_off_checks_nothing(pki: Pki) -> None:
    context = client_context(TlsSection(verify=TlsVerify.OFF), "adapters.x")
    assert context.verify_mode is ssl.CERT_NONE and not context.check_hostname


def test_unreadable_ca_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError) as info:
        client_context(TlsSection(ca_file=missing), "adapters.river")
    expected = f"adapters.river.tls.ca_file: cannot load a CA certificate, got '{missing}' ([Errno 2] No such file or directory)"
    assert info.value.errors == [expected]


def test_mismatched_client_key(pki: Pki) -> None:
    with pytest.raises(ConfigError) as info:
        client_context(TlsSection(cert_file=pki.client_cert, key_file=pki.server_key), "uplinks.pref.confirm")
    [line] = info.value.errors
    assert line.startswith(
        f"uplinks.pref.confirm.tls.cert_file: cannot load the client certificate and key, got "
        f"'{pki.client_cert}' / '{pki.server_key}' ("
    )
    assert line.endswith("); both must be PEM and the key unencrypted")


@pytest.mark.parametrize("field", ["ca_file", "cert_file", "key_file"])
def test_a_named_pipe_is_refused_not_read(pki: Pki, tmp_path: Path, field: str) -> None:
    """OpenSSL blocked reading a FIFO for good: the gateway's start (the event loop with it) and check-config,
    the unit's ExecStartPre, hung. The test reads in a thread it can give up on."""
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    table: dict[str, Any] = {"ca_file": pki.ca_file, "cert_file": pki.client_cert, "key_file": pki.client_key}
    table[field] = fifo
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(client_context, TlsSection.model_validate(table), "uplinks.pref")
        try:
            with pytest.raises(ConfigError) as info:
                future.result(timeout=10)
        finally:
            if not future.done():  # the old code: let its read end so the pool can shut down
                with open(fifo, "wb"):
                    pass
    assert info.value.errors == [
        f"uplinks.pref.tls.{field}: not a file, got a named pipe at '{fifo}'; name the PEM file"
    ]
