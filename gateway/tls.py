"""The one `tls` table and the one client TLS context builder for every adapter and uplink.

Every family that talks to a TLS peer (the MQTT adapter and uplink, the http_poll adapter, the
Orion and NGSI-LD uplinks, the MQTT uplink's confirmation endpoint, OAuth2 token endpoints) embeds
`TlsSection` as its `tls` table and builds its context with `client_context`, so a technician meets
the same keys and the same error wording everywhere:

    <where>.tls.ca_file: cannot load a CA certificate, got '<path>' (<reason>)
    <where>.tls.cert_file: cannot load the client certificate and key, got '<cert>' / '<key>' (<reason>); <fix>
    <where>.tls.key_file: the private key is passphrase-protected, got an encrypted key in '<key>'; <fix>
    <where>.tls.ca_file: not a file, got a named pipe at '<path>'; name the PEM file
"""

from __future__ import annotations

import enum
import os
import ssl
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, field_validator, model_validator

from gateway.configbase import Field, NamedSection, Section
from gateway.errors import ConfigError

__all__ = ["TlsSection", "TlsVerify", "client_context", "tls_problems"]


class TlsVerify(enum.Enum):
    FULL = "full"  # certificate chain and host name
    OFF = "off"  # self-signed appliances on a closed lab network only; logged at WARNING on every start


class TlsSection(Section):
    """A `tls` table: the CA that signed the peer (system CAs if unset), an optional client certificate
    (mutual TLS) and whether the peer's certificate is checked at all."""

    ca_file: Path | None = Field(
        default=None, description="PEM CA bundle that signed the peer, trusted besides the system CAs"
    )
    cert_file: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (may also hold the key)"
    )
    key_file: Path | None = Field(default=None, description="PEM private key of cert_file, unencrypted")
    verify: TlsVerify = Field(default=TlsVerify.FULL, description='"full" (chain and host name) or "off" (lab only)')

    @field_validator("verify", mode="before")
    @classmethod
    def _legacy_bool(cls, value: Any) -> Any:
        # The HTTP uplinks' tables were written with `verify = true/false` before the key became a choice.
        if value is True:
            return TlsVerify.FULL.value
        if value is False:
            return TlsVerify.OFF.value
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TlsSection:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError(
                "key_file needs cert_file for mutual TLS, got only key_file; set cert_file to the client certificate"
            )
        if self.verify is TlsVerify.OFF and self.ca_file is not None:
            raise ValueError('ca_file is unused with verify = "off"; remove one of them')
        return self

    @property
    def checks_peer(self) -> bool:
        return self.verify is TlsVerify.FULL


def client_context(tls: TlsSection, where: str) -> ssl.SSLContext:
    """The client context `tls` asks for; an unreadable or mismatched file is a ConfigError naming the
    key under `where` (`uplinks.<name>`, `adapters.<name>`, `uplinks.<name>.confirm`)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    except ssl.SSLError as exc:  # pragma: no cover - a broken OpenSSL install, not a config problem
        raise ConfigError([f"{where}.tls: cannot create a TLS context, got {exc}"]) from None
    for field, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        kind = _not_a_file(path)
        if kind:
            raise ConfigError([f"{where}.tls.{field}: not a file, got {kind} at {str(path)!r}; name the PEM file"])
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(tls.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [f"{where}.tls.ca_file: cannot load a CA certificate, got {str(tls.ca_file)!r} ({exc})"]
            ) from None
    if tls.cert_file is not None:
        key = str(tls.key_file) if tls.key_file is not None else None
        got = repr(str(tls.cert_file)) + (f" / {key!r}" if key is not None else "")
        try:
            context.load_cert_chain(str(tls.cert_file), key, password=_no_passphrase(tls, where))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [
                    (
                        f"{where}.tls.cert_file: cannot load the client certificate and key, got {got} ({exc}); "
                        "both must be PEM and the key unencrypted"
                    )
                ]
            ) from None
    if tls.verify is TlsVerify.OFF:
        # check_hostname must go first: ssl refuses CERT_NONE while it is on.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


_KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def _not_a_file(path: Path | None) -> str:
    """What `path` is when OpenSSL must not be given it: a named pipe (or a device) would hold its read, and
    with it the event loop at a start, or check-config, the unit's ExecStartPre, for good. "" otherwise: a
    missing file or a directory is OpenSSL's own clear error."""
    if path is None:
        return ""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    return _KINDS.get(stat.S_IFMT(mode), "")


def _no_passphrase(tls: TlsSection, where: str) -> Callable[[], bytes]:
    """ssl's password callback. Without one OpenSSL asks for the passphrase on the terminal, where a gateway
    started by hand then waits with its event loop blocked (deaf to SIGTERM and the control socket), and
    under systemd it fails with a bare "[Errno 22] Invalid argument"."""
    key, field = (tls.key_file, "key_file") if tls.key_file is not None else (tls.cert_file, "cert_file")

    def refuse() -> bytes:
        raise ConfigError(
            [
                f"{where}.tls.{field}: the private key is passphrase-protected, got an encrypted key in '{key}'; "
                f"remove the passphrase: openssl pkey -in {key} -out key-plain.pem, chmod 600 key-plain.pem "
                f"and set {where}.tls.key_file to it"
            ]
        )

    return refuse


def tls_tables(section: BaseModel, where: str = "") -> Iterator[tuple[str, TlsSection]]:
    """Every `tls` table under `section`, with the `where` its runtime passes to `client_context`
    (`adapters.<name>`, `uplinks.<name>.confirm`, `mail`, `fleet.remote_config`)."""
    for field, value in section:
        here = f"{where}.{field}" if where else field
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, TlsSection):
                yield where, item
            elif isinstance(item, NamedSection):
                yield from tls_tables(item, f"{here}.{item.name}")
            elif isinstance(item, BaseModel):
                yield from tls_tables(item, here)


def tls_problems(config: BaseModel) -> list[str]:
    """What `client_context` would refuse at start, for every `tls` table of a loaded configuration: the
    files a table names are opened here, so check-config finds a missing, unreadable, mismatched or
    passphrase-protected one before the gateway does."""
    problems: list[str] = []
    for where, tls in tls_tables(config):
        try:
            client_context(tls, where)
        except ConfigError as exc:
            problems.extend(exc.errors)
    return problems
