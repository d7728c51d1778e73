"""The session events' queue for the platform: an event the buffer refuses stays first in line, the
adapter's run fails with the buffer's own error, a full queue drops its oldest, counted and logged once, and an
event whose session's period was erased is not sent (no key for its id is left), counted and logged once."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import BufferFull
from gateway.processing.api import ProcessorContext
from gateway.records import Reading
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from gateway.wifilog.runner import SESSION_EVENT_ID, SessionEventsOut

T0 = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


def event(n: int) -> SessionEvent:
    return SessionEvent(nas="ap1", session_id=f"S{n}", kind=EventKind.START, time=T0, client_mac="aa:bb:cc:00:00:01")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WifiLogStore]:
    """The log holding sessions S0-S6, as the events reach the queue only once stored."""
    store = WifiLogStore(tmp_path)
    store.apply([event(n) for n in range(7)])
    yield store
    store.close()


def expected(out: SessionEventsOut, store: WifiLogStore, n: int) -> str:
    [key] = store.session_keys(SESSION_EVENT_ID, [("ap1", f"S{n}")])
    assert key is not None
    return session(out.reading(event(n), T0, key))


def session(r: Reading) -> str:
    # the entity id is a digest of (NAS, session id): the test tells events apart by it
    return r.entity_id


def from_commit_thread(out: SessionEventsOut, events: list[SessionEvent]) -> None:
    # the stores call `record` from their commit thread
    def commit() -> None:
        for ev in events:
            out.record(ev)

    t = threading.Thread(target=commit)
    t.start()
    t.join()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def settled(done: Callable[[], bool]) -> None:
    """Until `done()`: the run reads its events' keys in a worker thread."""
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the queue did not get there in 5 s")


async def test_an_event_the_buffer_refuses_goes_out_after_the_run_restarts(tmp_path: Path, store: WifiLogStore) -> None:
    out = SessionEventsOut("wifi", ProcessorContext(gateway_id="g", data_dir=str(tmp_path)))
    names = [expected(out, store, n) for n in range(3)]
    from_commit_thread(out, [event(n) for n in range(3)])
    taken: list[Reading] = []

    async def refusing(r: Reading) -> None:
        if len(taken) == 1:
            raise BufferFull("buffer: caps reached, got 1 reading")
        taken.append(r)

    with pytest.raises(BufferFull):  # the adapter's run fails with it: the supervisor logs and restarts it
        await asyncio.wait_for(out.run(refusing, lambda: T0, store), 5)
    assert out.pending == 2  # the refused one is still first in line

    async def accepting(r: Reading) -> None:
        taken.append(r)

    run = asyncio.ensure_future(out.run(accepting, lambda: T0, store))  # the restarted adapter's run
    await settled(lambda: out.pending == 0)
    run.cancel()
    assert [session(r) for r in taken] == names and out.pending == 0 and out.dropped == 0


async def test_a_full_queue_drops_its_oldest_counted_and_logged_once(
    tmp_path: Path, store: WifiLogStore, caplog: pytest.LogCaptureFixture
) -> None:
    out = SessionEventsOut("wifi", ProcessorContext(gateway_id="g", data_dir=str(tmp_path)), limit=3)
    names = [expected(out, store, n) for n in range(7)]
    held, held_by_emit, taken = asyncio.Event(), asyncio.Event(), []

    async def slow(r: Reading) -> None:
        held_by_emit.set()
        await held.wait()  # the buffer takes its time
        taken.append(r)

    from_commit_thread(out, [event(0)])
    run = asyncio.ensure_future(out.run(slow, lambda: T0, store))
    await settled(lambda: held_by_emit.is_set())  # event 0 is being emitted, still first in line
    with caplog.at_level(logging.WARNING, logger="gateway.wifilog.runner"):
        from_commit_thread(out, [event(n) for n in range(1, 7)])
        await settle()
    assert out.pending == 3 and out.dropped == 4  # 0 (while in emit) and 1-3 gave way to 4-6
    assert [r.getMessage() for r in caplog.records].count(
        "wifilog: 3 session events wait for the buffer; dropping the oldest for the platform "
        "(they stay in the Wi-Fi log store)"
    ) == 1
    held.set()
    await settled(lambda: out.pending == 0)
    run.cancel()
    # event 0 was in the buffer's hands already; the one first in line after it is not skipped
    assert [session(r) for r in taken] == [names[0], *names[4:]]
    assert out.pending == 0


async def test_an_event_of_an_erased_period_is_not_sent_counted_and_logged_once(
    tmp_path: Path, store: WifiLogStore, caplog: pytest.LogCaptureFixture
) -> None:
    # a session of January 2025, erased at the expiry of February 2026 (12 months' retention); then two late
    # events of it reach the queue (a receiver hands on what it was given, stored or not)
    january = datetime(2025, 1, 10, 3, 0, tzinfo=UTC)
    late = SessionEvent(nas="ap1", session_id="OLD", kind=EventKind.START, time=january, client_mac="aa:bb:cc:00:00:02")
    store.apply([late])
    [certificate] = store.expire(T0)
    assert certificate["period"] == "2025-01"
    out = SessionEventsOut("wifi", ProcessorContext(gateway_id="g", data_dir=str(tmp_path)))
    taken: list[Reading] = []

    async def accepting(r: Reading) -> None:
        taken.append(r)

    with caplog.at_level(logging.DEBUG, logger="gateway.wifilog.runner"):
        from_commit_thread(out, [late, late, event(0)])
        run = asyncio.ensure_future(out.run(accepting, lambda: T0, store))
        await settled(lambda: len(taken) == 1)
        run.cancel()
    assert [session(r) for r in taken] == [expected(out, store, 0)]
    assert out.forgotten == 2 and out.dropped == 0
    assert out.diagnostics()["forgotten"] == 2  # in the adapters' status, beside pending and dropped
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "wifilog: a session event from NAS ap1 is not sent: the Wi-Fi log no longer holds its session (its period "
        "was erased), and its id's key went with it (1 such events so far)"
    ]
