"""Client TLS contexts for adapters that talk to TLS peers (a local MQTT broker, an HTTPS source)."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import model_validator

from gateway.configbase import Field, Section
from gateway.errors import AdapterError


class TlsFiles(Section):
    """An adapter's `tls` table: the CA that signed the peer and an optional client certificate."""

    ca_file: Path | None = Field(default=None, description="CA bundle that signed the peer; system CAs if unset")
    cert_file: Path | None = Field(default=None, description="client certificate for mutual TLS")
    key_file: Path | None = Field(default=None, description="client private key for mutual TLS")

    @model_validator(mode="after")
    def _pair(self) -> "TlsFiles":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together for mutual TLS; set both or neither")
        return self


def client_context(*, ca_file: str | Path | None, cert_file: str | Path | None, key_file: str | Path | None,
                   where: str) -> ssl.SSLContext:
    """System CAs plus `ca_file`, and a client certificate when both files are set; unreadable files
    are an AdapterError naming the adapter (`where`)."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file is not None and key_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise AdapterError(
            f"{where}.tls: cannot load the certificate files, got {exc}; check the paths and permissions",
            adapter=where,
        ) from None
    return context
