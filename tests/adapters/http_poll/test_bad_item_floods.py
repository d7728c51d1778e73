"""A document full of bad items (a portal renamed a field): counted, said in a few lines, bounded in memory and time.

Regression: one MappingError kept per bad item (its traceback and the error it replaced: ~3 KB each, 322 MB for
100 000 items), the document's start rebuilt for each even with DEBUG off, all of it on the event loop (seconds per
poll, past the watchdog), and a cancelled poll (SIGTERM) that could not stop it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
import tracemalloc
from collections import Counter
from typing import Any

import aiohttp
import pytest

from adapters.http_poll import mapping
from adapters.http_poll.adapter import HttpPollAdapter
from adapters.http_poll.config import HttpPollConfig
from adapters.http_poll.mapping import MalformedReason, Mapper
from gateway.adapter_api import AdapterContext
from tests.adapters.http_poll.peers import DocServer, serve, wait_for
from tests.adapters.http_poll.test_adapter import LOGGER, NOW, Collector, config, warnings_of
from tests.adapters.http_poll.test_config import errors

FLOOD = 100_000
# every item lacks the id field: what a portal's renamed field looks like to the mapping
FLOOD_DOC = b'{"\xe8\xa6\xb3\xe6\xb8\xac\xe6\x89\x80": [' + b",".join([b"{}"] * FLOOD) + b"]}"
FIRST_MISSING = "観測所[0].観測所番号 (entity_id {観測所番号}): is missing, got no such field"


def adapter_for(cfg: HttpPollConfig) -> HttpPollAdapter:
    return HttpPollAdapter(cfg, AdapterContext(gateway_id="gw1", data_dir="/nonexistent"), clock=lambda: NOW)


def slow_config(url: str, **overrides: Any) -> HttpPollConfig:
    # polls driven one at a time by the test: the cadence plays no part
    return config(url, interval_s=600, timeout_s=60, **overrides)


async def poll_once(adapter: HttpPollAdapter, emit: Collector) -> None:
    async with aiohttp.ClientSession() as session:
        await adapter.poll(session, emit, {})


def stations(n: int, *, bad_every: int = 0) -> bytes:
    """`n` stations at one time; with `bad_every`, every such item has no level (欠測: missing_field)."""
    items = [
        {"観測所番号": f"{i:05d}", "水位": "欠測" if bad_every and i % bad_every == 0 else 1.0 + i / 1000,
         "観測時刻": "2026/07/01 09:10"}
        for i in range(n)
    ]  # fmt: skip
    return json.dumps({"観測所": items}, ensure_ascii=False).encode()


async def test_a_document_of_bad_items_is_one_warning_with_its_count_and_holds_little_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = DocServer(body=FLOOD_DOC)
    async with serve(server):
        adapter = adapter_for(slow_config(server.url))
        got = Collector()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await poll_once(adapter, got)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert got.readings == []
        assert adapter.malformed == {"missing_field": FLOOD}  # every item counted
        assert held < 2_000_000, f"{held} bytes still held after the poll"
        await poll_once(adapter, got)  # the same document again: counted, not said again
        assert adapter.malformed == {"missing_field": 2 * FLOOD}
    assert warnings_of(caplog) == [
        f"dropping malformed input (missing_field): {FIRST_MISSING}; {FLOOD} items of this document dropped for "
        'missing_field; document starts \'{"観測所": [' + ",".join(["{}"] * 63) + "...'"
    ]
    assert adapter.diagnostics()["last_error"] == f"missing_field: {FIRST_MISSING}"


async def test_mapping_a_document_of_bad_items_leaves_the_loop_running(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)  # DEBUG on: the per-poll summary is logged too
    loop = asyncio.get_running_loop()
    late: list[float] = []

    async def ticker() -> None:
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            late.append(loop.time() - due)

    server = DocServer(body=FLOOD_DOC)
    async with serve(server):
        adapter = adapter_for(slow_config(server.url))
        ticks = asyncio.create_task(ticker())
        try:
            await poll_once(adapter, Collector())
        finally:
            ticks.cancel()
    assert adapter.malformed == {"missing_field": FLOOD}
    assert max(late, default=0.0) < 0.1, f"the loop was blocked for {max(late):.3f} s"
    assert len(late) >= 10, "the poll ended before the ticker ran: nothing measured"
    debug = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.DEBUG]
    # one summary and the examples kept, not a line per item
    assert len(debug) == 1 + mapping.EXAMPLES
    assert debug[0].startswith(f"dropped {FLOOD} item(s) (missing_field {FLOOD}), 0 past max_items; document starts")


async def test_a_cancelled_poll_stops_its_mapping_soon() -> None:
    # SIGTERM cancels the adapter's task, then asyncio.run waits for the worker threads (shutdown_default_executor):
    # a worker that mapped on to the end would hold the stop for the whole document
    loop = asyncio.get_running_loop()
    server = DocServer(body=FLOOD_DOC)
    async with serve(server):
        adapter = adapter_for(slow_config(server.url))
        poll = asyncio.create_task(poll_once(adapter, Collector()))
        await wait_for(server.wait_requests(1), what="the poll's request")
        await asyncio.sleep(0.1)  # into the mapping
        poll.cancel()
        with pytest.raises(asyncio.CancelledError):
            await poll
        started = time.monotonic()
        await loop.shutdown_default_executor()
        stopped_in = time.monotonic() - started
    assert adapter.malformed == {}  # the poll did not finish
    assert stopped_in < 0.5, f"the worker went on mapping for {stopped_in:.2f} s after the cancel"


async def test_the_good_items_of_a_mixed_document_are_stored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = DocServer(body=stations(3000, bad_every=3))
    async with serve(server):
        adapter = adapter_for(slow_config(server.url))
        got = Collector()
        await poll_once(adapter, got)
    assert sorted(r.entity_id for r in got.readings) == [
        f"urn:ngsi-ld:WaterObserved:{i:05d}" for i in range(3000) if i % 3
    ]
    assert (adapter.emitted, adapter.malformed) == (2000, {"missing_field": 1000})
    [warning] = warnings_of(caplog)
    assert warning.startswith(
        "dropping malformed input (missing_field): 観測所[0].水位 (attribute waterLevel): is missing, got '欠測'; "
        "1000 items of this document dropped for missing_field; document starts '"
    )


async def test_a_list_longer_than_max_items_is_read_up_to_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = DocServer(body=stations(8))
    async with serve(server):
        adapter = adapter_for(slow_config(server.url, max_items=5))
        got = Collector()
        await poll_once(adapter, got)
        assert [r.entity_id for r in got.readings] == [f"urn:ngsi-ld:WaterObserved:{i:05d}" for i in range(5)]
        assert (adapter.over_max_items, adapter.malformed) == (3, {})
        await poll_once(adapter, got)  # the same again: counted, said once
        assert (adapter.over_max_items, len(got.readings), adapter.duplicates) == (6, 5, 5)
        server.body = stations(5)
        await poll_once(adapter, got)
    message = (
        "a list of items is longer than max_items = 5: its first 5 items read, 3 not read (counted in "
        "over_max_items); raise max_items, or have the source send a smaller document"
    )
    start = (
        '\'{"観測所": [{"観測所番号": "<5 digits>", "水位": <1 digit>.<1 digit>, "観測時刻": "<4 digits>/<2 digits>/'
        '<2 digits> <2 digits>:<2 digits>"}, {"観測所番号": "<5 digits>", "水位": <1 digit>.<3 digits>, "観測時刻": "...\''
    )
    assert warnings_of(caplog) == [f"{message}; document starts {start}"]
    infos = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert infos[-1] == "documents map cleanly again"
    assert adapter.diagnostics()["over_max_items"] == 6


def test_max_items_is_checked_with_the_configuration() -> None:
    assert errors(max_items=0) == ["adapters[0].max_items: input should be greater than or equal to 1, got 0"]
    assert errors(max_items=2_000_000) == [
        "adapters[0].max_items: input should be less than or equal to 1000000, got 2000000"
    ]


def test_the_mapper_counts_every_bad_item_and_keeps_a_few_without_tracebacks() -> None:
    cfg = slow_config("http://127.0.0.1:1/x")
    bad_time = (
        b'{"\xe8\xa6\xb3\xe6\xb8\xac\xe6\x89\x80\xe7\x95\xaa\xe5\x8f\xb7": "9", "\xe6\xb0\xb4\xe4\xbd\x8d": 1, '
        + ('"観測時刻": "later"}'.encode())
    )
    body = FLOOD_DOC[:-2] + b"," + bad_time + b"]}"  # the last item has another reason
    result = Mapper(cfg.mappings, adapter="river").map(body, NOW)
    assert result.dropped == Counter({MalformedReason.MISSING_FIELD: FLOOD, MalformedReason.BAD_TIMESTAMP: 1})
    # the first EXAMPLES, and the first of a reason met after them
    assert [(e.reason, e.where) for e in result.errors] == [
        *[(MalformedReason.MISSING_FIELD, f"観測所[{i}].観測所番号") for i in range(mapping.EXAMPLES)],
        (MalformedReason.BAD_TIMESTAMP, f"観測所[{FLOOD}].観測時刻"),
    ]
    assert all(e.__traceback__ is None and e.__context__ is None and e.__cause__ is None for e in result.errors)
    assert str(result.errors[0]) == FIRST_MISSING
