"""A NAS in `clients` has its WARNING whatever the minute's budget (review 6): a flood of unknown addresses spends
the 20 WARNINGs of the minute, and a client's wrong secret one second later is still said at once. Real UDP from
many loopback addresses; the monotonic clock injected."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.radius import AccountingRecord, build_accounting_request
from adapters.radius.server import RadiusAccountingServer
from gateway.wifilog import WifiLogStore

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
LOGGER = "adapters.radius.server"


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_a_clients_wrong_secret_amid_a_flood_is_warned_of_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    srv = RadiusAccountingServer(store, {"127.0.0.7": b"s"}, clock=lambda: NOW, monotonic=lambda: mono[0])
    _, port = await srv.start("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    flood = []
    try:
        for n in range(25):
            flood.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            flood[-1].bind((f"127.0.6.{n + 1}", 0))
            flood[-1].sendto(b"x" * 20, ("127.0.0.1", port))
        await until(lambda: srv.counters["unknown_client"] == 25, "the flood")
        mono[0] = 1.0
        rec = AccountingRecord(
            status_type=1, session_id="S1", nas_identifier="ap1", calling_station_id="3c-22-fb-12-9a-0e"
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
            nas.bind(("127.0.0.7", 0))
            nas.sendto(build_accounting_request(1, rec, b"not-the-secret"), ("127.0.0.1", port))
            await until(lambda: srv.counters["bad_authenticator"] == 1, "the wrong secret")
    finally:
        for s in flood:
            s.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 21 and sum("127.0.6." in w for w in warnings) == 20
    assert warnings[20].startswith(
        "radius accounting: dropped a datagram from 127.0.0.7: radius Accounting-Request id 1: request authenticator "
        "does not match the shared secret"
    )
    await srv.close()
    store.close()
