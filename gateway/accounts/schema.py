"""Forward migrations for the accounts and the audit log: the shared helper in gateway.storage.schema."""

from __future__ import annotations

from gateway.storage.schema import migrate

__all__ = ["migrate"]
