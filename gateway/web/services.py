"""What the web UI's handlers reach: the stores, the gateway's control socket, the buffer (read-only), the clock."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from gateway.accounts.store import AccountStore
from gateway.audit.log import AuditLog
from gateway.buffer.reader import BufferReader
from gateway.web.config import WebConfig


class GatewayControl(Protocol):
    """The gateway's control socket as the pages call it: gateway.web.control_pool.ControlPool in `edgegw web`
    (a ControlClient, one connection, will do where nothing runs at once)."""

    async def call(self, op: str, **args: Any) -> Any: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class WebServices:
    config: WebConfig
    gateway_config_path: Path
    control: GatewayControl
    buffer: BufferReader
    accounts: AccountStore
    audit: AuditLog
    # Injected so that tests move time (idle timeout, lockout release) without sleeping.
    clock: Callable[[], float]
    # Signs the forms' CSRF tokens (gateway.web.formtoken); `edgegw web` reads it from its state directory
    # (gateway.web.formkey), so that a form open across a restart is known again. Random per process otherwise.
    form_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)


SERVICES = web.AppKey("services", WebServices)
