"""The `wifi_syslog` adapter: association lines from APs into the Wi-Fi log store, per-AP usage readings."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, ClassVar

from adapters.wifi_syslog.config import WifiSyslogConfig
from adapters.wifi_syslog.receiver import SyslogReceiver
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.records import Emit, utc_now
from gateway.wifilog.runner import SessionEventsOut, event_sinks, feeds, shut_down
from gateway.wifilog.store import WifiLogStore
from gateway.wifilog.usage import UsageCounter

__all__ = ["WifiSyslogAdapter"]


class WifiSyslogAdapter:
    config_model: ClassVar[type[AdapterConfig]] = WifiSyslogConfig

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        assert isinstance(config, WifiSyslogConfig)
        self.config = config
        self.context = context
        self.usage = UsageCounter(config.name, session_idle_s=config.max_session_hours * 3600)
        # kept across the supervisor's restarts: the session events still waiting go out after one
        self.events: SessionEventsOut | None = None
        self.receiver: SyslogReceiver | None = None

    async def run(self, emit: Emit) -> None:
        cfg = self.config
        store = await asyncio.to_thread(
            WifiLogStore,
            self.context.data_dir,
            retention_months=cfg.retention_months,
            gateway_id=self.context.gateway_id,
        )
        allowed = frozenset(str(a) for a in cfg.senders) or None
        context = self.context.processor_context()
        on_event, self.events = event_sinks(cfg, cfg.name, context, self.usage, self.events)
        self.receiver = SyslogReceiver(
            store,
            clock=utc_now,
            allowed=allowed,
            on_event=on_event,
            max_session=timedelta(hours=cfg.max_session_hours),
        )
        try:
            if cfg.udp_port is not None:
                await self.receiver.start_udp(cfg.listen, cfg.udp_port)
            if cfg.tcp_port is not None:
                await self.receiver.start_tcp(cfg.listen, cfg.tcp_port)
            await feeds(store, self.usage, self.events, emit, interval_s=cfg.usage_interval_min * 60, clock=utc_now)
        finally:
            await shut_down(self.receiver.close, store)

    def diagnostics(self) -> dict[str, Any]:
        diagnostics: dict[str, Any] = (
            self.receiver.diagnostics() if self.receiver is not None else {"summary": "starting"}
        )
        if self.receiver is not None:
            diagnostics["usage"] = self.usage.diagnostics()
        if self.events is not None:
            diagnostics["session_events"] = self.events.diagnostics()
        return diagnostics
