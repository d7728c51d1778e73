"""The control socket's fleet ops: a pushed config bundle, the alarms, safe mode, and the commissioning probe.

`fleet.config.offer` takes a signed bundle (as `edgegw config sign` writes it, or as a platform
command delivers it) and hands it to the fleet service, which verifies, applies, health-checks and
rolls back (gateway/fleet/remote.py). `fleet.probe` sends the Device entity now and waits until
every uplink has delivered after that moment: a test reading delivered and acknowledged, for
`edgegw commission`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from gateway.control import args as a
from gateway.control.protocol import UNAVAILABLE, ControlError
from gateway.control.target import ControlTarget

if TYPE_CHECKING:
    from gateway.fleet.service import FleetService


class FleetOps:
    def __init__(self, target: ControlTarget) -> None:
        self.target = target

    def _fleet(self) -> FleetService:
        fleet = self.target.gateway.fleet
        if fleet is None:
            raise ControlError(UNAVAILABLE, "fleet: not configured, got no [fleet] section; add one")
        return fleet

    async def op_offer(self, args: dict[str, Any]) -> dict[str, Any]:
        bundle = a.text(args, "bundle")
        return await self._fleet().offer(bundle.encode(), via=a.text(args, "via", "control"))

    async def op_alarms(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self._fleet().engine.summary()

    async def op_safe_mode_clear(self, args: dict[str, Any]) -> dict[str, Any]:
        """Forget the crash-loop history and reload: the adapters start again."""
        self._fleet().clear_safe_mode()
        errors = await self.target.reload()
        return {"reloaded": not errors, "errors": errors}

    async def op_probe(self, args: dict[str, Any]) -> dict[str, Any]:
        timeout_s = float(a.integer(args, "timeout_s", 30, lo=1, hi=600))
        fleet = self._fleet()
        gw = self.target.gateway
        start = time.time()
        await fleet.report_now()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(loop.last_delivery >= start for loop in gw.loops):
                break
            await asyncio.sleep(0.1)
        return {
            "uplinks": [
                {
                    "name": loop.config.name,
                    "delivered": loop.last_delivery >= start,
                    "seconds": round(loop.last_delivery - start, 3) if loop.last_delivery >= start else None,
                    "state": loop.state.value,
                    "last_error": loop.last_error,
                }
                for loop in gw.loops
            ]
        }
