"""Bursts through the batched path: acks stay a prefix in arrival order and never run ahead of the commits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.errors import ReadingError
from gateway.records import Emit, Reading, emit_many
from tests.adapters.mqtt.peers import Sink, counter_config, numbered, publish, running, wait_for
from tests.support.mosquitto import MosquittoBroker

pytestmark = pytest.mark.both_loops  # the loop-sensitive paths run on asyncio and on uvloop (tests/conftest.py)


async def redelivered(broker: MosquittoBroker, client_id: str) -> list[int]:
    """What the broker still holds for the session, in its order, up to a fresh marker."""
    sink = Sink()
    async with running(counter_config(broker, client_id), sink) as adapter:
        await publish(broker, numbered(1, start=-1, device="marker"))
        await wait_for(lambda: -1 in sink.values(), what="the marker")
        await wait_for(lambda: adapter.in_flight == 0, what="the acks")
    values = sink.values()
    assert values[-1] == -1
    return values[:-1]


def committed_prefix(committed: set[int]) -> int:
    k = 0
    while k in committed:
        k += 1
    return k


async def test_commits_in_any_order_ack_only_the_committed_prefix(mosquitto_private: MosquittoBroker) -> None:
    n = 400
    cfg = counter_config(mosquitto_private, "burst-order")
    async with running(cfg, Sink()):
        pass  # the persistent session, so the whole burst is queued before the adapter reads
    await publish(mosquitto_private, numbered(n))
    sink = Sink(auto=False)
    # the first half in a shuffled order, with a few of the second half early: those stay held back
    order = list(range(n // 2))
    random.Random(7).shuffle(order)
    order[10:10] = range(300, 310)
    done: set[int] = set()
    async with running(cfg, sink) as adapter:
        await wait_for(lambda: adapter.received == n, what="the burst")
        for start in range(0, len(order), 25):
            for i in order[start : start + 25]:
                sink.commit(i)
                done.add(i)
            k = committed_prefix(done)
            await wait_for(lambda: adapter.emitted == len(done), what="the commit callbacks")
            # slots after the first uncommitted one wait, however many of them are committed
            assert adapter.in_flight == n - k
    k = committed_prefix(done)
    assert (k, len(done)) == (n // 2, n // 2 + 10)  # 300..309 committed, held back behind 200..299
    # acked exactly the prefix: the broker hands back the rest, in the order it sent them
    assert await redelivered(mosquitto_private, "burst-order") == list(range(n // 2, n))


async def test_acks_never_run_ahead_of_the_outbox_commits(mosquitto_private: MosquittoBroker, tmp_path: Path) -> None:
    n, stored_first = 3000, 1000
    cfg = counter_config(mosquitto_private, "burst-outbox", max_inflight=500)
    async with running(cfg, Sink()):
        pass
    await publish(mosquitto_private, numbered(n))
    outbox = await Outbox.open(tmp_path / "outbox.db", BufferConfig(durability=Durability.FULL), uplinks=["t"])
    loop = asyncio.get_running_loop()
    stalled: list[asyncio.Future[None]] = []

    def emit(reading: Reading) -> Awaitable[None]:
        # the real outbox for the first readings, then a disk that stops committing
        if len(stalled) or reading.attributes["n"].value >= stored_first:
            stalled.append(loop.create_future())
            return stalled[-1]
        return outbox.append(reading)

    try:
        async with running(cfg, Sink(), emit=emit) as adapter:
            await wait_for(lambda: adapter.emitted == stored_first and len(stalled) > 0, what="the real commits")
            await asyncio.sleep(0.2)  # room for any wrong ack to go out
            assert (adapter.emitted, adapter.in_flight) == (stored_first, adapter.received - stored_first)
    finally:
        await outbox.close()
    outbox = await Outbox.open(tmp_path / "outbox.db", BufferConfig(durability=Durability.FULL), uplinks=["t"])
    try:
        stored = [r.attributes["n"].value for r in await outbox.read("t", 2 * n)]
    finally:
        await outbox.close()
    assert stored == list(range(stored_first))
    # exactly the committed ones were acknowledged: the broker hands back all the others, in order
    assert await redelivered(mosquitto_private, "burst-outbox") == list(range(stored_first, n))


class BurstEmit:
    """The gateway's kind of emit (gateway.supervisor): `.many` takes a burst; single calls are a bug here."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.sizes: list[int] = []

    def __call__(self, reading: Reading) -> Awaitable[None]:
        raise AssertionError("a burst-capable emit got a single reading")

    def many(self, readings: Sequence[Reading]) -> Awaitable[None]:
        self.sizes.append(len(readings))
        return self.outbox.append_many(readings)


async def test_a_burst_capable_emit_gets_each_socket_read_in_one_call(
    mosquitto_private: MosquittoBroker, tmp_path: Path
) -> None:
    n = 2000
    cfg = counter_config(mosquitto_private, "burst-many", max_inflight=500)
    async with running(cfg, Sink()):
        pass
    await publish(mosquitto_private, numbered(n))
    outbox = await Outbox.open(tmp_path / "outbox.db", BufferConfig(durability=Durability.FULL), uplinks=["t"])
    emit = BurstEmit(outbox)
    try:
        async with running(cfg, Sink(), emit=cast(Emit, emit)) as adapter:
            await wait_for(lambda: adapter.emitted == n and adapter.in_flight == 0, what="every commit and ack")
        stored = [r.attributes["n"].value for r in await outbox.read("t", 2 * n)]
    finally:
        await outbox.close()
    assert sum(emit.sizes) == n
    assert max(emit.sizes) > 1  # a queued backlog arrives many messages to a socket read
    assert len(emit.sizes) < n // 10
    assert stored == list(range(n))  # in arrival order
    assert await redelivered(mosquitto_private, "burst-many") == []  # every message acknowledged after its commit


