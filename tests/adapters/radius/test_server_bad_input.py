"""Datagrams the receiver drops (unknown NAS, wrong secret, malformed) are counted, kept in `last_error` and
logged: a WARNING once a spell per NAS and kind, DEBUG after, INFO once that NAS sends a valid request 300 s after
its last bad one."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.radius import AccountingRecord, build_accounting_request
from adapters.radius.server import RadiusAccountingServer
from gateway.logs import SenderSpells, component_logger
from gateway.wifilog import WifiLogStore

SECRET = b"s"
NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
LOGGER = "adapters.radius.server"
UNTIL = (
    "; counted in {}, further ones from 127.0.0.1 at DEBUG until it sends a valid Accounting-Request 300 s or more "
    "after the last one"
)
MONO = [0.0]  # the servers' monotonic clock: the spells' quiet period


def request(ident: int, secret: bytes = SECRET) -> bytes:
    rec = AccountingRecord(
        status_type=1,
        session_id="S1",
        nas_identifier="ap1",
        calling_station_id="3c-22-fb-12-9a-0e",
        user_name="hanako@example.jp",
    )
    return build_accounting_request(ident, rec, secret)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.fixture
async def server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[tuple[RadiusAccountingServer, int]]:
    store = WifiLogStore(tmp_path)
    MONO[0] = 0.0
    srv = RadiusAccountingServer(store, {"127.0.0.1": SECRET}, clock=lambda: NOW, monotonic=lambda: MONO[0])
    _, port = await srv.start("127.0.0.1", 0)
    caplog.set_level(logging.DEBUG, LOGGER)
    caplog.clear()
    yield srv, port
    await srv.close()
    store.close()


async def answered(port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(sock, data, ("127.0.0.1", port))
        return await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)


async def test_a_wrong_secret_is_logged_once_a_spell_and_its_end(
    server: tuple[RadiusAccountingServer, int], caplog: pytest.LogCaptureFixture
) -> None:
    srv, port = server
    wrong = request(7, b"not-the-secret")
    srv.datagram_received(wrong, ("127.0.0.1", 40000))
    srv.datagram_received(wrong, ("127.0.0.1", 40000))
    text = (
        "radius accounting: dropped a datagram from 127.0.0.1: radius Accounting-Request id 7: request authenticator "
        f"does not match the shared secret, got authenticator {wrong[4:8].hex()}...; check that the NAS and the "
        "gateway use the same shared secret for this client"
    )
    assert srv.last_error == text and srv.counters["bad_authenticator"] == 2
    assert logged(caplog) == [("WARNING", text + UNTIL.format("bad_authenticator")), ("DEBUG", text)]
    caplog.clear()
    await answered(port, request(8))  # right within 300 s of the last wrong one: the same spell
    srv.datagram_received(wrong, ("127.0.0.1", 40000))
    assert logged(caplog) == [("DEBUG", text)]
    caplog.clear()
    MONO[0] = 300.0
    await answered(port, request(9))
    srv.datagram_received(wrong, ("127.0.0.1", 40000))  # a new spell: news again
    assert logged(caplog) == [
        ("INFO", "radius accounting: NAS 127.0.0.1 sends valid Accounting-Requests again"),
        ("WARNING", text + UNTIL.format("bad_authenticator")),
    ]


async def test_a_malformed_datagram_and_an_unknown_client_are_logged_per_sender_and_kind(
    server: tuple[RadiusAccountingServer, int], caplog: pytest.LogCaptureFixture
) -> None:
    srv = server[0]
    srv.datagram_received(request(3)[:-3], ("127.0.0.1", 40000))
    malformed = (
        "radius accounting: dropped a datagram from 127.0.0.1: radius Accounting-Request: header length exceeds "
        "the datagram (truncated packet), got length 73 for a 70-octet datagram"
    )
    assert srv.last_error == malformed
    for port in (1645, 1646):
        srv.datagram_received(request(4), ("192.0.2.9", port))
    unknown = (
        "radius accounting: dropped a datagram from 192.0.2.9: not one of the adapter's clients, got 73 octets from "
        "port {}; add its address and shared secret to clients if it is a NAS of this site"
    )
    assert srv.last_error == unknown.format(1646)
    assert logged(caplog) == [
        ("WARNING", malformed + UNTIL.format("malformed")),
        (
            "WARNING",
            unknown.format(1645)
            + "; counted in unknown_client, further ones from 192.0.2.9 at DEBUG until the adapter is reloaded",
        ),
        ("DEBUG", unknown.format(1646)),
    ]
    assert srv.diagnostics()["malformed"] == {"unknown_client": 2, "malformed": 1}


def test_the_senders_remembered_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    spells = SenderSpells(component_logger(LOGGER, "radius"), what="radius accounting", kept=2)
    caplog.set_level(logging.DEBUG, LOGGER)
    for sender in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"):
        spells.fail(sender, "malformed", f"bad from {sender}", "valid")
    # .1 was forgotten when .3 came: its next trouble is news again, a WARNING
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 4
    spells.fail("192.0.2.1", "malformed", "bad again", "valid")
    spells.fail("192.0.2.1", "bad_authenticator", "wrong secret", "valid")  # another kind: news
    assert [r.levelname for r in caplog.records[4:]] == ["DEBUG", "WARNING"]
