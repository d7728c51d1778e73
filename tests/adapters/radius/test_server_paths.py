"""The receiver's other paths with hand-built datagrams on loopback: malformed, in-flight retransmission,
Accounting-On, records without a session, a store that fails, diagnostics."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.radius import AccountingRecord, build_accounting_request, decode_request
from adapters.radius.server import RadiusAccountingServer, session_event
from gateway.wifilog import Query, SessionEvent, WifiLogStore

SECRET = b"s"
NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


def dgram(ident: int, status: int, sid: str | None = "S1", mac: str = "aa:bb:cc:00:00:01") -> bytes:
    rec = AccountingRecord(status_type=status, session_id=sid, nas_identifier="ap1", calling_station_id=mac)
    return build_accounting_request(ident, rec, SECRET)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[RadiusAccountingServer, socket.socket, int]]:
    store = WifiLogStore(tmp_path)
    seen: list[SessionEvent] = []
    srv = RadiusAccountingServer(store, {"127.0.0.1": SECRET}, clock=lambda: NOW, on_event=seen.append)
    _, port = await srv.start("127.0.0.1", 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield srv, sock, port
    sock.close()
    await srv.close()
    store.close()


async def send_and_answer(sock: socket.socket, port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, data, ("127.0.0.1", port))
    return await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)


async def test_accounting_on_closes_open_sessions_and_records_without_session_are_answered(
    server: tuple[RadiusAccountingServer, socket.socket, int],
) -> None:
    srv, sock, port = server
    await send_and_answer(sock, port, dgram(1, 1))
    await send_and_answer(sock, port, dgram(2, 7, sid=None))  # Accounting-On: the NAS rebooted
    [s] = srv.store.search(Query(mac="aa:bb:cc:00:00:01"))
    assert s.stop == NOW and s.terminate_cause == "NAS-Reboot"
    await send_and_answer(sock, port, dgram(3, 1, sid=None))
    assert srv.counters["no_session_id"] == 1 and srv.counters["answered"] == 3
    d = srv.diagnostics()
    assert d["summary"].startswith("answered 3") and d["malformed"] == {}


async def test_malformed_and_in_flight_retransmissions_are_counted(
    server: tuple[RadiusAccountingServer, socket.socket, int],
) -> None:
    srv = server[0]
    srv.datagram_received(b"\x04\x01\x00", ("127.0.0.1", 1))
    assert srv.counters["malformed"] == 1
    data = dgram(9, 1)
    srv.datagram_received(data, ("127.0.0.1", 5))
    srv.datagram_received(data, ("127.0.0.1", 5))  # before the commit: the pending one answers
    assert srv.counters["retransmissions"] == 1
    assert srv.diagnostics()["malformed"] == {"malformed": 1}


async def test_a_failing_store_leaves_requests_unanswered_so_the_nas_retransmits(
    server: tuple[RadiusAccountingServer, socket.socket, int],
) -> None:
    srv, sock, port = server
    srv.store.close()  # every statement now fails: a dead disk, as far as the receiver can tell
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, dgram(4, 1), ("127.0.0.1", port))
    for _ in range(200):
        if srv.counters.get("commit_failed"):
            break
        await asyncio.sleep(0.01)
    assert srv.counters["commit_failed"] == 1 and srv.counters["answered"] == 0
    assert srv.last_error is not None and srv.last_error.startswith("radius accounting store: commit failed, got ")
    assert not srv._in_flight


async def test_close_before_start_is_harmless(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(store, {}, clock=lambda: NOW)
    await srv.close()
    req = decode_request(dgram(1, 8, sid=None), secret=SECRET, now=NOW, source=("127.0.0.1", 1))
    assert session_event(req) is None
    store.close()


async def test_an_evicted_answer_is_stored_again_idempotently_and_answered(tmp_path: Path) -> None:
    store = WifiLogStore(tmp_path)
    srv = RadiusAccountingServer(store, {"127.0.0.1": SECRET}, clock=lambda: NOW, answered_cache=1)
    _, port = await srv.start("127.0.0.1", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        first = dgram(1, 1, sid="A", mac="aa:bb:cc:00:00:0a")
        answers = [await send_and_answer(sock, port, d) for d in (first, dgram(2, 1, sid="B"), first)]
    assert answers[0] == answers[2] and srv.counters["retransmissions"] == 0  # evicted: committed again
    assert len(store.search(Query(mac="aa:bb:cc:00:00:0a"))) == 1
    await srv.close()
    store.close()
