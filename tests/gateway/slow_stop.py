"""`python -m tests.gateway.slow_stop run --config …`: the gateway with a test family whose stop takes seconds.

Like a device adapter that closes its session politely (a logout, a last write) when told to stop: a
reload waits for it (within the stop's deadline), which makes a reload slow for real without a backlog
of millions of rows.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, ClassVar

from gateway import registry
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.cli import main
from gateway.records import Emit


class SlowStopConfig(AdapterConfig):
    stop_s: float = 4.0


class SlowStopAdapter:
    config_model: ClassVar[type[AdapterConfig]] = SlowStopConfig

    def __init__(self, config: SlowStopConfig, context: AdapterContext) -> None:
        self.stop_s = config.stop_s

    async def run(self, emit: Emit) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(self.stop_s)  # the polite goodbye; cancelled once, so it runs to its end
            raise


_load = registry.load


def _with_slow_stop(group: str, name: str) -> Any:
    return SlowStopAdapter if (group, name) == (registry.ADAPTER_GROUP, "test-slow-stop") else _load(group, name)


registry.load = _with_slow_stop  # as tests/adapters/scanner/gateway_with_scanner.py adds its family

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
