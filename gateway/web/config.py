"""The `[web]` section: where the admin UI listens, its TLS material, and the account and session rules."""

from __future__ import annotations

import enum
from pathlib import Path

from gateway.configbase import Field, Section


class Language(enum.Enum):
    JA = "ja"  # the source catalog: Japanese first
    EN = "en"


class WebConfig(Section):
    listen: tuple[str, ...] = Field(
        default=("0.0.0.0",),
        description="addresses the UI binds to; the office network's address only, where the box has several",
    )
    port: int = Field(default=8443, ge=1, le=65535, description="HTTPS port (above 1023: the UI needs no capability)")
    state_dir: Path | None = Field(
        default=None,
        description="accounts, audit log, sessions' keys and the self-signed certificate; default <data_dir>/web",
    )
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate chain; unset: self-signed, made at first start"
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    lockout_failures: int = Field(default=5, ge=1, le=100, description="consecutive failed logins that lock an account")
    lockout_minutes: float = Field(default=15, gt=0, le=24 * 60, description="how long a locked account stays locked")
    address_attempts_per_minute: int = Field(
        default=20, ge=1, le=10_000, description="login attempts one client address may make per minute, all accounts"
    )
    idle_timeout_minutes: float = Field(default=15, gt=0, le=24 * 60)
    session_lifetime_hours: float = Field(default=8, gt=0, le=7 * 24, description="absolute, whatever the activity")
    password_min_length: int = Field(default=12, ge=8, le=128)
    password_max_age_days: int = Field(
        default=182, ge=1, le=3650, description="admins and technicians must change their password this often"
    )
    audit_retention_days: int = Field(default=3 * 365, ge=30, le=20 * 365)
    language: Language = Language.JA  # for users who chose none and browsers that ask for neither

    def state_path(self, data_dir: Path) -> Path:
        return self.state_dir if self.state_dir is not None else data_dir / "web"
