"""`python -m tests.gateway.bad_diagnostics run --config …`: the gateway with a test family whose diagnostics() is buggy.

`returns = "list"`: a list of lines instead of a dict; `returns = "generator"`: a dict holding a generator
(`{"devices": (d.name for d in …)}`), which the status document cannot copy. Both are a family's bug that
must cost that family its diagnostics, never the gateway.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, ClassVar

from gateway import registry
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.cli import main
from gateway.records import Emit


class BadDiagnosticsConfig(AdapterConfig):
    returns: str = "list"


class BadDiagnosticsAdapter:
    config_model: ClassVar[type[AdapterConfig]] = BadDiagnosticsConfig

    def __init__(self, config: BadDiagnosticsConfig, context: AdapterContext) -> None:
        self.returns = config.returns

    async def run(self, emit: Emit) -> None:
        await asyncio.Event().wait()

    def diagnostics(self) -> Any:
        if self.returns == "list":
            return ["devices online 3/4"]
        return {"devices": (name for name in ("pump-1", "pump-2"))}


_load = registry.load


def _with_bad_diagnostics(group: str, name: str) -> Any:
    if (group, name) == (registry.ADAPTER_GROUP, "test-bad-diagnostics"):
        return BadDiagnosticsAdapter
    return _load(group, name)


registry.load = _with_bad_diagnostics  # as tests/gateway/slow_stop.py adds its family

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
