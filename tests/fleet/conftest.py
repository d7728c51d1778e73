"""Fixtures for the fleet tests: an injected clock, a gateway config with [fleet], and polling for real I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import GatewayConfig, parse_config
from tests.mail.conftest import data_dir as data_dir  # the mail tests' fixtures: a real SMTP server, TLS material
from tests.mail.conftest import server_context as server_context
from tests.mail.conftest import smtp as smtp
from tests.mail.conftest import tls_material as tls_material

# 2026-07-01 00:00 Asia/Tokyo: a day boundary for the availability figure
T0 = 1_782_831_600.0


class Clock:
    """The fleet service's time: tests move it, nothing sleeps for it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(Gateway, "fleet_autotick", False)
    monkeypatch.setattr(Gateway, "fleet_clock", c)
    return c


@pytest.fixture
def fetch_on_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bundle fetches unspread, for tests of what a fetch does rather than when: the first on the first tick,
    then exactly every interval_s (tests/fleet/test_remote_fetch_spread.py tests the spread)."""
    from gateway.fleet import service

    monkeypatch.setattr(service, "FIRST_FETCH_WITHIN_S", 0.0)
    monkeypatch.setattr(service, "FETCH_JITTER", 0.0)


def gateway_config(tmp_path: Path, orion_url: str, fleet: dict[str, Any], **extra: Any) -> GatewayConfig:
    doc: dict[str, Any] = {
        "gateway": {"id": "gw-fleet", "data_dir": str(tmp_path / "data")},
        "adapters": [{"name": "gauges", "type": "simulated", "rate": 0.001}],
        "uplinks": [{"name": "orion", "type": "orion", "url": orion_url, "retry_initial_s": 0.05, "retry_max_s": 0.2}],
        "fleet": fleet,
    }
    doc.update(extra)
    return parse_config(doc)


async def until(check: Callable[[], Any], timeout_s: float = 10.0) -> None:
    """Wait for real I/O (an uplink's HTTP round trip, an SMTP session) to show its effect."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not check():
        if loop.time() > end:
            raise AssertionError(f"not reached within {timeout_s} s")
        await asyncio.sleep(0.02)
