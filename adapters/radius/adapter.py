"""The `radius` adapter: the accounting receiver, the Wi-Fi log store's retention, per-AP usage readings."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from adapters.radius.config import RadiusConfig
from adapters.radius.server import RadiusAccountingServer
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.records import Emit, utc_now
from gateway.secrets import resolve
from gateway.wifilog.runner import SessionEventsOut, event_sinks, feeds, shut_down
from gateway.wifilog.store import WifiLogStore
from gateway.wifilog.usage import UsageCounter

__all__ = ["RadiusAdapter"]


class RadiusAdapter:
    config_model: ClassVar[type[AdapterConfig]] = RadiusConfig

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        assert isinstance(config, RadiusConfig)
        self.config = config
        self.context = context
        self.usage = UsageCounter(config.name)
        # kept across the supervisor's restarts: the session events still waiting go out after one
        self.events: SessionEventsOut | None = None
        self.server: RadiusAccountingServer | None = None

    async def run(self, emit: Emit) -> None:
        cfg = self.config
        secrets = {str(c.address): resolve(c.secret, self.context.data_dir).encode() for c in cfg.clients}
        store = await asyncio.to_thread(
            WifiLogStore,
            self.context.data_dir,
            retention_months=cfg.retention_months,
            gateway_id=self.context.gateway_id,
        )
        context = self.context.processor_context()
        on_event, self.events = event_sinks(cfg, cfg.name, context, self.usage, self.events)
        self.server = RadiusAccountingServer(store, secrets, clock=utc_now, on_event=on_event)
        try:
            await self.server.start(cfg.listen, cfg.port)
            await feeds(store, self.usage, self.events, emit, interval_s=cfg.usage_interval_min * 60, clock=utc_now)
        finally:
            await shut_down(self.server.close, store)

    def diagnostics(self) -> dict[str, Any]:
        diagnostics: dict[str, Any] = self.server.diagnostics() if self.server is not None else {"summary": "starting"}
        if self.events is not None:
            diagnostics["session_events"] = self.events.diagnostics()
        return diagnostics
