"""The journal is not flooded by NASes in trouble (review 3, finding 5b): one NAS alternating valid requests and
a wrong secret is one spell, and datagrams from more addresses than are remembered get at most 20 WARNINGs a
minute, then one line saying how many senders were left out. Real UDP from many loopback addresses."""

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
from gateway.logs import SenderSpells, SpellBudget, component_logger
from gateway.wifilog import WifiLogStore

SECRET = b"s"
NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
LOGGER = "adapters.radius.server"


def request(ident: int, secret: bytes = SECRET) -> bytes:
    rec = AccountingRecord(
        status_type=1, session_id=f"S{ident}", nas_identifier="ap1", calling_station_id="3c-22-fb-12-9a-0e"
    )
    return build_accounting_request(ident % 256, rec, secret)


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def test_a_nas_alternating_valid_requests_and_a_wrong_secret_is_one_spell(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    srv = RadiusAccountingServer(store, {"127.0.0.1": SECRET}, clock=lambda: NOW, monotonic=lambda: mono[0])
    _, port = await srv.start("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        for n in range(200):
            mono[0] = n
            await loop.sock_sendto(sock, request(n), ("127.0.0.1", port))
            await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)  # answered
            await loop.sock_sendto(sock, request(n, b"not-the-secret"), ("127.0.0.1", port))
        await until(lambda: srv.counters["bad_authenticator"] == 200, "200 wrong")
        assert [level for level, _ in logged(caplog)] == ["WARNING"]
        mono[0] = 199 + 300  # five minutes without a wrong one: the next valid request ends the spell
        await loop.sock_sendto(sock, request(200), ("127.0.0.1", port))
        await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    assert logged(caplog)[1:] == [("INFO", "radius accounting: NAS 127.0.0.1 sends valid Accounting-Requests again")]
    await srv.close()
    store.close()


async def test_datagrams_from_many_addresses_get_20_warnings_a_minute_then_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    srv = RadiusAccountingServer(store, {"127.0.0.1": SECRET}, clock=lambda: NOW, monotonic=lambda: mono[0])
    _, port = await srv.start("127.0.0.1", 0)
    caplog.set_level(logging.INFO, LOGGER)
    caplog.clear()
    socks = []
    try:
        for i in range(300):  # more than the 256 senders remembered: each round forgets the first ones
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.{1 + i // 250}.{1 + i % 250}", 0))  # all of 127/8 is this host's
            socks.append(s)
        for n in range(900):
            socks[n % 300].sendto(b"x" * 20, ("127.0.0.1", port))
            if n % 100 == 99:  # the socket's receive buffer holds a few hundred
                await until(lambda n=n: srv.counters["unknown_client"] == n + 1, f"{n + 1}")  # type: ignore[misc]
        warnings = logged(caplog)
        assert len(warnings) == 20 and {level for level, _ in warnings} == {"WARNING"}
        mono[0] = 60.0
        first_port = socks[0].getsockname()[1]
        socks[0].sendto(b"x" * 20, ("127.0.0.1", port))
        await until(lambda: srv.counters["unknown_client"] == 901, "one more")
    finally:
        for s in socks:
            s.close()
    assert logged(caplog)[20:] == [
        (
            "WARNING",
            "radius accounting: 300 more senders in a spell of trouble within 60 s were logged at DEBUG only "
            "(127.0.1.21, 127.0.1.22, 127.0.1.23, 127.0.1.24, 127.0.1.25 and 295 more): at most 20 WARNINGs of a "
            "first one every 60 s, the others at their next trouble there is room for (their trouble is counted, "
            "the latest in last_error)",
        ),
        (
            "WARNING",
            "radius accounting: dropped a datagram from 127.0.1.1: not one of the adapter's clients, got 20 octets "
            f"from port {first_port}; add its address and shared secret to clients if it is a NAS of this site; counted in unknown_client, "
            "further ones from 127.0.1.1 at DEBUG until the adapter is reloaded",
        ),
    ]
    await srv.close()
    store.close()


def test_a_components_spells_share_one_budget(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    now = [0.0]
    budget = SpellBudget(warnings=2, window_s=60)
    log = component_logger(LOGGER, "radius")
    dropped = SenderSpells(log, what="radius accounting", clock=lambda: now[0], budget=budget)
    delays = SenderSpells(log, what="radius accounting", clock=lambda: now[0], budget=budget)
    dropped.fail("192.0.2.1", "malformed", "bad from .1", "valid")
    delays.fail("192.0.2.2", "device_time_ignored", "late from .2", "right")
    dropped.fail("192.0.2.3", "malformed", "bad from .3", "valid")  # the budget is spent: DEBUG
    now[0] = 60.0
    delays.fail("192.0.2.4", "device_time_ignored", "late from .4", "right")
    assert [(r.levelname, r.getMessage().split(";")[0]) for r in caplog.records] == [
        ("WARNING", "bad from .1"),
        ("WARNING", "late from .2"),
        ("DEBUG", "bad from .3"),
        (
            "WARNING",
            "radius accounting: 1 more senders in a spell of trouble within 60 s were logged at DEBUG only "
            "(192.0.2.3): at most 2 WARNINGs of a first one every 60 s, the others at their next trouble there is "
            "room for (their trouble is counted, the latest in last_error)",
        ),
        ("WARNING", "late from .4"),
    ]
