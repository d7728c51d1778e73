"""What both Wi-Fi receivers share: the listen address rule, retention keys, and the periodic loop
(expire past-retention periods, emit per-AP usage)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from datetime import datetime

from gateway.configbase import Field, Section
from gateway.logs import component_logger
from gateway.records import Emit
from gateway.wifilog.store import WifiLogStore
from gateway.wifilog.usage import UsageCounter

__all__ = ["WifiLogOptions", "check_listen", "periodic"]

log = component_logger(__name__, "wifilog")


def check_listen(v: str) -> str:
    """A receiver binds one configured address: the Wi-Fi's own network, never every interface."""
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f"must be an IP address of this box, got {v!r}") from None
    if addr.is_unspecified:
        raise ValueError(f"must be one address of this box (the Wi-Fi network's), not every address, got {v!r}")
    return str(addr)


class WifiLogOptions(Section):
    """Keys of both receivers about the log store (the same store whichever receiver writes)."""

    retention_months: int = Field(
        default=12, ge=1, le=120, description="full months a period is kept after it ends; then it is crypto-erased"
    )
    usage_interval_min: float = Field(default=10.0, gt=0, le=1440, description="per-AP usage sent every N minutes")


async def periodic(
    store: WifiLogStore, usage: UsageCounter, emit: Emit, *, interval_s: float, clock: Callable[[], datetime]
) -> None:
    """Until cancelled: every `interval_s`, erase expired periods, then emit one usage reading per AP."""
    while True:
        certificates = await asyncio.to_thread(store.expire, clock())
        for cert in certificates:
            log.info("wifilog: erasure certificate for %s issued (%d records)", cert["period"], cert["records"])
        for reading in usage.readings(clock(), interval_s):
            await emit(reading)
        await asyncio.sleep(interval_s)
