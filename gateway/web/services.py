"""What the web UI's handlers reach: the stores, the gateway's control socket, the buffer (read-only), the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.accounts.store import AccountStore
from gateway.audit.log import AuditLog
from gateway.buffer.reader import BufferReader
from gateway.control.client import ControlClient
from gateway.web.config import WebConfig


@dataclass(frozen=True)
class WebServices:
    config: WebConfig
    gateway_config_path: Path
    control: ControlClient
    buffer: BufferReader
    accounts: AccountStore
    audit: AuditLog
    # Injected so that tests move time (idle timeout, lockout release) without sleeping.
    clock: Callable[[], float]


SERVICES = web.AppKey("services", WebServices)
