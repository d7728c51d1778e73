"""An Acct-Delay-Time past a day is not believed: the request is stored at its arrival time, counted and logged,
so a garbage delay cannot file an answered request decades back, where the next expiry erases it."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.radius import AccountingRecord, build_accounting_request, decode_request
from adapters.radius.codec import MAX_DELAY_S
from adapters.radius.server import RadiusAccountingServer
from gateway.wifilog import Query, WifiLogStore

SECRET = b"s"
NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
MAC = "aa:bb:cc:dd:ee:ff"


def start(ident: int, session: str, delay: int) -> bytes:
    rec = AccountingRecord(
        status_type=1, session_id=session, calling_station_id=MAC, nas_identifier="ap1", delay_time=delay
    )
    return build_accounting_request(ident, rec, SECRET)


@given(st.integers(0, 2**32 - 1))
def test_the_event_time_is_never_more_than_a_day_before_arrival(delay: int) -> None:
    req = decode_request(start(1, "S1", delay), secret=SECRET, now=NOW, source=("127.0.0.1", 1))
    if delay <= MAX_DELAY_S:
        assert req.event_time == NOW - timedelta(seconds=delay) and not req.delay_ignored
    else:
        assert req.event_time == NOW and req.delay_ignored


async def test_a_garbage_delay_is_stored_at_arrival_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WifiLogStore(tmp_path)
    mono = [0.0]
    srv = RadiusAccountingServer(store, {"127.0.0.1": SECRET}, clock=lambda: NOW, monotonic=lambda: mono[0])
    _, port = await srv.start("127.0.0.1", 0)
    caplog.set_level(logging.DEBUG, "adapters.radius.server")
    caplog.clear()
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        for ident, session, delay in ((1, "S1", 0xFFFFFFF0), (2, "S2", MAX_DELAY_S + 1), (3, "S3", MAX_DELAY_S)):
            mono[0] = 300.0 if ident == 3 else 0.0  # the spell ends at a right one 300 s after the last wrong one
            await loop.sock_sendto(sock, start(ident, session, delay), ("127.0.0.1", port))
            await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    starts = sorted(s.start for s in store.search(Query(mac=MAC)))
    assert starts == [NOW - timedelta(days=1), NOW, NOW]
    assert store.expire(NOW) == []  # nothing filed in a period past the retention
    assert srv.counters["device_time_ignored"] == 2
    text = (
        "radius accounting: NAS 127.0.0.1 sent an Accounting-Request with Acct-Delay-Time {} s, more than 86400 s "
        "(1 day): a NAS fault; stored at its arrival time 2026-12-04T02:00:00+00:00 instead"
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            text.format(0xFFFFFFF0) + "; counted in device_time_ignored, further ones from 127.0.0.1 at DEBUG until "
            "its delays are believable again 300 s or more after the last one",
        ),
        ("DEBUG", text.format(MAX_DELAY_S + 1)),
        ("INFO", "radius accounting: NAS 127.0.0.1 sends a believable Acct-Delay-Time again"),
    ]
    await srv.close()
    store.close()
