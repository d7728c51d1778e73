"""A Wi-Fi log whose schema is damaged gives a batch up at once; it is not kept and retried for ever.

The receivers keep a batch the store refused and try it again, for a store that is busy or a disk that
fails for a while. An OperationalError is also SQLite's plain SQLITE_ERROR ("no such table"), which no
wait mends: kept, that batch stopped every request behind it for good, and the NAS's own retransmissions,
queued behind it, never got an answer either. Here the table is really gone.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from adapters.radius.attributes import AcctStatusType
from tests.adapters.radius.test_adapter_event_loop import _nas
from tests.adapters.radius.test_server_keeps_requests import SERVER, _messages, _serving
from tests.adapters.radius.test_server_paths import dgram
from tests.adapters.wifi_syslog.test_receiver_paths import until

pytestmark = pytest.mark.both_loops


async def test_a_missing_table_gives_the_batch_up_at_once_instead_of_retrying_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=SERVER)
    async with _serving(tmp_path) as (store, srv, port):
        store._db.execute("DROP TABLE sessions")  # a damaged schema
        with _nas() as nas:
            nas.sendto(dgram(1, AcctStatusType.START), ("127.0.0.1", port))
            await until(lambda: srv.counters["commit_failed"] == 1, "the request given up")
            await asyncio.sleep(0.7)  # past the first retry's 0.5 s: nothing is tried again
        assert srv.counters["commit_retries"] == 0
        assert srv.waiting == 0 and not srv._in_flight  # its retransmission would be taken anew
        [given_up] = _messages(caplog, logging.ERROR, "left unanswered")
        assert given_up == (
            "radius accounting store: commit failed, got OperationalError: no such table: sessions; 1 requests left "
            "unanswered"
        )
