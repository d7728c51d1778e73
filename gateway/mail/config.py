"""The `[mail]` section: the SMTP server, how the connection is secured, and the sender's identity.

Validated without touching the network. The password is a secret reference (`secret:<name>` or
`env:<VAR>`), resolved only when a connection is made.
"""

from __future__ import annotations

import enum
import ipaddress

from pydantic import model_validator

from gateway.configbase import NOT_ONE_LINE, Field, Section
from gateway.secrets import SecretRef
from gateway.tls import TlsSection

__all__ = ["MailConfig", "MailSecurity"]

_LOOPBACK = ("localhost",)


class MailSecurity(enum.Enum):
    STARTTLS = "starttls"  # plain connect, then STARTTLS is required: a server without it is refused
    SMTPS = "smtps"  # TLS from the first byte (port 465)
    PLAIN_LOOPBACK = "plain-loopback"  # no TLS, allowed only to a relay on this box (127.0.0.1 / ::1)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MailConfig(Section):
    host: str = Field(description="SMTP server host name or address", min_length=1, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535, description="default 587 (starttls), 465 (smtps), 25")
    security: MailSecurity = Field(
        default=MailSecurity.STARTTLS,
        description='"starttls" (required, never falls back to clear), "smtps", '
        'or "plain-loopback" (a relay on 127.0.0.1/::1 only)',
    )
    username: str | None = Field(default=None, min_length=1, description="SMTP AUTH user; needs password")
    password: SecretRef | None = Field(default=None, description='"secret:<name>" or "env:<VAR>", never in clear')
    from_address: str = Field(description="envelope sender and From address", pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    from_name: str = Field(default="", max_length=200, description="display name in From (UTF-8 allowed)")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="per SMTP command")
    retry_initial_s: float = Field(default=30.0, gt=0, description="first retry delay after a transient failure")
    retry_cap_s: float = Field(default=1800.0, gt=0, description="longest retry delay")
    max_age_s: float = Field(
        default=7 * 86400.0, gt=0, description="a mail still not accepted after this long is marked failed"
    )
    tls: TlsSection = TlsSection()

    @model_validator(mode="after")
    def _consistent(self) -> MailConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together, got only one; set both or neither")
        if self.security is MailSecurity.PLAIN_LOOPBACK and not _is_loopback(self.host):
            raise ValueError(
                f'security "plain-loopback" is only for a relay on this box, got host {self.host!r}; '
                'use "starttls" or "smtps", or host = "127.0.0.1"'
            )
        for key in ("from_name", "from_address"):
            # they go in the From header of every mail: a line break there would break each one
            bad = NOT_ONE_LINE.search(getattr(self, key))
            if bad is not None:
                raise ValueError(
                    f"{key} must be one line without control characters, "
                    f"got U+{ord(bad.group()):04X} at character {bad.start() + 1}"
                )
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {MailSecurity.STARTTLS: 587, MailSecurity.SMTPS: 465, MailSecurity.PLAIN_LOOPBACK: 25}[self.security]
