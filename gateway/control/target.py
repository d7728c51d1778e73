"""What the control server drives: the running gateway across reloads (gateway.app.Runtime implements it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.config import GatewayConfig


class ControlTarget(Protocol):
    config_path: Path

    @property
    def gateway(self) -> Gateway:
        """The current generation; a new one after every reload, so ops ask for it on every request."""
        ...

    @property
    def config(self) -> GatewayConfig: ...

    async def reload(self, new: GatewayConfig | None = None) -> list[str]:
        """[] when reloaded, else the errors that refused it (the running generation unchanged)."""
        ...