class RecordingEmit:
    """A burst-capable emit that keeps each burst's readings and commits at once."""

    def __init__(self) -> None:
        self.bursts: list[list[Reading]] = []

    def __call__(self, reading: Reading) -> Awaitable[None]:
        raise AssertionError("a burst-capable emit got a single reading")

    def many(self, readings: Sequence[Reading]) -> Awaitable[None]:
        self.bursts.append(list(readings))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_messages_of_one_socket_read_share_its_arrival_time(mosquitto_private: MosquittoBroker) -> None:
    """Observed at arrival: one time per socket read (taken at its first message), a later read a later time."""
    n = 2000
    cfg = counter_config(mosquitto_private, "burst-arrival", max_inflight=500)
    async with running(cfg, Sink()):
        pass
    await publish(mosquitto_private, numbered(n))
    emit = RecordingEmit()
    before = datetime.now(UTC)
    async with running(cfg, Sink(), emit=cast(Emit, emit)) as adapter:
        await wait_for(lambda: adapter.emitted == n and adapter.in_flight == 0, what="the backlog")
        await asyncio.sleep(0.01)
        await publish(mosquitto_private, numbered(1, start=n))  # alone, in a read of its own
        await wait_for(lambda: adapter.emitted == n + 1, what="the late message")
    after = datetime.now(UTC)
    times = [{r.observed_at for r in burst} for burst in emit.bursts]
    assert all(len(t) == 1 for t in times), "each burst carries one arrival time"
    firsts = [next(iter(t)) for t in times]
    assert firsts == sorted(firsts)
    assert before <= firsts[0] and firsts[-1] <= after
    assert len(emit.bursts) > 1 and max(len(b) for b in emit.bursts) > 1  # several reads, some of many messages
    assert firsts[-1] > firsts[-2]  # the late message's read came later, and got its own time
    assert [r.attributes["n"].value for b in emit.bursts for r in b] == list(range(n + 1))


async def test_a_burst_refused_for_one_reading_is_emitted_one_by_one(mosquitto_private: MosquittoBroker) -> None:
    """An emit whose `.many` refuses the whole burst for one invalid reading: only that one is dropped."""
    sink = Sink()

    class Strict:
        def __call__(self, reading: Reading) -> Awaitable[None]:
            if reading.attributes["n"].value == 3:
                raise ReadingError("testmqtt: n must not be 3, got 3", entity_id=reading.entity_id)
            return sink.emit(reading)

        def many(self, readings: Sequence[Reading]) -> Awaitable[None]:
            for r in readings:
                if r.attributes["n"].value == 3:
                    raise ReadingError("testmqtt: n must not be 3, got 3", entity_id=r.entity_id)
            return emit_many(sink.emit, readings)  # one call each: the gateway.records fallback

    cfg = counter_config(mosquitto_private, "burst-refused")
    async with running(cfg, Sink()):
        pass
    await publish(mosquitto_private, numbered(10))
    async with running(cfg, sink, emit=cast(Emit, Strict())) as adapter:
        await wait_for(lambda: adapter.emitted == 9 and adapter.in_flight == 0, what="the nine valid readings")
        assert adapter.malformed["rejected"] == 1
    assert sorted(sink.values()) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert await redelivered(mosquitto_private, "burst-refused") == []  # the refused message is acked too


class SealingEmit(BurstEmit):
    """BurstEmit with the gateway's `flush` (gateway.records.EmitFlush): seals the outbox's open group."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(outbox)
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        self.outbox.seal()


async def test_a_full_window_commits_at_once_instead_of_waiting_out_the_group(
    mosquitto_private: MosquittoBroker, tmp_path: Path
) -> None:
    """With 50 in flight the broker sends nothing more until a commit lets PUBACKs out: the adapter
    asks for the commit at once. Without `flush`, each of the 10 windows waits out the group's quiet
    time (commit_quiet_ms, 250 ms here): the same run then takes over 2.5 s."""
    n, window = 500, 50
    cfg = counter_config(mosquitto_private, "burst-window", max_inflight=window)
    async with running(cfg, Sink()):
        pass
    loop = asyncio.get_running_loop()
    took: dict[str, float] = {}
    for kind in ("sealing", "plain"):
        await publish(mosquitto_private, numbered(n))
        outbox = await Outbox.open(
            tmp_path / f"{kind}.db",
            BufferConfig(durability=Durability.FULL, commit_interval_ms=1000, commit_quiet_ms=250),
            uplinks=["t"],
        )
        emit = SealingEmit(outbox) if kind == "sealing" else BurstEmit(outbox)
        try:
            t0 = loop.time()
            async with running(cfg, Sink(), emit=cast(Emit, emit)) as adapter:
                await wait_for(lambda: adapter.emitted == n and adapter.in_flight == 0, what="every commit and ack")
                took[kind] = loop.time() - t0
            stored = [r.attributes["n"].value for r in await outbox.read("t", 2 * n)]
        finally:
            await outbox.close()
        assert stored == list(range(n))
        if isinstance(emit, SealingEmit):
            assert emit.flushes >= n // window - 1  # once a window, at least
    assert took["plain"] > 2.0, took  # 10 windows x 250 ms: what the flush saves
    assert took["sealing"] < took["plain"] / 2, took
